"""Paying by card (issue 6): a group's card set-up, the member's checkout session for exactly
what orders asked, one provider object per attempt whatever the retries. The real StripeClient
talks to the local stand-in (stripe_standin.py)."""

from __future__ import annotations

import asyncio
import logging
from uuid import uuid4

import pytest

from .cardkit import (
    applied,
    awaiting,
    card_group,
    card_payment,
    checkout_started,
    pay,
    settle_background_jobs,
    standin,
    started,
    webhook,
)
from .conftest import STRIPE_KEY, WEBHOOK_SECRET, Payments, line


@pytest.fixture(autouse=True)
async def _settled(payments: Payments):
    yield
    await settle_background_jobs(payments)


async def test_card_settings_are_for_coordinators_and_show_no_secret(payments: Payments) -> None:
    group = await payments.new_group()
    url = f"/groups/{group.group_id}/card-settings"
    member = payments.member(group, group.members[0])
    assert (await payments.client.put(url, json={"stripe_account": "acct_1Abc"}, headers=member)).status_code == 403
    assert (await payments.client.get(url, headers=member)).status_code == 403
    unknown = await payments.client.put(
        url, json={"stripe_account": "acct_1Unknown"}, headers=payments.coordinator(group)
    )
    assert unknown.status_code == 502, unknown.text  # the provider does not know it: nothing stored
    assert (await payments.client.get(url, headers=payments.coordinator(group))).json()["enabled"] is False
    assert (
        await payments.client.put(url, json={"stripe_account": "not an account"}, headers=payments.coordinator(group))
    ).status_code == 422
    standin(payments).add_account("acct_1Known")
    response = await payments.client.put(
        url, json={"stripe_account": "acct_1Known"}, headers=payments.coordinator(group)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] is True and body["stripe_account"] == "acct_1Known" and body["provider_configured"] is True
    assert STRIPE_KEY not in response.text and "sk_" not in response.text and "whsec_" not in response.text


async def test_a_member_pays_their_order_through_one_checkout_session(payments: Payments) -> None:
    group = await card_group(payments, account="acct_1Pay")
    alice = group.members[0]
    due = await awaiting(payments, group, alice)  # 2 x 12.50 + 1.5 x 3.20 = 29.80
    assert due.amount.amount == 2980
    response = await pay(payments, group, alice, due.order_id)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["state"] == "initiated" and payment["amount"] == {"amount": 2980, "currency": "EUR"}
    assert payment["checkout_url"].startswith("https://checkout.stripe.test/") and payment["attempt"] == 1

    session = standin(payments).session(payment["checkout_session_id"], "acct_1Pay")
    assert session["amount_total"] == 2980 and session["currency"] == "eur" and session["mode"] == "payment"
    metadata = {
        "cagette_group_id": str(group.group_id),
        "cagette_member_id": str(alice),
        "cagette_order_id": str(due.order_id),
        "cagette_payment_id": payment["payment_id"],
    }
    assert session["metadata"] == metadata and session["_payment_intent_data"]["metadata"] == metadata
    assert session["client_reference_id"] == payment["payment_id"]
    [request] = [
        r
        for r in standin(payments).seen("/v1/checkout/sessions")
        if r.params.get("client_reference_id") == payment["payment_id"]
    ]
    assert request.idempotency_key == f"cagette-checkout-{payment['payment_id']}" and request.account == "acct_1Pay"

    again = await pay(payments, group, alice, due.order_id)
    assert again.status_code == 200
    assert again.json()["payment_id"] == payment["payment_id"]
    assert again.json()["checkout_session_id"] == payment["checkout_session_id"]
    sessions = [
        r
        for r in standin(payments).seen("/v1/checkout/sessions")
        if r.params.get("client_reference_id") == payment["payment_id"]
    ]
    assert len(sessions) == 1


async def test_a_retry_after_a_lost_answer_gets_the_same_session(payments: Payments) -> None:
    """The provider created the session but its answer was lost (the row has no session): the
    retried request asks again with the same idempotency key and gets the same session."""
    group, due, payment = await checkout_started(payments)
    alice = due.member_id
    await payments.scalar(
        "UPDATE card_payments SET checkout_session_id = NULL, checkout_url = NULL WHERE payment_id = :p RETURNING 1",
        p=payment["payment_id"],
    )
    again = await pay(payments, group, alice, due.order_id)
    assert again.status_code == 200, again.text
    assert again.json()["checkout_session_id"] == payment["checkout_session_id"]
    requests = [
        r
        for r in standin(payments).seen("/v1/checkout/sessions")
        if r.params.get("client_reference_id") == payment["payment_id"]
    ]
    assert len(requests) == 2 and len({r.idempotency_key for r in requests}) == 1
    sessions = [
        s
        for s in standin(payments).objects["platform"].values()
        if s["object"] == "checkout.session" and s["client_reference_id"] == payment["payment_id"]
    ]
    assert len(sessions) == 1


