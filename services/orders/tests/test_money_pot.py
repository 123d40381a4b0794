"""Money pot without negatives (R12, R13, B2): the ledger must hold the amount before the order
is recorded. These tests answer hold requests with `FakeLedgerHolds`, the test double of the
ledger's responder, on the real broker and the contract queue; tests/test_money_pot_e2e.py runs
the same paths against the real ledger."""

from __future__ import annotations

import asyncio
import uuid

from .conftest import FakeLedgerHolds, Group, OrdersEnv, Unchanged, make_group, outbox_rows


async def pot_group(env: OrdersEnv) -> Group:
    return await make_group(env, payment_methods=["money_pot"], allow_negative_money_pot=False)


async def test_granted_hold_confirms_the_order(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    ledger.balances[(group.group_id, member_id)] = 1000
    response = await group.order(member, [(group.bread, "2")], method="money_pot")
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "confirmed"
    (request,) = ledger.requests
    assert request.order_id == uuid.UUID(order["order_id"]) and request.member_id == member_id
    assert request.group_id == group.group_id and request.amount.amount == 700
    confirmed = [e for e in await outbox_rows(env, group.group_id) if e["routing_key"] == "orders.order.confirmed"]
    assert [(e["payment_method"], e["total"]["amount"]) for e in confirmed] == [("money_pot", 700)]


async def test_refused_hold_records_nothing_and_says_what_is_available(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    ledger.balances[(group.group_id, member_id)] = 500
    async with Unchanged(env, group.group_id):
        response = await group.order(member, [(group.bread, "2")], method="money_pot")
        assert response.status_code == 409, response.text
        body = response.json()
        assert "money pot does not cover" in body["detail"]
        assert body["context"]["available"] == {"amount": 500, "currency": "EUR"}
        assert body["context"]["needed"] == {"amount": 700, "currency": "EUR"}
    # After a top-up the same order goes through.
    ledger.balances[(group.group_id, member_id)] = 800
    assert (await group.order(member, [(group.bread, "2")], method="money_pot")).status_code == 201


async def test_two_concurrent_orders_when_the_pot_covers_one(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    second = await group.new_distribution()
    ledger.balances[(group.group_id, member_id)] = 1000
    responses = await asyncio.gather(
        group.order(member, [(group.bread, "2")], method="money_pot"),
        group.order(member, [(group.bread, "2")], method="money_pot", distribution_id=second["distribution_id"]),
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    confirmed = [e for e in await outbox_rows(env, group.group_id) if e["routing_key"] == "orders.order.confirmed"]
    assert len(confirmed) == 1


async def test_amendment_from_the_pot_needs_a_hold_for_the_added_amount(
    env: OrdersEnv, ledger: FakeLedgerHolds
) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    ledger.balances[(group.group_id, member_id)] = 1100
    order = (await group.order(member, [(group.bread, "2")], method="money_pot")).json()
    url = group.url(f"/orders/{order['order_id']}")
    async with Unchanged(env, group.group_id):
        refused = await group.client.put(
            url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "4"}]}
        )
        assert refused.status_code == 409 and refused.json()["context"]["available"]["amount"] == 400
    added = await group.client.put(url, headers=member, json={"lines": [{"product_id": group.bread, "quantity": "3"}]})
    assert added.status_code == 200 and added.json()["total"]["amount"] == 1050
    assert [r.amount.amount for r in ledger.requests] == [700, 700, 350]
    amended = [e for e in await outbox_rows(env, group.group_id) if e["routing_key"] == "orders.order.amended"]
    assert [(e["added_total"]["amount"], e["payment_method"]) for e in amended] == [(350, "money_pot")]


async def test_ledger_unreachable_is_503_and_records_nothing(env: OrdersEnv) -> None:
    group = await pot_group(env)
    _, member = await group.join()
    async with Unchanged(env, group.group_id):  # no responder: the hold request is unroutable
        response = await group.order(member, [(group.bread, "1")], method="money_pot")
        assert response.status_code == 503, response.text
        assert "nothing was recorded" in response.json()["detail"]
        assert response.json()["error"] == "ledger_unavailable" and response.headers["Retry-After"] == "5"


async def test_ledger_silent_is_503_after_the_timeout(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    ledger.balances[(group.group_id, member_id)] = 10_000
    ledger.silent = True
    async with Unchanged(env, group.group_id):
        response = await group.order(member, [(group.bread, "1")], method="money_pot")
        assert response.status_code == 503, response.text
    assert len(ledger.requests) == 1


async def test_a_hold_whose_order_is_not_recorded_is_released(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    ledger.balances[(group.group_id, member_id)] = 5000
    ledger.delay = 0.3  # both requests are checked before either is recorded
    # The same basket twice at once: both holds are granted, only one order can be recorded.
    responses = await asyncio.gather(*(group.order(member, [(group.bread, "2")], method="money_pot") for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert len(ledger.requests) == 2

    async def released() -> bool:
        for _ in range(100):
            if ledger.releases:
                return True
            await asyncio.sleep(0.05)
        return False

    assert await released()
    (release,) = ledger.releases
    winner = next(r.json()["order_id"] for r in responses if r.status_code == 201)
    (kept,) = [r for r in ledger.requests if str(r.order_id) == winner]
    assert release.hold_id != kept.hold_id and release.group_id == group.group_id
    assert ledger.available(group.group_id, member_id) == 5000 - 700


async def test_an_answer_that_is_not_a_decision_is_503(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    ledger.balances[(group.group_id, member_id)] = 10_000
    ledger.reply_body = b'{"error": "malformed", "detail": "whatever"}'
    async with Unchanged(env, group.group_id):
        response = await group.order(member, [(group.bread, "1")], method="money_pot")
        assert response.status_code == 503 and "not understood" in response.json()["detail"]
