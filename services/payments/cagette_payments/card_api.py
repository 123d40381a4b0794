"""Card payments over HTTP: a group's card set-up (coordinator), paying an order by card (the
member who placed it), reading card payments, refunds through the provider (coordinator)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Row

from cagette_contracts import Money
from cagette_contracts.inputs import Flag, Reason, RequestBody
from cagette_runtime import idempotency
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.errors import NotFound
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page

from . import card_store, card_usecases, store, usecases
from .provider import CardNotConfigured, CardProvider
from .settings import PaymentsSettings

router = APIRouter(route_class=idempotency.IdempotentRoute, tags=["card payments"])

AccountId = Annotated[str, Field(pattern=r"^acct_[A-Za-z0-9]{1,64}$", description="Stripe connected account id")]


class CardSettingsIn(RequestBody):
    enabled: Flag = True
    stripe_account: AccountId | None = Field(
        default=None, description="null: payments go to the platform's own account"
    )


class CardSettingsOut(BaseModel):
    group_id: UUID
    enabled: bool
    stripe_account: str | None
    provider_configured: bool = Field(
        description="the platform's provider keys (API key and webhook secret) are set (never shown)"
    )
    card_payments_ready: bool = Field(
        description="card payments can work for the group: provider_configured and enabled "
        "(announced to the orders service as payments.card_settings.changed)"
    )
    account_problem: str | None = Field(
        description="why the group's connected account cannot take card payments now (null: it can, or none is used)"
    )
    account_checked_at: datetime | None = Field(description="when the provider last described the connected account")
    updated_by: UUID | None
    updated_at: datetime | None


class OnboardingOut(BaseModel):
    group_id: UUID
    stripe_account: str = Field(description="the group's connected account (created on the first call)")
    url: str = Field(description="Stripe's hosted onboarding page: send the coordinator there")
    expires_at: datetime = Field(description="the link works once and only until then: ask for another one")


class PayIn(RequestBody):
    amendment_id: UUID | None = Field(default=None, description="pay the complementary payment of this amendment")


class CardPaymentOut(BaseModel):
    payment_id: UUID
    order_id: UUID
    amendment_id: UUID | None
    member_id: UUID
    member_name: str = Field(description="who paid, as the group knows them now (empty if payments never heard)")
    attempt: int
    state: str = Field(
        description="initiated, failed, expired; once paid: succeeded, partially_refunded, refunded or disputed"
    )
    amount: Money
    amount_refunded: Money
    checkout_url: str | None = Field(description="send the member here (Stripe's hosted payment page)")
    checkout_session_id: str | None
    expires_at: datetime
    failure_reason: str | None
    fee: Money | None
    disputed: bool
    dispute_reason: str | None
    dispute_status: str | None = Field(
        default=None, description="the provider's dispute status: needs_response, under_review, won, lost, ..."
    )
    dispute_funds: list[dict[str, Any]] | None = Field(
        default=None, description="money the dispute moved: withdrawn (amount < 0, with its fee) or reinstated"
    )
    created_at: datetime
    history: list[dict[str, Any]] | None = None
    refund_requests: list[dict[str, Any]] | None = None


class RefundIn(RequestBody):
    amount: Money
    reason: Reason
    client_key: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")] = Field(
        description="the same key again is the same refund (never a second one)"
    )


class RefundOut(BaseModel):
    request_id: UUID
    payment_id: UUID
    amount: Money
    reason: str
    provider_refund_id: str | None
    provider_status: str | None
    requested_at: datetime
    note: str = "the member is debited back when the provider confirms the refund (webhook)"


def provider(request: Request) -> CardProvider:
    return request.app.state.card_provider


def settings(request: Request) -> PaymentsSettings:
    return request.app.state.settings


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def payment_json(
    row: Row,
    names: dict[UUID, str],
    history: list[Row] | None = None,
    refunds: list[Row] | None = None,
    funds: list[Row] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "payment_id": row.payment_id,
        "order_id": row.order_id,
        "amendment_id": row.amendment_id,
        "member_id": row.member_id,
        "member_name": names.get(row.member_id, ""),
        "attempt": row.attempt,
        "state": row.state,
        "amount": _money(row.amount, row.currency),
        "amount_refunded": _money(row.amount_refunded, row.currency),
        "checkout_url": row.checkout_url,
        "checkout_session_id": row.checkout_session_id,
        "expires_at": row.expires_at,
        "failure_reason": row.failure_reason,
        "fee": _money(row.fee_amount, row.fee_currency) if row.fee_amount is not None and row.fee_currency else None,
        "disputed": row.dispute_id is not None,
        "dispute_reason": row.dispute_reason,
        "dispute_status": row.dispute_status,
        "created_at": row.created_at,
    }
    if funds is not None:
        body["dispute_funds"] = [
            {
                "transaction_id": f.transaction_id,
                "amount": _money(f.amount, f.currency),
                "fee": _money(f.fee, f.currency),
                "recorded_at": f.recorded_at,
            }
            for f in funds
        ]
    if history is not None:
        body["history"] = [
            {
                "from": h.from_state,
                "to": h.to_state,
                "provider_event_id": h.provider_event_id,
                "note": h.note,
                "at": h.at,
            }
            for h in history
        ]
    if refunds is not None:
        body["refund_requests"] = [refund_json(r) for r in refunds]
    return body


def refund_json(row: Row) -> dict[str, Any]:
    return {
        "request_id": row.request_id,
        "payment_id": row.payment_id,
        "amount": _money(row.amount, row.currency),
        "reason": row.reason,
        "provider_refund_id": row.provider_refund_id,
        "provider_status": row.provider_status,
        "requested_at": row.requested_at,
    }


def settings_json(group_id: UUID, row: Row | None, configured: bool) -> dict[str, Any]:
    return {
        "group_id": group_id,
        "enabled": bool(row and row.enabled),
        "stripe_account": row.stripe_account if row else None,
        "provider_configured": configured,
        "card_payments_ready": card_usecases.readiness(row, configured)[0],
        "account_problem": card_usecases.account_problem(row),
        "account_checked_at": row.account_checked_at if row else None,
        "updated_by": row.updated_by if row else None,
        "updated_at": row.updated_at if row else None,
    }


@router.get(
    "/groups/{group_id}/card-settings", response_model=CardSettingsOut, summary="The group's card set-up (coordinator)"
)
async def get_card_settings(
    group_id: UUID, principal: CurrentPrincipal, request: Request, database: DatabaseDep
) -> dict[str, Any]:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        return settings_json(group_id, await card_store.group_card_settings(session, group_id), provider(request).ready)


@router.put(
    "/groups/{group_id}/card-settings",
    response_model=CardSettingsOut,
    summary="Set up the group's card payments: on/off and its Stripe connected account (coordinator)",
)
async def put_card_settings(
    group_id: UUID,
    body: CardSettingsIn,
    principal: CurrentPrincipal,
    request: Request,
    database: DatabaseDep,
) -> dict[str, Any]:
    """Enabling needs the platform's provider keys (API key and webhook secret): without them 409,
    nothing stored. A connected account is checked with the provider first (unknown: 502, nothing
    stored). When the group's card readiness is set for the first time or changes,
    `payments.card_settings.changed` is published (outbox, same transaction); orders follows it."""
    principal.require_coordinator(group_id)
    ready = provider(request).ready
    if body.enabled and not ready:
        raise CardNotConfigured(
            "card payments cannot be enabled: the platform's card provider keys (CAGETTE_STRIPE_API_KEY "
            "and CAGETTE_STRIPE_WEBHOOK_SECRET) are not configured"
        )
    status = None
    if body.stripe_account and provider(request).configured:
        status = await provider(request).account_status(body.stripe_account)  # 502 unknown account
    async with database.transaction() as session:
        row = await card_usecases.set_group_card_settings(
            session,
            principal,
            group_id,
            enabled=body.enabled,
            stripe_account=body.stripe_account,
            provider_ready=ready,
            account_status=status,
            settings_url=request.app.state.settings.card_settings_url,
        )
        return settings_json(group_id, row, ready)


@router.post(
    "/groups/{group_id}/card-settings/onboarding",
    response_model=OnboardingOut,
    summary="Take card payments on the group's own Stripe account: its onboarding link (coordinator)",
)
async def card_onboarding(
    group_id: UUID, principal: CurrentPrincipal, request: Request, database: DatabaseDep
) -> dict[str, Any]:
    """Stripe Connect: the first call creates the group's connected account (enabled, but not
    ready until Stripe says the account may take charges: `account.updated` is followed) and
    every call answers a fresh single-use onboarding link (Account Links) for it. Needs the
    platform's provider keys (409 without them); nothing is stored when the provider refuses."""
    principal.require_coordinator(group_id)
    card = provider(request)
    settings: PaymentsSettings = request.app.state.settings
    if not card.ready:
        raise CardNotConfigured("card payments are not set up on this platform: no onboarding is possible")
    async with database.transaction() as session:
        group = await store.get_group(session, group_id)
        if group is None:
            raise NotFound(f"the payments service knows no group {group_id}")
        row = await card_store.group_card_settings(session, group_id)
    account = row.stripe_account if row is not None else None
    if account is None:
        # The provider's idempotency key is the group's: a retried first call gets the same account.
        account = await card.create_account(
            group_id=group_id, country=settings.card_account_country, currency=group.currency, name=group.name
        )
        status = await card.account_status(account)
        async with database.transaction() as session:
            await card_usecases.set_group_card_settings(
                session,
                principal,
                group_id,
                enabled=True,
                stripe_account=account,
                provider_ready=card.ready,
                account_status=status,
                settings_url=settings.card_settings_url,
            )
    link = await card.onboarding_link(
        account=account,
        refresh_url=settings.card_onboarding_refresh_url.format(group_id=group_id),
        return_url=settings.card_onboarding_return_url.format(group_id=group_id),
    )
    return {
        "group_id": group_id,
        "stripe_account": account,
        "url": link.url,
        "expires_at": datetime.fromtimestamp(link.expires_at, UTC),
    }


