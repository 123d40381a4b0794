"""R6: a product the producer could not deliver is taken off a member's order by a coordinator,
with a reason, all of a line or part of it, also once the basket was validated; the member
never can. The order's total is lowered and orders.order.line_undelivered published once per
removal, crediting what the line was priced at minus what is left of it (B1)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from cagette_contracts import BasketValidated, Money, line_amount

from .conftest import Group, Unchanged, deliver, make_group, outbox_rows

CHEESE = Money(amount=1999, currency="EUR")


def _undelivered(group: Group, order_id: str, line: int) -> str:
    return group.url(f"/orders/{order_id}/lines/{line}/undelivered")


async def _events(group: Group) -> list[dict]:
    return [
        e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.order.line_undelivered"
    ]


async def test_a_coordinator_takes_an_undelivered_product_off_with_a_reason(group: Group) -> None:
    member_id, member = await group.join()
    placed = (await group.order(member, [(group.bread, "2"), (group.cheese, "0.375")])).json()
    assert [line["line_number"] for line in placed["lines"]] == [1, 2]
    response = await group.client.post(
        _undelivered(group, placed["order_id"], 2), headers=group.coordinator, json={"reason": "Fromager malade"}
    )
    assert response.status_code == 201, response.text
    order = response.json()
    cheese = order["lines"][1]
    assert cheese["removed_quantity"] == "0.375" and cheese["removals"][0]["reason"] == "Fromager malade"
    assert cheese["removals"][0]["amount"] == {"amount": 765, "currency": "EUR"}
    assert order["total"] == {"amount": 700, "currency": "EUR"}
    (event,) = await _events(group)
    assert event["member_id"] == str(member_id) and event["order_id"] == placed["order_id"]
    assert event["amount"] == {"amount": 765, "currency": "EUR"} and event["new_total"]["amount"] == 700
    assert event["product_name"] == "Cheese" and event["unit"] == "kg" and event["quantity"] == "0.375"
    assert event["quantity_left"] == "0" and event["reason"] == "Fromager malade"
    assert event["removed_by"] == str(group.coordinator_id) and event["line_number"] == 2
    assert event["distribution_place"] == "La grange"
    await group.env.spy.wait_for("orders.order.line_undelivered", removal_id=event["removal_id"])
    # Taking it off again changes nothing: it is gone already (409), nothing more is credited.
    async with Unchanged(group.env, group.group_id):
        again = await group.client.post(
            _undelivered(group, placed["order_id"], 2), headers=group.coordinator, json={"reason": "encore"}
        )
        assert again.status_code == 409 and "already taken off" in again.json()["detail"]
    assert len(await _events(group)) == 1
    # The member's basket no longer holds it (R6's add-only rule counts what is left).
    grown = await group.client.put(
        group.url(f"/orders/{placed['order_id']}"),
        headers=member,
        json={"lines": [{"product_id": group.bread, "quantity": "3"}]},
    )
    assert grown.status_code == 200, grown.text
    assert grown.json()["total"]["amount"] == 700 + 350


async def test_part_of_a_line_in_steps_credits_exactly_the_line(group: Group) -> None:
    _, member = await group.join()
    placed = (await group.order(member, [(group.bread, "2"), (group.cheese, "0.375")])).json()
    order_id = placed["order_id"]
    one = await group.client.post(
        _undelivered(group, order_id, 1), headers=group.coordinator, json={"quantity": "1", "reason": "Fournil"}
    )
    assert one.status_code == 201, one.text
    assert one.json()["total"]["amount"] == 1465 - 350
    assert one.json()["lines"][0]["removed_quantity"] == "1"
    # Cheese in two steps: 0.125 then the rest; the credits add up to the line's 7.65.
    first = await group.client.post(
        _undelivered(group, order_id, 2), headers=group.coordinator, json={"quantity": "0.125", "reason": "a"}
    )
    rest = await group.client.post(_undelivered(group, order_id, 2), headers=group.coordinator, json={"reason": "b"})
    assert first.status_code == 201 and rest.status_code == 201, rest.text
    credited = [e["amount"]["amount"] for e in await _events(group) if e["line_number"] == 2]
    expected_first = 765 - line_amount(Decimal("0.25"), CHEESE, Decimal("0.02")).amount
    assert credited == [expected_first, 765 - expected_first]
    assert rest.json()["total"]["amount"] == 350
    # The last bread too: nothing of the order was delivered, its total is zero.
    last = await group.client.post(_undelivered(group, order_id, 1), headers=group.coordinator, json={"reason": "x"})
    assert last.status_code == 201 and last.json()["total"]["amount"] == 0


async def test_bad_requests_are_refused_and_change_nothing(group: Group) -> None:
    member_id, member = await group.join()
    placed = (await group.order(member, [(group.bread, "2"), (group.cheese, "0.375")])).json()
    order_id = placed["order_id"]
    other = await make_group(group.env)
    cases = [
        ("the member themself", _undelivered(group, order_id, 1), member, {"reason": "r"}, 403),
        ("another group's coordinator", _undelivered(other, order_id, 1), group.coordinator, {"reason": "r"}, 403),
        ("unknown order", _undelivered(group, str(uuid.uuid4()), 1), group.coordinator, {"reason": "r"}, 404),
        ("unknown line", _undelivered(group, order_id, 3), group.coordinator, {"reason": "r"}, 404),
        ("line zero", _undelivered(group, order_id, 0), group.coordinator, {"reason": "r"}, 422),
        ("no reason", _undelivered(group, order_id, 1), group.coordinator, {}, 422),
        ("blank reason", _undelivered(group, order_id, 1), group.coordinator, {"reason": "   "}, 422),
        ("control character", _undelivered(group, order_id, 1), group.coordinator, {"reason": "a\x00b"}, 422),
        ("newline", _undelivered(group, order_id, 1), group.coordinator, {"reason": "a\nb"}, 422),
        ("too long", _undelivered(group, order_id, 1), group.coordinator, {"reason": "x" * 301}, 422),
        (
            "more than ordered",
            _undelivered(group, order_id, 1),
            group.coordinator,
            {"quantity": "3", "reason": "r"},
            422,
        ),
        ("half a bread", _undelivered(group, order_id, 1), group.coordinator, {"quantity": "0.5", "reason": "r"}, 422),
        ("zero", _undelivered(group, order_id, 1), group.coordinator, {"quantity": "0", "reason": "r"}, 422),
        ("not a number", _undelivered(group, order_id, 1), group.coordinator, {"quantity": "١", "reason": "r"}, 422),
        ("unknown field", _undelivered(group, order_id, 1), group.coordinator, {"reason": "r", "amount": 1}, 422),
        (
            "rounds to nothing",
            _undelivered(group, order_id, 2),
            group.coordinator,
            {"quantity": "0.0001", "reason": "r"},
            422,
        ),
    ]
    async with Unchanged(group.env, group.group_id):
        for what, url, headers, body, status in cases:
            response = await group.client.post(url, headers=headers, json=body)
            assert response.status_code == status, (what, response.text)
            assert "detail" in response.json(), what
    # The order is as it was.
    order = (await group.client.get(group.url(f"/orders/{order_id}"), headers=member)).json()
    assert order["total"]["amount"] == 1465 and all(line["removed_quantity"] == "0" for line in order["lines"])


async def test_allowed_once_the_basket_was_validated(group: Group) -> None:
    member_id, member = await group.join()
    placed = (await group.order(member, [(group.bread, "2")])).json()
    await deliver(
        group.env,
        BasketValidated(
            group_id=group.group_id,
            distribution_id=group.distribution["distribution_id"],
            member_id=member_id,
            validated_by=group.coordinator_id,
        ),
    )
    response = await group.client.post(
        _undelivered(group, placed["order_id"], 1), headers=group.coordinator, json={"quantity": "1", "reason": "r"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["locked"] is True and response.json()["total"]["amount"] == 350


async def test_payments_off_records_it_and_publishes_nothing(env) -> None:  # type: ignore[no-untyped-def]
    group = await make_group(env, payments_enabled=False, payment_methods=[])
    _, member = await group.join()
    placed = await group.order(member, [(group.bread, "2")], method=None)
    assert placed.status_code == 201, placed.text
    response = await group.client.post(
        _undelivered(group, placed.json()["order_id"], 1), headers=group.coordinator, json={"reason": "r"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["total"]["amount"] == 0
    assert await _events(group) == []
