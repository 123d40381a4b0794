"""Takings CSV per distribution (B8), driven end to end through the API."""

from __future__ import annotations

import csv
import io
from uuid import uuid4

from cagette_contracts import PaymentMethod

from .conftest import Payments, line


def eur(cents: int) -> dict:
    return {"amount": cents, "currency": "EUR"}


async def test_takings_csv_adds_up(payments: Payments, spy) -> None:
    group = await payments.new_group(5)
    d = uuid4()
    a, b, c, e, f = group.members
    headers = payments.coordinator(group)
    await payments.order(group, a, d, PaymentMethod.CHEQUE, line("Cheese", 2000))  # confirmed as 20.00
    await payments.order(group, b, d, PaymentMethod.CHEQUE, line("Cheese", 1500))  # confirmed as 10.00: partly paid
    await payments.order(group, c, d, PaymentMethod.ON_THE_SPOT, line("Bread", 800))  # paid 10.00 cash: overpaid
    await payments.order(group, e, d, PaymentMethod.TRANSFER, line("Honey", 900))  # still pending: unpaid
    await payments.order(group, f, d, PaymentMethod.CASH, line("Apples", 1200))  # 15.00 cash, 3.00 given back
    by_member = {m: (await payments.member_payments(group, m))[0]["payment_id"] for m in (a, b, c, f)}

    async def confirm(member, **body) -> None:
        response = await payments.client.post(
            f"/groups/{group.group_id}/payments/{by_member[member]}/confirm", json=body, headers=headers
        )
        assert response.status_code == 200, response.text

    await confirm(a)
    await confirm(b, amount=eur(1000))
    await confirm(c, method="cash", amount=eur(1000))
    await confirm(f, amount=eur(1500))
    refund = await payments.client.post(
        f"/groups/{group.group_id}/distributions/{d}/baskets/{f}/refunds",
        json={"method": "cash", "amount": eur(300)},
        headers=headers,
    )
    assert refund.status_code == 201, refund.text
    extra = await payments.client.post(
        f"/groups/{group.group_id}/distributions/{d}/baskets/{b}/payments",
        json={"method": "card_terminal", "amount": eur(200)},
        headers=headers,
    )
    assert extra.status_code == 201, extra.text

    response = await payments.client.get(f"/groups/{group.group_id}/distributions/{d}/takings.csv", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["section", "key", "member_name", "count", "amount", "ordered", "received", "currency"]
    table = {(r[0], r[1]): r for r in rows[1:]}
    assert table[("received", "cheque")][3:5] == ["2", "30.00"]
    assert table[("received", "cash")][3:5] == ["2", "25.00"]
    assert table[("received", "card_terminal")][3:5] == ["1", "2.00"]
    assert table[("received", "transfer")][3:5] == ["0", "0.00"]
    assert table[("received", "card")][3:5] == ["0", "0.00"]
    assert table[("refunded", "cash")][3:5] == ["1", "-3.00"]
    assert table[("total", "net_received")][4] == "54.00"
    assert table[("pending", "transfer")][3:5] == ["1", "9.00"]
    assert table[("pending", "total")][3:5] == ["1", "9.00"]
    assert table[("unpaid", str(e))][2:5] == ["Member 3", "", "9.00"]
    assert table[("partly_paid", str(b))][4:7] == ["3.00", "15.00", "12.00"]
    assert table[("overpaid", str(c))][4:7] == ["2.00", "8.00", "10.00"]
    assert not any(r[1] in (str(a), str(f)) for r in rows)  # settled

    # the same figures as JSON, in cents, for the pages
    response = await payments.client.get(f"/groups/{group.group_id}/distributions/{d}/takings", headers=headers)
    assert response.status_code == 200, response.text
    found = response.json()
    by_method = {entry["method"]: (entry["count"], entry["amount"]) for entry in found["received"]}
    assert by_method == {
        "cash": (2, eur(2500)),
        "cheque": (2, eur(3000)),
        "transfer": (0, eur(0)),
        "card_terminal": (1, eur(200)),
        "card": (0, eur(0)),
    }
    assert found["refunded"] == [{"method": "cash", "count": 1, "amount": eur(-300)}]
    assert found["net_received"] == {"count": 6, "amount": eur(5400)}
    assert found["pending"] == [{"method": "transfer", "count": 1, "amount": eur(900)}]
    assert found["pending_total"] == {"count": 1, "amount": eur(900)}
    assert [(m["member_id"], m["standing"], m["amount"]["amount"]) for m in found["not_settled"]] == [
        (str(e), "missing", 900),
        (str(b), "partly_paid", 300),
        (str(c), "overpaid", 200),
    ]
    member = await payments.client.get(
        f"/groups/{group.group_id}/distributions/{d}/takings", headers=payments.member(group, a)
    )
    assert member.status_code == 403

    # the takings equal what was published for this distribution: received minus refunded
    received = await spy.wait_for("payments.payment.received", 5, distribution_id=str(d))
    refunded = await spy.wait_for("payments.payment.refunded", 1, distribution_id=str(d))
    published = sum(m.body["amount"]["amount"] for m in received) - sum(m.body["amount"]["amount"] for m in refunded)
    assert published == 5400
