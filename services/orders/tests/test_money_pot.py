"""Money pot without negatives (R12, R13, B2): the ledger must hold the amount before the order
is recorded. These tests answer hold requests with `FakeLedgerHolds`, the test double of the
ledger's responder, on the real broker and the contract queue; tests/test_money_pot_e2e.py runs
the same paths against the real ledger."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from cagette_contracts import Money
from cagette_orders import usecases
from cagette_orders.holds import HOLD_LIFETIME, HoldReconciler
from cagette_orders.tables import hold_requests

from .conftest import FakeLedgerHolds, Group, OrdersEnv, Unchanged, make_group, outbox_rows


async def pot_group(env: OrdersEnv) -> Group:
    return await make_group(env, payment_methods=["money_pot"], allow_negative_money_pot=False)


async def pot_order(group: Group, member: dict[str, str], breads: str, **extra: Any) -> httpx.Response:
    """An order of `breads` bread, paid from the member's money pot."""
    return await group.order(member, [(group.bread, breads)], method="money_pot", **extra)


async def undecided_order(env: OrdersEnv, group: Group, member: dict[str, str]) -> httpx.Response:
    """A pot order of one bread while the ledger gives no decision: 503, and nothing recorded."""
    async with Unchanged(env, group.group_id):
        response = await pot_order(group, member, "1")
        assert response.status_code == 503, response.text
    return response


async def funded_member(group: Group, ledger: FakeLedgerHolds, balance: int) -> tuple[uuid.UUID, dict[str, str]]:
    """A new member whose pot the (fake) ledger says holds `balance`."""
    member_id, member = await group.join()
    ledger.balances[(group.group_id, member_id)] = balance
    return member_id, member


