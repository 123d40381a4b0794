"""The stand-in itself, through the real StripeClient: what the card tests rely on. It refuses
what the pinned API version refuses (a removed parameter, a mistyped one), and its checks follow
whatever the installed `stripe` package declares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe
import typing_extensions
from stripe._encode import _api_encode
from stripe.params.checkout import SessionCreateParams

from cagette_payments.provider import CardProvider
from cagette_payments.settings import PaymentsSettings

from .conftest import STRIPE_KEY
from .stripe_declared import ParamError, check_params, check_response, declared_params
from .stripe_standin import Served, StripeStandIn, parse_form


def wire(params: dict[str, Any]) -> bytes:
    """What the library puts on the wire for these parameters (its own encoder)."""
    return urlencode(list(_api_encode(params))).replace("%5B", "[").replace("%5D", "]").encode()


def _params(amount: int) -> SessionCreateParams:
    return {
        "mode": "payment",
        "line_items": [
            {"quantity": 1, "price_data": {"currency": "eur", "unit_amount": amount, "product_data": {"name": "x"}}}
        ],
        "success_url": "http://front/ok",
        "cancel_url": "http://front/ko",
        "metadata": {"k": "v"},
    }


def client_of(served: Served, key: str = STRIPE_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": served.url}, max_network_retries=0, http_client=stripe.HTTPXClient()
    )


def test_the_form_encoding_is_read_back_with_the_declared_types() -> None:
    body = (
        b"mode=payment&line_items[0][quantity]=2&line_items[0][price_data][currency]=eur"
        b"&line_items[0][price_data][unit_amount]=1407&line_items[0][price_data][product_data][name]=x"
        b"&metadata[0]=zero&allowed_payment_method_types[0]=card&expand[0]=payment_intent&expires_at=1796163347"
    )
    assert check_params(parse_form(body), SessionCreateParams) == {
        "mode": "payment",
        "line_items": [
            {"quantity": 2, "price_data": {"currency": "eur", "unit_amount": 1407, "product_data": {"name": "x"}}}
        ],
        "metadata": {"0": "zero"},  # a hash with a key "0", not a list: the declared type says which
        "allowed_payment_method_types": ["card"],
        "expand": ["payment_intent"],
        "expires_at": 1796163347,
    }


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (b"payment_method_types[0]=card", "payment_method_types", "Received unknown parameter"),
        (b"line_items[0][quantity]=two", "line_items[0][quantity]", "Invalid integer"),
        (b"line_items[0][price_data][unit_amount]=1&line_items[0][price_data][product_data][name]=x", "", "Missing"),
        (b"line_items[0][price_data][colour]=red&line_items[0][price_data][currency]=eur", "", "unknown"),
        (b"line_items[1][quantity]=1", "line_items", "gaps"),
        (b"line_items=x", "line_items", "array"),
        (b"mode=payments", "mode", "must be one of"),  # the API's enum, not the library's `| str`
        (b"allow_promotion_codes=yes", "allow_promotion_codes", "Invalid boolean"),
        (b"metadata=x", "metadata", "hash"),
        (b"expires_at[a]=1", "expires_at", "not a hash"),
    ],
)
def test_unknown_and_mistyped_parameters_are_named(body: bytes, param: str, message: str) -> None:
    with pytest.raises(ParamError) as refused:
        check_params(parse_form(body), SessionCreateParams)
    assert message.lower() in refused.value.message.lower()
    if param:
        assert refused.value.param == param
    else:
        assert refused.value.param.startswith("line_items[0][price_data]")


def test_the_library_s_own_options_are_no_parameters() -> None:
    fields, required = declared_params(stripe.params.AccountLinkCreateParams)
    assert "idempotency_key" not in fields and "stripe_account" not in fields
    assert required == {"account", "type"}
    with pytest.raises(ParamError, match="idempotency_key"):
        check_params({"idempotency_key": "k"}, SessionCreateParams)


async def test_the_removed_payment_method_types_is_refused_as_stripe_does(
    stripe_standin: tuple[StripeStandIn, Served],
) -> None:
    _, served = stripe_standin
    params: dict[str, Any] = dict(_params(500), payment_method_types=["card"])
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client_of(served).v1.checkout.sessions.create_async(params=params)  # type: ignore[arg-type]  # the point
    assert refused.value.http_status == 400 and refused.value.param == "payment_method_types"
    assert refused.value.code == "parameter_unknown"
    assert "Received unknown parameter: payment_method_types" in str(refused.value.user_message)
    # its replacement in the pinned version is accepted
    accepted = await client_of(served).v1.checkout.sessions.create_async(
        params=dict(_params(500), allowed_payment_method_types=["card"])  # type: ignore[arg-type]  # a deliberately invalid parameter: the refusal is the point
    )
    assert accepted.allowed_payment_method_types == ["card"]


async def test_the_check_follows_the_declared_types(stripe_standin: tuple[StripeStandIn, Served]) -> None:
    """What our provider sends, checked against a TypedDict as a future `stripe` could declare
    it: a field renamed away, a field made required. The check is derived, so it breaks."""
    standin, served = stripe_standin
    settings = PaymentsSettings(
        service_name="payments",
        stripe_api_key=STRIPE_KEY,
        stripe_api_base=served.url,
        stripe_max_network_retries=0,
    )
    await CardProvider(settings).create_checkout_session(
        payment_id="declared-types-test",
        account=None,
        amount=1407,
        currency="EUR",
        description="Order x",
        metadata={"cagette_payment_id": "declared-types-test"},
        success_url="http://front/ok",
        cancel_url="http://front/ko",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    [sent] = [
        r for r in standin.seen("/v1/checkout/sessions") if r.params.get("client_reference_id") == "declared-types-test"
    ]
    assert sent.status == 200
    body = wire(sent.params)
    fields, _ = declared_params(SessionCreateParams)
    assert check_params(parse_form(body), SessionCreateParams) == sent.params

    renamed = typing_extensions.TypedDict(  # built at run time on purpose
        "RenamedSessionCreateParams",
        {name: hint for name, hint in fields.items() if name != "allowed_payment_method_types"},
    )
    with pytest.raises(ParamError) as refused:
        check_params(parse_form(body), renamed)
    assert refused.value.param == "allowed_payment_method_types"

    stricter = typing_extensions.TypedDict(
        "StricterSessionCreateParams", {**fields, "ui_mode": typing_extensions.Required[str]}
    )
    with pytest.raises(ParamError, match="Missing required param: ui_mode"):
        check_params(parse_form(body), stricter)


def test_answers_carry_only_declared_fields() -> None:
    check_response({"object": "refund", "id": "re_1", "amount": 1, "status": "failed", "failure_reason": "x"})
    with pytest.raises(AssertionError, match="livemode"):
        check_response({"object": "refund", "id": "re_1", "livemode": False})  # Refund declares none
    with pytest.raises(AssertionError, match="total_count"):
        check_response({"object": "charge", "refunds": {"object": "list", "data": [], "total_count": 0}})
    with pytest.raises(AssertionError, match="no resource class"):
        check_response({"object": "payout"})


async def test_keys_accounts_and_idempotency_as_stripe_does(stripe_standin: tuple[StripeStandIn, Served]) -> None:
    standin, served = stripe_standin
    standin.add_account("acct_1Selftest")
    client = client_of(served)
    options: stripe.RequestOptions = {"idempotency_key": "self-test-1", "stripe_account": "acct_1Selftest"}
    first = await client.v1.checkout.sessions.create_async(params=_params(1407), options=options)
    again = await client.v1.checkout.sessions.create_async(params=_params(1407), options=options)
    assert first.id == again.id and first.amount_total == 1407 and first.metadata is not None
    assert first.metadata["k"] == "v"
    assert standin.seen("/v1/checkout/sessions")[-1].account == "acct_1Selftest"
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.checkout.sessions.create_async(params=_params(1408), options=options)
    fetched = await client.v1.checkout.sessions.retrieve_async(first.id, options={"stripe_account": "acct_1Selftest"})
    assert fetched.id == first.id
    with pytest.raises(stripe.InvalidRequestError):  # kept per account
        await client.v1.checkout.sessions.retrieve_async(first.id)
    with pytest.raises(stripe.AuthenticationError):
        await client_of(served, "sk_test_wrong").v1.checkout.sessions.create_async(params=_params(1407))


async def test_connect_onboarding_objects(stripe_standin: tuple[StripeStandIn, Served]) -> None:
    standin, served = stripe_standin
    client = client_of(served)
    account = await client.v1.accounts.create_async(
        params={"controller": {"stripe_dashboard": {"type": "express"}}, "country": "FR", "metadata": {"g": "1"}}
    )
    assert account.charges_enabled is False
    link = await client.v1.account_links.create_async(
        params={
            "account": account.id,
            "type": "account_onboarding",
            "refresh_url": "http://front/refresh",
            "return_url": "http://front/return",
        }
    )
    assert link.url.startswith("https://") and account.id in link.url
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.account_links.create_async(params={"account": account.id})  # type: ignore[typeddict-item]  # a deliberately incomplete request: the refusal is the point
    assert refused.value.param == "type"
    assert standin.set_account(account.id, charges_enabled=True)["capabilities"]["card_payments"] == "active"