async def test_only_the_member_pays_and_only_what_orders_awaits(payments: Payments) -> None:
    group = await card_group(payments)
    alice, bob = group.members
    due = await awaiting(payments, group, alice)
    assert (await pay(payments, group, bob, due.order_id)).status_code == 403
    assert (await pay(payments, group, alice, due.order_id, headers=payments.coordinator(group))).status_code == 403
    assert (await pay(payments, group, alice, uuid4())).status_code == 404
    other = await payments.new_group()
    assert (await pay(payments, other, alice, due.order_id, headers=payments.member(other, alice))).status_code == 404
    # the amount is never the client's: an amount in the body is refused
    response = await payments.client.post(
        f"/groups/{group.group_id}/orders/{due.order_id}/card-payment",
        json={"amount": {"amount": 1, "currency": "EUR"}},
        headers=payments.member(group, alice),
    )
    assert response.status_code == 422


async def test_a_group_without_card_set_up_cannot_pay_by_card(payments: Payments) -> None:
    group = await payments.new_group()
    due = await awaiting(payments, group, group.members[0])
    response = await pay(payments, group, group.members[0], due.order_id)
    assert response.status_code == 409, response.text
    assert await payments.scalar("SELECT count(*) FROM card_payments WHERE order_id = :o", o=due.order_id) == 0


async def test_an_amendment_is_paid_on_its_own(payments: Payments) -> None:
    group = await card_group(payments)
    alice = group.members[0]
    order = await awaiting(payments, group, alice)
    addition = await awaiting(
        payments,
        group,
        alice,
        line("Eggs", 300, "2"),
        order_id=order.order_id,
        amendment_id=uuid4(),
        distribution_id=order.distribution_id,
    )
    payment = await started(payments, group, addition)
    assert payment["amount"] == {"amount": 600, "currency": "EUR"} and payment["amendment_id"] == str(
        addition.amendment_id
    )
    session = standin(payments).session(payment["checkout_session_id"])
    assert session["amount_total"] == 600 and session["metadata"]["cagette_amendment_id"] == str(addition.amendment_id)
    first = await started(payments, group, order)
    assert first["payment_id"] != payment["payment_id"] and first["amount"]["amount"] == 2980
    listed = await payments.client.get(
        f"/groups/{group.group_id}/orders/{order.order_id}/card-payments", headers=payments.member(group, alice)
    )
    assert listed.status_code == 200 and {p["payment_id"] for p in listed.json()} == {
        payment["payment_id"],
        first["payment_id"],
    }
    assert {p["member_name"] for p in listed.json()} == {"Member 0"}  # who paid, in words
    assert (await card_payment(payments, group, payment["payment_id"]))["history"][0]["to"] == "initiated"


async def test_a_provider_refusal_charges_nothing_and_the_retry_recovers(payments: Payments) -> None:
    group = await card_group(payments)
    alice = group.members[0]
    due = await awaiting(payments, group, alice)
    provider = standin(payments)
    provider.api_key, real_key = "sk_test_rotated", provider.api_key
    try:
        refused = await pay(payments, group, alice, due.order_id)
    finally:
        provider.api_key = real_key
    assert refused.status_code == 502, refused.text
    assert refused.json()["error"] == "provider_refused" and STRIPE_KEY not in refused.text
    retried = await pay(payments, group, alice, due.order_id)
    assert retried.status_code == 200, retried.text
    assert retried.json()["attempt"] == 1 and retried.json()["checkout_url"]


async def test_secrets_never_reach_the_logs(payments: Payments, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    group, _, payment = await checkout_started(payments)
    session, _, _ = standin(payments).pay(payment["checkout_session_id"])
    await applied(payments, standin(payments).event("checkout.session.completed", session))
    assert (
        await webhook(payments, standin(payments).event("checkout.session.completed", session), secret="whsec_wrong")
    ).status_code == 400
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records and STRIPE_KEY not in logged and WEBHOOK_SECRET not in logged
    assert STRIPE_KEY not in repr(payments.service.settings) and WEBHOOK_SECRET not in repr(payments.service.settings)


async def test_concurrent_pay_requests_make_one_attempt_and_one_session(payments: Payments) -> None:
    group = await card_group(payments)
    alice = group.members[0]
    due = await awaiting(payments, group, alice)
    responses = await asyncio.gather(*(pay(payments, group, alice, due.order_id) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201], [r.text for r in responses]
    assert len({r.json()["payment_id"] for r in responses}) == 1
    assert len({r.json()["checkout_session_id"] for r in responses}) == 1
    assert await payments.scalar("SELECT count(*) FROM card_payments WHERE order_id = :o", o=due.order_id) == 1
    payment_id = responses[0].json()["payment_id"]
    sessions = [
        s
        for s in standin(payments).objects["platform"].values()
        if s["object"] == "checkout.session" and s["client_reference_id"] == payment_id
    ]
    assert len(sessions) == 1


async def test_a_new_attempt_only_once_the_open_session_is_surely_over(payments: Payments) -> None:
    group, due, first = await checkout_started(payments)
    alice = due.member_id
    # past its end but within the margin (clocks): the same session, never two payable at once
    await payments.scalar(
        "UPDATE card_payments SET expires_at = now() - interval '1 minute' WHERE payment_id = :p RETURNING 1",
        p=first["payment_id"],
    )
    assert (await pay(payments, group, alice, due.order_id)).json()["payment_id"] == first["payment_id"]
    await payments.scalar(
        "UPDATE card_payments SET expires_at = now() - interval '3 minutes' WHERE payment_id = :p RETURNING 1",
        p=first["payment_id"],
    )
    second = await pay(payments, group, alice, due.order_id)
    assert second.status_code == 201 and second.json()["attempt"] == 2
