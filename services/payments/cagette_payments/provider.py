"""The card provider adapter: Stripe through the official library's `StripeClient` (async calls).

Only what the service needs: create a Checkout Session, refund, read a payment's fee, check a
connected account. Every creating call carries an idempotency key derived from our own ids, so
a retried request never creates a second object. Keys are never logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe
from stripe import RequestOptions
from stripe.params import AccountCreateParams, AccountLinkCreateParams, RefundCreateParams
from stripe.params.checkout import SessionCreateParams

from cagette_runtime.errors import Conflict, Refused, RetryLater

from .domain.card import AccountStatus, idempotency_key
from .settings import PaymentsSettings

log = logging.getLogger(__name__)


class ProviderUnavailable(RetryLater):
    """The provider could not be reached or failed: nothing was recorded as paid; retry."""

    code = "provider_unavailable"


class ProviderRefused(Refused):
    """The provider refused the request (e.g. an unknown connected account)."""

    status_code = 502
    code = "provider_refused"


class CardNotConfigured(Conflict):
    """Card payments asked for where the platform's provider keys (or the group's set-up) are missing."""


@dataclass(frozen=True)
class CheckoutSession:
    session_id: str
    url: str | None


@dataclass(frozen=True)
class ProviderRefund:
    refund_id: str
    status: str


@dataclass(frozen=True)
class OnboardingLink:
    url: str
    expires_at: int  # Unix time: a link is short-lived and single use (ask for another one)


@dataclass(frozen=True)
class Fee:
    charge_id: str
    amount: int
    currency: str


def _get(obj: Any, key: str) -> Any:
    """A field of a StripeObject (not a dict), or None."""
    if obj is None:
        return None
    try:
        return obj[key]
    except (KeyError, TypeError):
        return getattr(obj, key, None)


def _id(value: Any) -> str | None:
    """An id field that may be expanded into an object."""
    if value is None or isinstance(value, str):
        return value
    return _get(value, "id")


class CardProvider:
    def __init__(self, settings: PaymentsSettings) -> None:
        self.settings = settings
        self._client: stripe.StripeClient | None = None

    @property
    def configured(self) -> bool:
        return self.settings.card_enabled

    @property
    def ready(self) -> bool:
        """Card payments can work on this platform: the API key to create payments and a webhook
        secret to learn their outcome (without it no payment could ever be confirmed)."""
        return self.configured and bool(self.settings.webhook_secrets())

    @property
    def client(self) -> stripe.StripeClient:
        if not self.configured:
            raise CardNotConfigured("card payments are not set up on this platform (CAGETTE_STRIPE_API_KEY is not set)")
        if self._client is None:
            assert self.settings.stripe_api_key is not None
            kwargs: dict[str, Any] = {
                "max_network_retries": self.settings.stripe_max_network_retries,
                "http_client": stripe.HTTPXClient(timeout=self.settings.stripe_timeout),
            }
            if self.settings.stripe_api_base:
                kwargs["base_addresses"] = {"api": self.settings.stripe_api_base}
            self._client = stripe.StripeClient(self.settings.stripe_api_key.get_secret_value(), **kwargs)
        return self._client

    @staticmethod
    def _options(key: str | None, account: str | None) -> RequestOptions:
        options: RequestOptions = {}
        if key:
            options["idempotency_key"] = key
        if account:
            options["stripe_account"] = account
        return options

    @staticmethod
    def _failed(what: str, exc: stripe.StripeError) -> ProviderUnavailable | ProviderRefused:
        # The message and code only: never the request (it may carry keys or personal data).
        detail = f"{type(exc).__name__}: {exc.user_message or getattr(exc, 'code', None) or 'error'}"
        log.warning("card provider: %s failed: %s (request id %s)", what, detail, exc.request_id)
        in_flight = isinstance(exc, stripe.IdempotencyError) and exc.http_status == 409  # the same key, still in flight
        if in_flight or isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)):
            return ProviderUnavailable(f"the card provider could not {what}; try again", provider_error=detail)
        return ProviderRefused(f"the card provider refused to {what}", provider_error=detail)

    async def create_checkout_session(
        self,
        *,
        payment_id: object,
        account: str | None,
        amount: int,
        currency: str,
        description: str,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
        expires_at: datetime,
    ) -> CheckoutSession:
        """A hosted Checkout Session for exactly `amount` (one line: the order's total, already
        rounded once by the shared rule, so the provider charges exactly what is owed)."""
        params: SessionCreateParams = {
            "mode": "payment",
            # API 2026-09-30 removed payment_method_types; this is its replacement.
            "allowed_payment_method_types": ["card"],
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount,
                        "product_data": {"name": description},
                    },
                }
            ],
            "client_reference_id": str(payment_id),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata, "description": description},
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(expires_at.timestamp()),
        }
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                params=params,
                options=self._options(idempotency_key("checkout", payment_id), account),
            )
        except stripe.StripeError as exc:
            raise self._failed("create the checkout session", exc) from None
        return CheckoutSession(session_id=session.id, url=_get(session, "url"))

    async def refund(
        self, *, request_id: object, payment_intent: str, amount: int, account: str | None, metadata: dict[str, str]
    ) -> ProviderRefund:
        params: RefundCreateParams = {
            "payment_intent": payment_intent,
            "amount": amount,
            "reason": "requested_by_customer",
            "metadata": metadata,
        }
        try:
            refund = await self.client.v1.refunds.create_async(
                params=params,
                options=self._options(idempotency_key("refund", request_id), account),
            )
        except stripe.StripeError as exc:
            raise self._failed("refund the payment", exc) from None
        return ProviderRefund(refund_id=refund.id, status=str(_get(refund, "status") or "pending"))

    async def fee(self, *, payment_intent: str | None, charge_id: str | None, account: str | None) -> Fee | None:
        """The provider's fee on the payment's charge (from its balance transaction), or None
        while the provider does not know it yet."""
        options = self._options(None, account)
        try:
            if charge_id is None:
                if payment_intent is None:
                    return None
                intent = await self.client.v1.payment_intents.retrieve_async(payment_intent, options=options)
                charge_id = _id(_get(intent, "latest_charge"))
                if charge_id is None:
                    return None
            charge = await self.client.v1.charges.retrieve_async(charge_id, options=options)
            transaction_id = _id(_get(charge, "balance_transaction"))
            if transaction_id is None:
                return None
            transaction = await self.client.v1.balance_transactions.retrieve_async(transaction_id, options=options)
        except stripe.StripeError as exc:
            raise self._failed("read the payment's fee", exc) from None
        return Fee(
            charge_id=charge_id,
            amount=int(_get(transaction, "fee") or 0),
            currency=str(_get(transaction, "currency") or "").upper(),
        )

    async def account_status(self, account: str) -> AccountStatus:
        """The connected account as the provider describes it now (unknown account: refused)."""
        try:
            found = await self.client.v1.accounts.retrieve_async(account)
        except stripe.StripeError as exc:
            raise self._failed(f"find the connected account {account}", exc) from None
        return status_of_account(found)

    async def create_account(self, *, group_id: object, country: str, currency: str, name: str) -> str:
        """A connected account for the group, onboarded by Stripe's hosted pages: the group pays
        Stripe's fees and Stripe handles losses and the dashboard (direct charges on its account)."""
        params: AccountCreateParams = {
            "controller": {
                "fees": {"payer": "account"},
                "losses": {"payments": "stripe"},
                "requirement_collection": "stripe",
                "stripe_dashboard": {"type": "full"},
            },
            "country": country,
            "default_currency": currency.lower(),
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
            "business_profile": {"name": name[:100]},
            "metadata": {"cagette_group_id": str(group_id)},
        }
        try:
            created = await self.client.v1.accounts.create_async(
                params=params, options=self._options(idempotency_key("account", group_id), None)
            )
        except stripe.StripeError as exc:
            raise self._failed("create the group's connected account", exc) from None
        return str(created.id)

    async def onboarding_link(self, *, account: str, refresh_url: str, return_url: str) -> OnboardingLink:
        """Stripe's hosted onboarding for the account (Account Links): where the coordinator
        gives Stripe what it needs; `refresh_url` asks for a new link when this one expired."""
        params: AccountLinkCreateParams = {
            "account": account,
            "type": "account_onboarding",
            "refresh_url": refresh_url,
            "return_url": return_url,
        }
        try:
            link = await self.client.v1.account_links.create_async(params=params)
        except stripe.StripeError as exc:
            raise self._failed("create the onboarding link", exc) from None
        return OnboardingLink(url=str(link.url), expires_at=int(link.expires_at))


def status_of_account(account: Any) -> AccountStatus:
    """An account object (the library's, or an event's `data.object` dict) as payments needs it."""
    capabilities = _get(account, "capabilities") or {}
    return AccountStatus(
        charges_enabled=bool(_get(account, "charges_enabled")),
        card_payments=str(_get(capabilities, "card_payments") or "unrequested"),
    )