@router.post(
    "/groups/{group_id}/orders/{order_id}/card-payment",
    dependencies=[idempotency.REQUIRED],
    status_code=201,
    response_model=CardPaymentOut,
    summary="Pay your order (or an addition to it) by card: the checkout page to send the member to",
)
async def pay_by_card(
    group_id: UUID,
    order_id: UUID,
    principal: CurrentPrincipal,
    request: Request,
    database: DatabaseDep,
    body: PayIn | None = None,
) -> JSONResponse:
    """201 with a new attempt, 200 with the attempt still open (the same checkout page: a retried
    request never creates a second charge). Only the provider's webhook confirms the payment."""
    amendment_id = body.amendment_id if body else None
    if not provider(request).configured:
        raise CardNotConfigured("card payments are not set up on this platform")
    async with database.transaction() as session:
        started = await card_usecases.start_payment(
            session, principal, settings(request), group_id, order_id, amendment_id
        )
        names = await store.member_names(session, group_id, [started.payment.member_id])
    payment = started.payment
    if started.needs_session:
        ask = card_usecases.session_request(payment, settings(request))
        created = await provider(request).create_checkout_session(**ask)
        async with database.transaction() as session:
            await card_usecases.finish_start(session, payment.payment_id, created.session_id, created.url)
            finished = await card_store.get_card_payment(session, group_id, payment.payment_id)
        if finished is not None:
            payment = finished
    body = jsonable_encoder(payment_json(payment, names))
    return JSONResponse(status_code=201 if started.created else 200, content=body)


