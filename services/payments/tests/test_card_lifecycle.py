"""A card payment after its success (SPEC B3): explicit states with every transition recorded,
refunds that fail after they were recorded, and the dispute lifecycle with its money, each
effect exactly once whatever the replays and the order."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from cagette_runtime.testing import EventSpy

from .cardkit import applied, card_payment, checkout_started, outbox_for, settle_background_jobs, standin
from .conftest import Group, Payments
from .stripe_standin import DISPUTE_FEE


def eur(cents: int) -> dict[str, Any]:
    return {"amount": cents, "currency": "EUR"}


@pytest.fixture(autouse=True)
async def _settled(payments: Payments):
    yield
    await settle_background_jobs(payments)


async def succeeded(payments: Payments) -> tuple[Group, str, dict[str, Any], dict[str, Any]]:
    """A paid card order (29.80): group, payment id, payment intent, charge."""
    group, _, payment = await checkout_started(payments)
    session, intent, charge = standin(payments).pay(payment["checkout_session_id"])
    await applied(payments, standin(payments).event("checkout.session.completed", session))
    return group, payment["payment_id"], intent, charge


async def card_rows(payments: Payments, member_id: object) -> list[tuple[str, str, int]]:
    """(kind, source, amount) of the member's card rows in the payments table, oldest first."""
    async with payments.service.database.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT kind, source, amount FROM payments WHERE member_id = :m AND method = 'card' "
                "ORDER BY created_at, amount DESC"
            ),
            {"m": member_id},
        )
        return [(r.kind, r.source, r.amount) for r in rows]


async def refund_refused(payments: Payments, group: Group, pid: str, refund: dict[str, Any]) -> None:
    """A coordinator's refund the service refuses (409, nothing asked of the provider)."""
    refused = await payments.client.post(
        f"/groups/{group.group_id}/card-payments/{pid}/refunds", json=refund, headers=payments.coordinator(group)
    )
    assert refused.status_code == 409, refused.text


async def test_refund_states_move_with_the_money_and_every_transition_is_recorded(payments: Payments) -> None:
    group, pid, intent, charge = await succeeded(payments)
    await applied(
        payments, standin(payments).event("charge.refunded", standin(payments).refund_outside(charge["id"], 980))
    )
    assert (await card_payment(payments, group, pid))["state"] == "partially_refunded"
    await applied(
        payments, standin(payments).event("charge.refunded", standin(payments).refund_outside(charge["id"], 2000))
    )
    state = await card_payment(payments, group, pid)
    assert state["state"] == "refunded" and state["amount_refunded"] == eur(2980)
    moves = [(h["from"], h["to"]) for h in state["history"]]
    assert moves == [
        (None, "initiated"),
        ("initiated", "succeeded"),
        ("succeeded", "partially_refunded"),
        ("partially_refunded", "refunded"),
    ]
    # nothing left to refund: a coordinator's request is refused, nothing asked of the provider
    await refund_refused(payments, group, pid, {"amount": eur(1), "reason": "again", "client_key": "late"})


async def test_a_failed_refund_gives_the_money_back_once(payments: Payments, spy: EventSpy) -> None:
    group, pid, intent, charge = await succeeded(payments)
    member_id = (await card_payment(payments, group, pid))["member_id"]
    await applied(
        payments, standin(payments).event("charge.refunded", standin(payments).refund_outside(charge["id"], 500))
    )
    refund = standin(payments).last_refund(charge["id"])
    failed = standin(payments).fail_refund(refund["id"])
    # both events Stripe sends for it, and a replay: one credit back
    await applied(payments, standin(payments).event("refund.failed", failed))
    await applied(payments, standin(payments).event("charge.refund.updated", failed))
    [credited] = await spy.wait_for("payments.payment.received", member_id=member_id, amount=eur(500))
    assert "failed" in credited.body["label"]
    state = await card_payment(payments, group, pid)
    assert state["state"] == "succeeded" and state["amount_refunded"] == eur(0)
    assert await card_rows(payments, member_id) == [
        ("payment", "card", 2980),
        ("refund", "card_refund", -500),
        ("payment", "card_refund_failed", 500),
    ]
    # the late charge.refunded of the failed refund (its total still counts it): nothing
    await applied(payments, standin(payments).event("charge.refunded", charge | {"amount_refunded": 500}, created=1))
    assert (await card_payment(payments, group, pid))["amount_refunded"] == eur(0)
    # a new refund after the failure counts again
    await applied(
        payments, standin(payments).event("charge.refunded", standin(payments).refund_outside(charge["id"], 300))
    )
    state = await card_payment(payments, group, pid)
    assert state["state"] == "partially_refunded" and state["amount_refunded"] == eur(300)
    assert len(await card_rows(payments, member_id)) == 4