async def hold_states(env: OrdersEnv, group_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """The group's holds orders asked for, and where each stands."""
    async with env.service.database.sessionmaker() as session:
        rows = await session.execute(
            select(hold_requests.c.hold_id, hold_requests.c.status).where(hold_requests.c.group_id == group_id)
        )
        return {row.hold_id: row.status for row in rows}


async def released(ledger: FakeLedgerHolds, group: Group) -> list[uuid.UUID]:
    """The holds of `group` the fake ledger was told to release (waiting a little for one)."""
    for _ in range(100):
        mine = [r.hold_id for r in ledger.releases if r.group_id == group.group_id]
        if mine:
            return mine
        await asyncio.sleep(0.05)
    return []


class Crash(BaseException):
    """The orders process dying (not an error any handler catches)."""


async def test_granted_hold_confirms_the_order(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 1000)
    response = await pot_order(group, member, "2")
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
    member_id, member = await funded_member(group, ledger, 500)
    async with Unchanged(env, group.group_id):
        response = await pot_order(group, member, "2")
        assert response.status_code == 409, response.text
        body = response.json()
        assert "money pot does not cover" in body["detail"]
        assert body["context"]["available"] == {"amount": 500, "currency": "EUR"}
        assert body["context"]["needed"] == {"amount": 700, "currency": "EUR"}
    # After a top-up the same order goes through.
    ledger.balances[(group.group_id, member_id)] = 800
    assert (await pot_order(group, member, "2")).status_code == 201


async def test_two_concurrent_orders_when_the_pot_covers_one(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    second = await group.new_distribution()
    ledger.balances[(group.group_id, member_id)] = 1000
    responses = await asyncio.gather(
        pot_order(group, member, "2"),
        pot_order(group, member, "2", distribution_id=second["distribution_id"]),
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    confirmed = [e for e in await outbox_rows(env, group.group_id) if e["routing_key"] == "orders.order.confirmed"]
    assert len(confirmed) == 1


async def test_amendment_from_the_pot_needs_a_hold_for_the_added_amount(
    env: OrdersEnv, ledger: FakeLedgerHolds
) -> None:
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 1100)
    order = (await pot_order(group, member, "2")).json()
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
    response = await undecided_order(env, group, member)  # no responder: the hold request is unroutable
    assert "nothing was recorded" in response.json()["detail"]
    assert response.json()["error"] == "ledger_unavailable" and response.headers["Retry-After"] == "5"


async def test_ledger_silent_is_503_after_the_timeout(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 10_000)
    ledger.silent = True
    await undecided_order(env, group, member)
    assert len(ledger.requests) == 1


async def test_a_ledger_that_did_not_decide_is_503_and_the_retry_is_decided(
    env: OrdersEnv, ledger: FakeLedgerHolds
) -> None:
    """Too late, or not able to decide now (restarting): not a verdict on the member's money, so
    never the 409 'your money pot does not cover this' (a client would give up) but a 503."""
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 10_000)
    ledger.undecided = True
    response = await undecided_order(env, group, member)
    assert "try again" in response.json()["detail"] and response.headers["retry-after"]
    ledger.undecided = False
    retried = await pot_order(group, member, "1")
    assert retried.status_code == 201, retried.text
    first, second = ledger.requests
    assert first.hold_id != second.hold_id  # the ended ask is not asked again: a new hold id


async def test_the_same_basket_twice_at_once_is_one_hold_held_once(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    """Two identical requests (a client retrying before the first answered) are the same
    attempt: the same order id and hold id, held once, one order recorded, nothing released."""
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 5000)
    ledger.delay = 0.3  # both requests are checked before either is recorded
    responses = await asyncio.gather(*(pot_order(group, member, "2") for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    first, second = ledger.requests
    assert first.hold_id == second.hold_id and first.order_id == second.order_id
    winner = next(r.json()["order_id"] for r in responses if r.status_code == 201)
    assert str(first.order_id) == winner
    await asyncio.sleep(0.3)
    assert ledger.releases == []
    assert ledger.available(group.group_id, member_id) == 5000 - 700
    assert await hold_states(env, group.group_id) == {first.hold_id: "committed"}


async def test_a_hold_whose_order_is_not_recorded_is_released(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 5000)
    ledger.delay = 0.3  # both requests are checked before either is recorded
    # Two different baskets for the same distribution at once: two holds, one order.
    responses = await asyncio.gather(
        pot_order(group, member, "2"),
        pot_order(group, member, "3"),
    )
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert len({r.hold_id for r in ledger.requests}) == 2

    async def released() -> bool:
        for _ in range(100):
            if ledger.releases:
                return True
            await asyncio.sleep(0.05)
        return False

    assert await released()
    (release,) = ledger.releases
    winner = next(r.json() for r in responses if r.status_code == 201)
    (kept,) = [r for r in ledger.requests if r.amount == Money.model_validate(winner["total"])]
    assert release.hold_id != kept.hold_id and release.group_id == group.group_id
    assert ledger.available(group.group_id, member_id) == 5000 - kept.amount.amount
    states = await hold_states(env, group.group_id)
    assert states == {kept.hold_id: "committed", release.hold_id: "released"}


async def test_the_request_carries_its_deadline_and_expiration(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 1000)
    before = datetime.now(UTC)
    assert (await pot_order(group, member, "1")).status_code == 201
    (request,) = ledger.requests
    timeout = 2.0  # the env's LedgerHolds (app.state.holds) waits 2 s
    assert request.grant_before is not None
    assert before + timedelta(seconds=timeout) <= request.grant_before <= datetime.now(UTC) + timedelta(seconds=timeout)
    assert request.expires_at - request.grant_before == HOLD_LIFETIME - timedelta(seconds=timeout)
    (expiration,) = ledger.expirations  # AMQP per-message TTL, in seconds as aio-pika reads it
    assert 0 < float(expiration) <= timeout


async def test_a_retry_after_a_timeout_reuses_the_hold(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    """The ledger granted the first request after orders stopped waiting (503); the member's
    retry asks for the same hold id (and order id) and gets that grant: held once."""
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 1000)
    ledger.delay = 2.3  # longer than the env's 2 s: orders stops waiting, the fake grants anyway
    first = await pot_order(group, member, "2")
    assert first.status_code == 503, first.text
    await asyncio.sleep(0.5)
    assert ledger.available(group.group_id, member_id) == 300  # the late grant holds the money
    ledger.delay = 0
    retry = await pot_order(group, member, "2")
    assert retry.status_code == 201, retry.text
    asked, again = ledger.requests
    assert asked.hold_id == again.hold_id and str(again.order_id) == retry.json()["order_id"]
    assert again.grant_before is not None and asked.grant_before is not None
    assert again.grant_before > asked.grant_before
    assert ledger.available(group.group_id, member_id) == 300  # held once, not 1400
    assert await hold_states(env, group.group_id) == {asked.hold_id: "committed"}


async def test_reconciliation_gives_back_a_hold_granted_after_the_deadline(
    env: OrdersEnv, ledger: FakeLedgerHolds
) -> None:
    """The issue's fault: orders timed out, the ledger granted later; nobody retries. Once the
    deadline (plus the grace) passed, the reconciliation releases it and the money comes back."""
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 1000)
    ledger.delay = 2.3
    assert (await pot_order(group, member, "2")).status_code == 503
    await asyncio.sleep(0.5)
    assert ledger.available(group.group_id, member_id) == 300
    (request,) = ledger.requests
    reconciler = HoldReconciler(env.service.database, env.service.holds, interval=60, grace=timedelta(seconds=30))
    await reconciler.reconcile_once()
    assert await hold_states(env, group.group_id) == {request.hold_id: "asked"}  # within the grace: kept
    later = datetime.now(UTC) + timedelta(seconds=31)
    assert await reconciler.reconcile_once(now=later) >= 1
    assert await hold_states(env, group.group_id) == {request.hold_id: "released"}
    assert await released(ledger, group) == [request.hold_id]
    assert ledger.available(group.group_id, member_id) == 1000
    await reconciler.reconcile_once(now=later)
    assert await released(ledger, group) == [request.hold_id]  # given back once
    # The member can order again: the hold id is the same attempt, decided afresh.
    ledger.delay = 0
    assert (await pot_order(group, member, "2")).status_code == 201
    assert ledger.available(group.group_id, member_id) == 300


async def test_reconciliation_gives_back_a_hold_when_orders_dies_after_the_grant(
    env: OrdersEnv, ledger: FakeLedgerHolds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orders dies between the grant and recording the order (no immediate give-back runs):
    the hold it recorded before asking is released by the reconciliation."""
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 1000)

    async def crash(*args: object, **kwargs: object) -> None:
        raise Crash  # the process dies here: nothing after it runs

    monkeypatch.setattr(usecases, "_commit_hold", crash)
    monkeypatch.setattr(usecases, "give_back", crash)
    with pytest.raises(BaseException) as died:
        await pot_order(group, member, "2")
    assert died.group_contains(Crash) if isinstance(died.value, BaseExceptionGroup) else died.type is Crash
    monkeypatch.undo()
    assert ledger.available(group.group_id, member_id) == 300
    (request,) = ledger.requests
    assert request.grant_before is not None
    reconciler = HoldReconciler(env.service.database, env.service.holds, interval=60, grace=timedelta(seconds=1))
    assert await reconciler.reconcile_once(now=request.grant_before + timedelta(seconds=2)) >= 1
    assert await released(ledger, group) == [request.hold_id]
    assert ledger.available(group.group_id, member_id) == 1000
    assert await hold_states(env, group.group_id) == {request.hold_id: "released"}


async def test_a_hold_past_its_lifetime_is_only_marked_expired(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await group.join()
    ledger.silent = True
    assert (await pot_order(group, member, "1")).status_code == 503
    (request,) = ledger.requests
    reconciler = HoldReconciler(env.service.database, env.service.holds, interval=60, grace=timedelta(0))
    async with env.service.database.transaction() as session:
        await session.execute(
            update(hold_requests)
            .where(hold_requests.c.hold_id == request.hold_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await reconciler.reconcile_once() >= 1
    assert await hold_states(env, group.group_id) == {request.hold_id: "expired"}
    assert [r for r in ledger.releases if r.group_id == group.group_id] == []


async def test_an_answer_that_is_not_a_decision_is_503(env: OrdersEnv, ledger: FakeLedgerHolds) -> None:
    group = await pot_group(env)
    member_id, member = await funded_member(group, ledger, 10_000)
    ledger.reply_body = b'{"error": "malformed", "detail": "whatever"}'
    async with Unchanged(env, group.group_id):
        response = await pot_order(group, member, "1")
        assert response.status_code == 503 and "not understood" in response.json()["detail"]
