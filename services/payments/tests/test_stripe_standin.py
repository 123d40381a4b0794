"""The stand-in itself, through the real StripeClient: what the card tests rely on."""

from __future__ import annotations

import pytest
import stripe

from .conftest import STRIPE_KEY
from .stripe_standin import Served, StripeStandIn, parse_form


def test_form_encoding_is_read_back_into_nested_values() -> None:
    body = (
        b"mode=payment&line_items[0][quantity]=1&line_items[0][price_data][currency]=eur"
        b"&line_items[0][price_data][unit_amount]=1407&metadata[a]=1&payment_method_types[0]=card&expand[0]=x"
    )
    assert parse_form(body) == {
        "mode": "payment",
        "line_items": [{"quantity": "1", "price_data": {"currency": "eur", "unit_amount": "1407"}}],
        "metadata": {"a": "1"},
        "payment_method_types": ["card"],
        "expand": ["x"],
    }


def _params(amount: int) -> dict:
    return {
        "mode": "payment",
        "line_items": [
            {"quantity": 1, "price_data": {"currency": "eur", "unit_amount": amount, "product_data": {"name": "x"}}}
        ],
        "success_url": "http://front/ok",
        "cancel_url": "http://front/ko",
        "metadata": {"k": "v"},
    }


async def test_keys_accounts_and_idempotency_as_stripe_does(stripe_standin: tuple[StripeStandIn, Served]) -> None:
    standin, served = stripe_standin
    standin.accounts.add("acct_1Selftest")
    client = stripe.StripeClient(
        STRIPE_KEY, base_addresses={"api": served.url}, max_network_retries=0, http_client=stripe.HTTPXClient()
    )
    options = {"idempotency_key": "self-test-1", "stripe_account": "acct_1Selftest"}
    first = await client.v1.checkout.sessions.create_async(params=_params(1407), options=options)  # type: ignore[arg-type]
    again = await client.v1.checkout.sessions.create_async(params=_params(1407), options=options)  # type: ignore[arg-type]
    assert first.id == again.id and first.amount_total == 1407 and first.metadata["k"] == "v"
    assert standin.seen("/v1/checkout/sessions")[-1].account == "acct_1Selftest"
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.checkout.sessions.create_async(params=_params(1408), options=options)  # type: ignore[arg-type]
    fetched = await client.v1.checkout.sessions.retrieve_async(first.id, options={"stripe_account": "acct_1Selftest"})
    assert fetched.id == first.id
    with pytest.raises(stripe.InvalidRequestError):  # kept per account
        await client.v1.checkout.sessions.retrieve_async(first.id)
    with pytest.raises(stripe.AuthenticationError):
        wrong = stripe.StripeClient(
            "sk_test_wrong", base_addresses={"api": served.url}, max_network_retries=0, http_client=stripe.HTTPXClient()
        )
        await wrong.v1.checkout.sessions.create_async(params=_params(1407))  # type: ignore[arg-type]
