"""The provider's signed webhooks (B6), posted over HTTP to the running service, signed with the
library's own helper: success, failure, expiry, duplicates, reordering, forged and stale
signatures, partial refunds, disputes, unknown payments and event types."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest
import stripe

from cagette_payments.webhooks import HANDLED_EVENTS
from cagette_runtime.testing import EventSpy

from .cardkit import (
    applied,
    awaiting,
    card_group,
    card_payment,
    outbox_for,
    pay,
    settle_background_jobs,
    sign,
    standin,
    started,
    webhook,
)
from .conftest import WEBHOOK_SECRET, Payments


def eur(cents: int) -> dict:
    return {"amount": cents, "currency": "EUR"}


@pytest.fixture(autouse=True)
async def _settled(payments: Payments):
    yield
    await settle_background_jobs(payments)


async def paid_order(payments: Payments, account: str | None = None):
    group = await card_group(payments, account=account)
    due = await awaiting(payments, group, group.members[0])
    payment = await started(payments, group, due)
    session, intent, charge = standin(payments).pay(payment["checkout_session_id"], account)
    return group, due, payment, session, intent, charge


async def test_success_confirms_once_with_the_fee_after(payments: Payments, spy: EventSpy) -> None:
    group, due, payment, session, intent, charge = await paid_order(payments)
    pid = payment["payment_id"]
    completed = standin(payments).event("checkout.session.completed", session)
    await applied(payments, completed)
    [succeeded] = await spy.wait_for("payments.card_payment.succeeded", payment_id=pid)
    assert succeeded.body["amount"] == eur(2980) and succeeded.body["order_id"] == str(due.order_id)
    assert succeeded.body["provider_payment_id"] == intent["id"] and succeeded.body["member_id"] == str(due.member_id)
    [received] = await spy.wait_for("payments.payment.received", payment_id=pid)
    assert received.body["method"] == "card" and received.body["amount"] == eur(2980)
    assert received.body["distribution_id"] == str(due.distribution_id)

    # the fee, read by the background job through the API, for the group's fee account
    [fee] = await spy.wait_for("payments.card_fee.charged", payment_id=pid)
    assert fee.body["amount"] == eur(2980 * 140 // 10000 + 25)
    # caused by the success notice: its correlation id, not a new one
    assert fee.body["correlation_id"] == succeeded.body["correlation_id"] == fee.raw.correlation_id
    assert standin(payments).seen(f"/v1/balance_transactions/{charge['balance_transaction']}", "GET")

    # replayed, and the same success told again by another event: nothing more
    before = await payments.outbox_count()
    replay = await webhook(payments, completed)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    await applied(payments, standin(payments).event("payment_intent.succeeded", intent))
    assert await payments.outbox_count() == before
    state = await card_payment(payments, group, pid)
    assert state["state"] == "succeeded" and state["fee"] == eur(2980 * 140 // 10000 + 25)
    member_payments = await payments.member_payments(group, due.member_id)
    assert [(p["method"], p["state"], p["amount"]) for p in member_payments] == [("card", "received", eur(2980))]
    assert await payments.scalar("SELECT count(*) FROM provider_events WHERE event_id = :e", e=completed["id"]) == 1


async def test_a_declined_card_then_a_success_in_the_same_session(payments: Payments, spy: EventSpy) -> None:
    group = await card_group(payments)
    due = await awaiting(payments, group, group.members[0])
    payment = await started(payments, group, due)
    pid = payment["payment_id"]
    declined = standin(payments).decline(payment["checkout_session_id"])
    await applied(payments, standin(payments).event("payment_intent.payment_failed", declined))
    [failed] = await spy.wait_for("payments.card_payment.failed", payment_id=pid)
    assert (
        failed.body["reason"] == "Your card has insufficient funds."
        and failed.body["retry_url"] == payment["checkout_url"]
    )
    assert (await card_payment(payments, group, pid))["state"] == "failed"
    # retrying gives the same open session
    again = await pay(payments, group, due.member_id, due.order_id)
    assert again.status_code == 200 and again.json()["payment_id"] == pid
    _, intent, _ = standin(payments).pay(payment["checkout_session_id"])
    await applied(payments, standin(payments).event("payment_intent.succeeded", intent))
    await spy.wait_for("payments.card_payment.succeeded", payment_id=pid)
    await spy.wait_for("payments.payment.received", payment_id=pid)
    assert (await card_payment(payments, group, pid))["state"] == "succeeded"


async def test_an_expired_session_fails_and_the_member_starts_again(payments: Payments, spy: EventSpy) -> None:
    group = await card_group(payments)
    due = await awaiting(payments, group, group.members[0])
    payment = await started(payments, group, due)
    expired = standin(payments).expire(payment["checkout_session_id"])
    await applied(payments, standin(payments).event("checkout.session.expired", expired))
    [failed] = await spy.wait_for("payments.card_payment.failed", payment_id=payment["payment_id"])
    assert failed.body["retry_url"] is None
    second = await pay(payments, group, due.member_id, due.order_id)
    assert second.status_code == 201, second.text
    assert second.json()["attempt"] == 2 and second.json()["checkout_session_id"] != payment["checkout_session_id"]


async def test_a_failure_after_the_success_changes_nothing(payments: Payments, spy: EventSpy) -> None:
    group, due, payment, session, intent, _ = await paid_order(payments)
    await applied(payments, standin(payments).event("payment_intent.succeeded", intent))
    await spy.wait_for("payments.card_payment.succeeded", payment_id=payment["payment_id"])
    await spy.wait_for("payments.card_fee.charged", payment_id=payment["payment_id"])  # the background job's, first
    before = await payments.outbox_count()
    late_failure = dict(intent, status="requires_payment_method", last_payment_error={"message": "declined"})
    await applied(payments, standin(payments).event("payment_intent.payment_failed", late_failure))
    await applied(payments, standin(payments).event("checkout.session.expired", dict(session, status="expired")))
    assert await payments.outbox_count() == before
    assert (await card_payment(payments, group, payment["payment_id"]))["state"] == "succeeded"
    assert await outbox_for(payments, "payments.card_payment.failed", payment["payment_id"]) == 0
    assert (await pay(payments, group, due.member_id, due.order_id)).status_code == 409  # already paid


async def test_a_refund_before_the_success_implies_it_and_money_adds_up(payments: Payments, spy: EventSpy) -> None:
    group, due, payment, session, intent, charge = await paid_order(payments)
    pid = payment["payment_id"]
    refunded = standin(payments).refund_outside(charge["id"], 1000)
    await applied(payments, standin(payments).event("charge.refunded", refunded))
    await spy.wait_for("payments.card_payment.succeeded", payment_id=pid)
    await spy.wait_for("payments.payment.received", payment_id=pid)
    [refund] = await spy.wait_for("payments.payment.refunded", payment_id=pid)
    assert refund.body["amount"] == eur(1000) and refund.body["method"] == "card"
    # the success notifications arrive afterwards: nothing more
    await applied(payments, standin(payments).event("checkout.session.completed", session))
    await applied(payments, standin(payments).event("payment_intent.succeeded", intent))
    assert await outbox_for(payments, "payments.card_payment.succeeded", pid) == 1
    assert await outbox_for(payments, "payments.payment.received", pid) == 1
    assert await outbox_for(payments, "payments.payment.refunded", pid) == 1
    state = await card_payment(payments, group, pid)
    assert state["state"] == "partially_refunded" and state["amount_refunded"] == eur(1000)


async def test_coordinator_refunds_take_effect_on_the_provider_confirmation(payments: Payments, spy: EventSpy) -> None:
    group, due, payment, session, intent, charge = await paid_order(payments, account="acct_1Refunds")
    pid = payment["payment_id"]
    await applied(payments, standin(payments).event("checkout.session.completed", session, account="acct_1Refunds"))
    url = f"/groups/{group.group_id}/card-payments/{pid}/refunds"
    coordinator = payments.coordinator(group)
    member = payments.member(group, due.member_id)
    assert (
        await payments.client.post(url, json={"amount": eur(500), "reason": "x", "client_key": "k"}, headers=member)
    ).status_code == 403

    first = await payments.client.post(
        url, json={"amount": eur(500), "reason": "missing cheese", "client_key": "r1"}, headers=coordinator
    )
    assert first.status_code == 202, first.text
    assert first.json()["provider_refund_id"].startswith("re_")
    [request] = [r for r in standin(payments).seen("/v1/refunds") if r.params.get("payment_intent") == intent["id"]]
    assert (
        request.account == "acct_1Refunds" and request.idempotency_key == f"cagette-refund-{first.json()['request_id']}"
    )
    assert request.params["amount"] == 500
    # asked, not yet confirmed: the member is not debited back yet
    assert await outbox_for(payments, "payments.payment.refunded", pid) == 0
    # the same request again (same key): the same refund, never a second one
    replay = await payments.client.post(
        url, json={"amount": eur(500), "reason": "missing cheese", "client_key": "r1"}, headers=coordinator
    )
    assert replay.status_code == 200 and replay.json()["request_id"] == first.json()["request_id"]
    assert standin(payments).charge(charge["id"], "acct_1Refunds")["amount_refunded"] == 500
    other = await payments.client.post(
        url, json={"amount": eur(600), "reason": "missing cheese", "client_key": "r1"}, headers=coordinator
    )
    assert other.status_code == 409

    after_first = standin(payments).charge(charge["id"], "acct_1Refunds")
    first_event = standin(payments).event("charge.refunded", after_first, account="acct_1Refunds")
    await applied(payments, first_event)
    [refund] = await spy.wait_for("payments.payment.refunded", payment_id=pid)
    assert refund.body["amount"] == eur(500)

    second = await payments.client.post(
        url, json={"amount": eur(300), "reason": "bruised apples", "client_key": "r2"}, headers=coordinator
    )
    assert second.status_code == 202, second.text
    second_event = standin(payments).event(
        "charge.refunded", standin(payments).charge(charge["id"], "acct_1Refunds"), account="acct_1Refunds"
    )
    await applied(payments, second_event)
    refunds = await spy.wait_for("payments.payment.refunded", count=2, payment_id=pid)
    assert sorted(r.body["amount"]["amount"] for r in refunds) == [300, 500]
    # the first notification delivered again under another id (reordered): nothing new
    await applied(payments, standin(payments).event("charge.refunded", after_first, account="acct_1Refunds"))
    assert await outbox_for(payments, "payments.payment.refunded", pid) == 2
    too_much = await payments.client.post(
        url, json={"amount": eur(2181), "reason": "all", "client_key": "r3"}, headers=coordinator
    )
    assert too_much.status_code == 422, too_much.text
    state = await card_payment(payments, group, pid)
    assert state["amount_refunded"] == eur(800) and len(state["refund_requests"]) == 2


async def test_a_dispute_is_recorded_and_flagged(payments: Payments, spy: EventSpy) -> None:
    group, due, payment, session, intent, charge = await paid_order(payments)
    pid = payment["payment_id"]
    await applied(payments, standin(payments).event("payment_intent.succeeded", intent))
    dispute = standin(payments).dispute(charge["id"])
    created = standin(payments).event("charge.dispute.created", dispute)
    await applied(payments, created)
    [flagged] = await spy.wait_for("payments.card_payment.disputed", payment_id=pid)
    assert flagged.body["dispute_id"] == dispute["id"] and flagged.body["reason"] == "fraudulent"
    assert flagged.body["amount"] == eur(2980)
    state = await card_payment(payments, group, pid)
    assert state["disputed"] is True and state["dispute_reason"] == "fraudulent"
    assert (await webhook(payments, created)).json()["duplicate"] is True
    assert await outbox_for(payments, "payments.card_payment.disputed", pid) == 1
    listed = await payments.client.get(
        f"/groups/{group.group_id}/card-payments?disputed=true", headers=payments.coordinator(group)
    )
    assert listed.status_code == 200 and [p["payment_id"] for p in listed.json()] == [pid]
    assert (
        await payments.client.get(
            f"/groups/{group.group_id}/card-payments", headers=payments.member(group, due.member_id)
        )
    ).status_code == 403


async def test_success_notifications_at_the_same_time_confirm_once(payments: Payments, spy: EventSpy) -> None:
    group, due, payment, session, intent, charge = await paid_order(payments)
    pid = payment["payment_id"]
    events = [
        standin(payments).event("checkout.session.completed", session),
        standin(payments).event("payment_intent.succeeded", intent),
    ]
    responses = await asyncio.gather(*(webhook(payments, e) for e in events + events))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    await spy.wait_for("payments.payment.received", payment_id=pid)
    assert await outbox_for(payments, "payments.card_payment.succeeded", pid) == 1
    assert await outbox_for(payments, "payments.payment.received", pid) == 1
    assert await payments.scalar("SELECT count(*) FROM provider_events WHERE payment_id = :p", p=pid) == 2


async def test_a_dispute_before_the_success_is_parked_then_applied(payments: Payments, spy: EventSpy) -> None:
    group, due, payment, session, intent, charge = await paid_order(payments)
    pid = payment["payment_id"]
    dispute = standin(payments).dispute(charge["id"])  # names only the provider's ids, not known yet
    early = standin(payments).event("charge.dispute.created", dispute)
    await applied(payments, early, outcome="parked")
    assert await payments.scalar("SELECT outcome FROM provider_events WHERE event_id = :e", e=early["id"]) == "parked"
    await applied(payments, standin(payments).event("checkout.session.completed", session))
    await spy.wait_for("payments.card_payment.disputed", payment_id=pid)
    assert await payments.scalar("SELECT outcome FROM provider_events WHERE event_id = :e", e=early["id"]) == "applied"


async def test_forged_missing_and_stale_signatures_are_refused_and_nothing_recorded(payments: Payments) -> None:
    group, due, payment, session, intent, charge = await paid_order(payments)
    event = standin(payments).event("checkout.session.completed", session)
    events_before = await payments.scalar("SELECT count(*) FROM provider_events")
    outbox_before = await payments.outbox_count()
    forged = await webhook(payments, event, secret="whsec_not_ours_0123456789")
    missing = await webhook(payments, event, header="")
    stale = await webhook(payments, event, timestamp=int(time.time()) - 301)
    future = await webhook(payments, event, timestamp=int(time.time()) + 301)  # made to be replayed later
    _, good_header = sign(event)
    tampered_body = await webhook(
        payments, event, header=good_header, body=sign(dict(event, data={"object": dict(session, amount_total=1)}))[0]
    )
    garbage = await webhook(payments, event, header="t=abc,v1=zzz")
    for response in (forged, missing, stale, future, tampered_body, garbage):
        assert response.status_code == 400, response.text
    assert await payments.scalar("SELECT count(*) FROM provider_events") == events_before
    assert await payments.outbox_count() == outbox_before
    assert (await card_payment(payments, group, payment["payment_id"]))["state"] == "initiated"
    # the genuine one still goes through
    await applied(payments, event)


async def test_bodies_not_utf8_too_large_or_with_nul_never_fail_the_endpoint(payments: Payments) -> None:
    assert payments.web is not None
    events_before = await payments.scalar("SELECT count(*) FROM provider_events")
    # not UTF-8 (validly signed over those bytes' latin-1 reading): 400, never a 500
    raw = b'{"id": "evt_latin1", "object": "event", "type": "caf\xe9"}'
    header = stripe.WebhookSignature.generate_signature_header(raw.decode("latin-1"), WEBHOOK_SECRET)
    not_utf8 = await payments.web.post("/webhooks/stripe", content=raw, headers={"Stripe-Signature": header})
    assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.json()["detail"], not_utf8.text
    # over the limit, declared or streamed without a length: 413, not read to the end
    limit = payments.service.settings.stripe_webhook_max_bytes
    big = await payments.web.post("/webhooks/stripe", content=b"x" * (limit + 1), headers={"Stripe-Signature": "t=1"})
    assert big.status_code == 413, big.text

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 1024 + 2):
            yield b"x" * 1024

    streamed = await payments.web.post("/webhooks/stripe", content=chunks(), headers={"Stripe-Signature": "t=1"})
    assert streamed.status_code == 413, streamed.text
    # NaN is no JSON PostgreSQL keeps either
    nan_body = '{"id": "evt_nan", "object": "event", "type": "x", "created": NaN}'
    nan = await payments.web.post(
        "/webhooks/stripe",
        content=nan_body,
        headers={"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(nan_body, WEBHOOK_SECRET)},
    )
    assert nan.status_code == 400, nan.text
    assert await payments.scalar("SELECT count(*) FROM provider_events") == events_before
    # U+0000 (which jsonb refuses) in a genuine event: stored without it, answered 200
    with_nul = standin(payments).event("customer.created", {"id": "cus_nul", "object": "customer", "name": "a\x00b"})
    response = await webhook(payments, with_nul)
    assert response.status_code == 200 and response.json()["outcome"] == "ignored", response.text
    stored = await payments.scalar(
        "SELECT payload -> 'data' -> 'object' ->> 'name' FROM provider_events WHERE event_id = :e", e=with_nul["id"]
    )
    assert stored == "ab"


async def test_unknown_types_are_ignored_and_unknown_payments_parked(payments: Payments) -> None:
    unknown_type = standin(payments).event("customer.created", {"id": "cus_123", "object": "customer"})
    response = await webhook(payments, unknown_type)
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    stranger = {
        "id": "pi_stranger",
        "object": "payment_intent",
        "amount": 100,
        "amount_received": 100,
        "currency": "eur",
        "status": "succeeded",
        "metadata": {"cagette_payment_id": str(uuid4())},
        "latest_charge": "ch_stranger",
    }
    parked = standin(payments).event("payment_intent.succeeded", stranger)
    response = await webhook(payments, parked)
    assert response.status_code == 200 and response.json()["outcome"] == "parked"
    admin = payments.admin()
    listed = await payments.client.get("/card/provider-events/parked", headers=admin)
    assert listed.status_code == 200 and parked["id"] in {e["event_id"] for e in listed.json()}
    assert (
        await payments.client.get("/card/provider-events/parked", headers=payments.token(uuid4()))
    ).status_code == 403
    retried = await payments.client.post(f"/card/provider-events/{parked['id']}/retry", headers=admin)
    assert retried.status_code == 200 and retried.json()["outcome"] == "parked"


async def test_a_success_for_another_amount_is_parked_not_confirmed(payments: Payments) -> None:
    group, due, payment, session, intent, charge = await paid_order(payments)
    wrong = dict(intent, amount_received=intent["amount"] - 1)
    await applied(payments, standin(payments).event("payment_intent.succeeded", wrong), outcome="parked")
    assert (await card_payment(payments, group, payment["payment_id"]))["state"] == "initiated"
    assert await outbox_for(payments, "payments.card_payment.succeeded", payment["payment_id"]) == 0


def test_the_readme_listens_to_exactly_the_events_handled() -> None:
    """One list in code (webhooks.HANDLED_EVENTS); the README's `stripe listen` line follows it."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [listed] = re.findall(r"--events ([a-z_.,]+)", readme)
    assert listed.split(",") == list(HANDLED_EVENTS)