async def test_a_refund_failure_before_the_refund_is_parked_then_applied(payments: Payments) -> None:
    group, pid, intent, charge = await succeeded(payments)
    refunded = standin(payments).refund_outside(charge["id"], 700)
    failed = standin(payments).fail_refund(standin(payments).last_refund(charge["id"])["id"])
    await applied(payments, standin(payments).event("refund.failed", failed), outcome="parked")
    await applied(payments, standin(payments).event("charge.refunded", refunded))
    state = await card_payment(payments, group, pid)  # the parked failure applied right after
    assert state["state"] == "succeeded" and state["amount_refunded"] == eur(0)
    assert await payments.scalar("SELECT count(*) FROM card_failed_refunds WHERE payment_id = :p", p=pid) == 1


async def test_a_lost_dispute_withdraws_the_money_and_its_fee_once(payments: Payments, spy: EventSpy) -> None:
    group, pid, intent, charge = await succeeded(payments)
    dispute = standin(payments).dispute(charge["id"])
    await applied(payments, standin(payments).event("charge.dispute.created", dispute))
    assert (await card_payment(payments, group, pid))["state"] == "disputed"
    withdrawn = standin(payments).withdraw_dispute_funds(dispute["id"])
    event = standin(payments).event("charge.dispute.funds_withdrawn", withdrawn)
    await applied(payments, event)
    await applied(payments, standin(payments).event("charge.dispute.updated", withdrawn))  # same funds again
    [taken] = await spy.wait_for("payments.card_dispute.funds_withdrawn", payment_id=pid)
    assert taken.body["amount"] == eur(2980) and taken.body["fee"] == eur(DISPUTE_FEE)
    assert taken.body["dispute_id"] == dispute["id"]
    lost = standin(payments).close_dispute(dispute["id"], "lost")
    await applied(payments, standin(payments).event("charge.dispute.closed", lost))
    [closed] = await spy.wait_for("payments.card_dispute.updated", payment_id=pid, status="lost")
    assert closed.body["closed"] is True
    assert await outbox_for(payments, "payments.card_dispute.funds_withdrawn", pid) == 1
    state = await card_payment(payments, group, pid)
    assert state["state"] == "disputed" and state["dispute_status"] == "lost"
    assert [(f["amount"], f["fee"]) for f in state["dispute_funds"]] == [(eur(-2980), eur(DISPUTE_FEE))]
    rows = await card_rows(payments, state["member_id"])
    assert rows == [("payment", "card", 2980), ("refund", "card_dispute", -2980)]
    # a dispute is not the coordinator's to refund
    await refund_refused(payments, group, pid, {"amount": eur(100), "reason": "x", "client_key": "disputed"})


async def test_a_won_dispute_reinstates_the_money_once(payments: Payments, spy: EventSpy) -> None:
    group, pid, intent, charge = await succeeded(payments)
    await applied(
        payments, standin(payments).event("charge.refunded", standin(payments).refund_outside(charge["id"], 980))
    )
    dispute = standin(payments).dispute(charge["id"], amount=2000)  # what remains after the refund
    await applied(payments, standin(payments).event("charge.dispute.created", dispute))
    withdrawn = standin(payments).withdraw_dispute_funds(dispute["id"])
    await applied(payments, standin(payments).event("charge.dispute.funds_withdrawn", withdrawn))
    reinstated = standin(payments).reinstate_dispute_funds(dispute["id"])
    event = standin(payments).event("charge.dispute.funds_reinstated", reinstated)
    await applied(payments, event)
    won = standin(payments).close_dispute(dispute["id"], "won")
    await applied(payments, standin(payments).event("charge.dispute.closed", won))
    await applied(payments, standin(payments).event("charge.dispute.closed", won))  # told twice
    [back] = await spy.wait_for("payments.card_dispute.funds_reinstated", payment_id=pid)
    assert back.body["amount"] == eur(2000) and back.body["fee_returned"] == eur(0)
    assert await outbox_for(payments, "payments.card_dispute.funds_reinstated", pid) == 1
    assert await outbox_for(payments, "payments.card_dispute.funds_withdrawn", pid) == 1
    state = await card_payment(payments, group, pid)
    assert state["state"] == "partially_refunded" and state["dispute_status"] == "won"
    moves = [h["to"] for h in state["history"]]
    # opened, under review (funds withdrawn), won
    assert moves == ["initiated", "succeeded", "partially_refunded", "disputed", "disputed", "partially_refunded"]
    rows = await card_rows(payments, state["member_id"])
    assert sum(amount for _, _, amount in rows) == 2980 - 980


async def test_an_event_from_another_account_is_parked(payments: Payments) -> None:
    group, pid, intent, charge = await succeeded(payments)  # on the platform's own account
    standin(payments).add_account("acct_1Elsewhere")
    refunded = standin(payments).refund_outside(charge["id"], 100)
    await applied(
        payments, standin(payments).event("charge.refunded", refunded, account="acct_1Elsewhere"), outcome="parked"
    )
    assert (await card_payment(payments, group, pid))["amount_refunded"] == eur(0)