@router.get(
    "/groups/{group_id}/card-payments",
    response_model=list[CardPaymentOut],
    summary="The group's card payments, newest first, e.g. the disputed ones to look at (coordinator)",
    responses=PAGINATED,
)
async def group_card_payments(
    group_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    page: Page,
    response: Response,
    state: Annotated[str | None, Query(pattern="^(initiated|failed|expired|succeeded)$")] = None,
    disputed: bool | None = None,
) -> list[dict[str, Any]]:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        rows = await card_store.group_card_payments(session, group_id, page, state=state, disputed=disputed)
        names = await store.member_names(session, group_id, list({row.member_id for row in rows}))
    return [payment_json(r, names) for r in page.finish(rows, lambda row: (row.created_at, row.payment_id), response)]


@router.get(
    "/groups/{group_id}/orders/{order_id}/card-payments",
    response_model=list[CardPaymentOut],
    summary="The card payment attempts of an order (its member or a coordinator)",
)
async def order_card_payments(
    group_id: UUID, order_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> list[dict[str, Any]]:
    principal.require_group_member(group_id)
    async with database.transaction() as session:
        rows = await card_store.order_card_payments(session, group_id, order_id)
        for row in rows:
            principal.require_self_or_coordinator(group_id, row.member_id)
        names = await store.member_names(session, group_id, list({row.member_id for row in rows}))
        return [payment_json(r, names, await card_store.history_of(session, r.payment_id)) for r in rows]


@router.get(
    "/groups/{group_id}/card-payments/{payment_id}",
    response_model=CardPaymentOut,
    summary="One card payment with its history and refund requests (its member or a coordinator)",
)
async def get_card_payment(
    group_id: UUID, payment_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        row = await usecases.visible_payment(
            session, principal, group_id, payment_id, card_store.get_card_payment, "card payment"
        )
        return payment_json(
            row,
            await store.member_names(session, group_id, [row.member_id]),
            await card_store.history_of(session, payment_id),
            await card_store.refund_requests_of(session, payment_id),
            await card_store.dispute_funds_of(session, payment_id),
        )


@router.post(
    "/groups/{group_id}/card-payments/{payment_id}/refunds",
    dependencies=[idempotency.REQUIRED],
    status_code=202,
    response_model=RefundOut,
    summary="Refund a card payment fully or partly through the provider (coordinator)",
)
async def refund_card_payment(
    group_id: UUID,
    payment_id: UUID,
    body: RefundIn,
    principal: CurrentPrincipal,
    request: Request,
    database: DatabaseDep,
) -> JSONResponse:
    """202: asked of the provider. The member is debited back (PaymentRefunded) only when the
    provider confirms it (charge.refunded webhook). The same client_key again returns the same
    request and never refunds twice."""
    async with database.transaction() as session:
        started = await card_usecases.start_refund(
            session, principal, group_id, payment_id, amount=body.amount, reason=body.reason, client_key=body.client_key
        )
    row = started.request
    if row.provider_refund_id is None:
        payment = started.payment
        refund = await provider(request).refund(
            request_id=row.request_id,
            payment_intent=payment.payment_intent_id,
            amount=row.amount,
            account=payment.stripe_account,
            metadata={
                "cagette_group_id": str(group_id),
                "cagette_payment_id": str(payment_id),
                "cagette_refund_request_id": str(row.request_id),
            },
        )
        async with database.transaction() as session:
            row = await card_usecases.finish_refund(session, row.request_id, refund.refund_id, refund.status)
    return JSONResponse(status_code=202 if started.created else 200, content=jsonable_encoder(refund_json(row)))
