"""Variable orders: baskets per member and distribution, validated with a payment method (R8),
priced once per line (B1), add-only with payments on (R6), free with payments off (R1), locked
once the basket is validated (R20), refused after the cut-off."""

from __future__ import annotations

import uuid
from decimal import Decimal

from cagette_contracts import BasketUnvalidated, BasketValidated, Role, line_amount, Money

from .conftest import Group, OrdersEnv, Unchanged, deliver, make_group, outbox_rows


async def test_cheque_order_is_confirmed_at_once_with_lines_rounded_once(group: Group) -> None:
    member_id, member = await group.join()
    response = await group.order(member, [(group.bread, "2"), (group.cheese, "0.375")], method="cheque")
    assert response.status_code == 201, response.text
    order = response.json()
    cheese = line_amount(Decimal("0.375"), Money(amount=1999, currency="EUR"), Decimal("0.02"))
    assert cheese.amount == 765  # 0.375 x 19.99 x 1.02 = 7.6461... -> 7.65
    assert order["status"] == "confirmed"
    assert [line["line_total"]["amount"] for line in order["lines"]] == [700, 765]
    assert order["total"] == {"amount": 1465, "currency": "EUR"}
    events = await outbox_rows(group.env, group.group_id)
    confirmed = [e for e in events if e["routing_key"] == "orders.order.confirmed"]
    assert len(confirmed) == 1
    assert confirmed[0]["total"] == {"amount": 1465, "currency": "EUR"}
    assert confirmed[0]["payment_method"] == "cheque"
    assert confirmed[0]["distribution_id"] == group.distribution["distribution_id"]
    assert confirmed[0]["member_id"] == str(member_id)
    await group.env.spy.wait_for("orders.order.confirmed", order_id=order["order_id"])
