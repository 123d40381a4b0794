"""The card provider's webhook (B6): the signature is checked on the raw body with the library's
verifier; each event is stored once by its id; its effect (state change + events in the outbox)
is applied in the same database transaction. Nothing here calls the provider, so the answer is
fast; the fee is fetched later by a background job.

Answers: 400 for a missing, forged or stale signature (nothing recorded); 200 otherwise, also
for a replay (no second effect), an event type we do not handle (ignored) and an event we
cannot apply (parked in `provider_events` for an operator, logged)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any
from uuid import UUID

import stripe
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.errors import Conflict, NotFound
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page

from . import card_store, card_usecases
from .card_effects import Park, apply_notice
from .domain import notices
from .domain.card import Outcome
from .provider import status_of_account
from .settings import PaymentsSettings

log = logging.getLogger(__name__)

router = APIRouter()

# Event types and what they say. Everything else is acknowledged and ignored.
OUTCOMES = {
    "payment_intent.succeeded": Outcome.SUCCEEDED,
    "payment_intent.payment_failed": Outcome.FAILED,
    "payment_intent.canceled": Outcome.EXPIRED,
    "checkout.session.completed": Outcome.SUCCEEDED,  # only when payment_status is paid
    "checkout.session.async_payment_succeeded": Outcome.SUCCEEDED,
    "checkout.session.async_payment_failed": Outcome.FAILED,
    "checkout.session.expired": Outcome.EXPIRED,
}
REFUND_FAILURES = ("refund.failed", "charge.refund.updated")  # the latter only when failed / canceled
DISPUTES = {f"charge.dispute.{step.value}": step for step in notices.DisputeStep}
# The one list of the event types the endpoint acts on: the README's `stripe listen --events`
# line is tested against it.
# Connected accounts (Connect webhooks): whether a group's own Stripe account may take payments.
ACCOUNT_EVENTS = ("account.updated", "account.application.deauthorized")
HANDLED_EVENTS: tuple[str, ...] = (*OUTCOMES, "charge.refunded", *REFUND_FAILURES, *DISPUTES, *ACCOUNT_EVENTS)
HANDLED = frozenset(HANDLED_EVENTS)


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def notice_of(event: dict[str, Any]) -> notices.CardNotice | None:
    """What a provider event says, or None when it says nothing to us."""
    kind = event.get("type")
    obj = (event.get("data") or {}).get("object") or {}
    if kind not in HANDLED or not isinstance(obj, dict):
        return None
    found = obj.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    account = event.get("account")
    base = notices.Source(
        event_id=str(event["id"]),
        account=account if isinstance(account, str) and account else None,
        created=_int(event.get("created")),
        payment_id=_uuid(metadata.get("cagette_payment_id")),
    )
    if kind.startswith("checkout.session."):
        if kind == "checkout.session.completed" and obj.get("payment_status") != "paid":
            return None  # an asynchronous method still to settle: its own event follows
        expired = kind == "checkout.session.expired"
        return notices.PaymentOutcome(
            source=replace(
                base,
                payment_id=base.payment_id or _uuid(obj.get("client_reference_id")),
                session_id=_id(obj),
                payment_intent=_id(obj.get("payment_intent")),
            ),
            outcome=OUTCOMES[kind],
            amount=None if expired else _int(obj.get("amount_total")),
            currency=None if expired else _str(obj.get("currency")) or None,
            reason="checkout session expired" if expired else "",
        )
    if kind.startswith("payment_intent."):
        error = obj.get("last_payment_error") or {}
        reason = _str(error.get("message") or error.get("code")) if isinstance(error, dict) else ""
        if kind == "payment_intent.canceled":
            reason = f"payment canceled: {_str(obj.get('cancellation_reason'))}".strip()
        succeeded = kind == "payment_intent.succeeded"
        return notices.PaymentOutcome(
            source=replace(base, payment_intent=_id(obj), charge_id=_id(obj.get("latest_charge"))),
            outcome=OUTCOMES[kind],
            amount=_int(obj.get("amount_received")) if succeeded else None,
            currency=(_str(obj.get("currency")) or None) if succeeded else None,
            reason=reason or ("card declined" if not succeeded else ""),
        )
    if kind == "charge.refunded":
        return notices.ChargeRefunded(
            source=replace(base, charge_id=_id(obj), payment_intent=_id(obj.get("payment_intent"))),
            amount_refunded=_int(obj.get("amount_refunded")),
            currency=_str(obj.get("currency")) or None,
        )
    if kind in REFUND_FAILURES:
        status = _str(obj.get("status"))
        if status not in ("failed", "canceled") or _id(obj) is None:
            return None  # a refund that is still on its way, or went through
        return notices.RefundFailed(
            source=replace(base, charge_id=_id(obj.get("charge")), payment_intent=_id(obj.get("payment_intent"))),
            refund_id=str(_id(obj)),
            amount=_int(obj.get("amount")) or 0,
            currency=_str(obj.get("currency")),
            status=status,
            reason=_str(obj.get("failure_reason")),
        )
    dispute_id = _id(obj)
    if dispute_id is None:
        return None
    transactions = obj.get("balance_transactions")
    funds = tuple(
        notices.DisputeFunds(
            transaction_id=str(_id(t)),
            amount=_int(t.get("amount")) or 0,
            fee=_int(t.get("fee")) or 0,
            currency=_str(t.get("currency")),
        )
        for t in (transactions if isinstance(transactions, list) else [])
        if isinstance(t, dict) and _id(t)
    )
    return notices.DisputeChanged(
        source=replace(base, charge_id=_id(obj.get("charge")), payment_intent=_id(obj.get("payment_intent"))),
        step=DISPUTES[kind],
        dispute_id=dispute_id,
        status=_str(obj.get("status")),
        reason=_str(obj.get("reason")),
        amount=_int(obj.get("amount")),
        currency=_str(obj.get("currency")) or None,
        funds=funds,
    )


def verify(request: Request, raw: bytes) -> dict[str, Any]:
    """The event, once its signature (any of the configured endpoint secrets) checks out and its
    timestamp is within the tolerance either way (stale or in the future)."""
    settings = request.app.state.settings
    header = request.headers.get("stripe-signature")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSignature("the body is not UTF-8") from None
    secrets = settings.webhook_secrets()
    if not secrets:
        log.error("stripe webhook received but CAGETTE_STRIPE_WEBHOOK_SECRET is not set: refused")
    failure = "no webhook secret configured"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, settings.stripe_webhook_tolerance)
            break
        except stripe.SignatureVerificationError as exc:
            failure = str(exc).split(".")[0]
    else:
        raise BadSignature(failure)
    # The library refuses only stale timestamps; one too far ahead is as suspect (a signature
    # made to be replayed later).
    if signed_at(header) > time.time() + settings.stripe_webhook_tolerance:
        raise BadSignature("Timestamp in the future, outside the tolerance zone")
    try:
        event = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadSignature("the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        raise BadSignature("not a provider event")
    return without_nul(event)


def signed_at(header: str | None) -> int:
    """The `t=` timestamp of a Stripe-Signature header (already verified: well formed)."""
    for item in (header or "").split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            return int(value)
    return 0


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def without_nul(value: Any) -> Any:
    """The event without U+0000, which PostgreSQL cannot keep in jsonb (it would make the endpoint
    fail, and Stripe retry for days); no field we read can hold one."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


class BadSignature(Exception):
    pass


class TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass `limit` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body ({declared} bytes) is over {limit} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise TooLarge(f"the body is over {limit} bytes")
    return bytes(received)


async def follow_account_event(
    session: AsyncSession, event: dict[str, Any], provider_ready: bool, settings_url: str | None = None
) -> tuple[str, str]:
    """account.updated / account.application.deauthorized: the group using that account follows
    (`settings_url`: web's card settings page, for the coordinators told about the account)."""
    obj = (event.get("data") or {}).get("object") or {}
    deauthorized = event.get("type") == "account.application.deauthorized"
    account = event.get("account") or (obj.get("id") if not deauthorized and isinstance(obj, dict) else None)
    if not isinstance(account, str) or not account.startswith("acct_"):
        note = f"{event.get('type')} names no connected account"
        await card_store.set_event_outcome(session, event["id"], "parked", note, None)
        return "parked", note
    status = None if deauthorized or not isinstance(obj, dict) else status_of_account(obj)
    note = await card_usecases.follow_account(
        session, account, status, provider_ready, deauthorized=deauthorized, settings_url=settings_url
    )
    outcome = "ignored" if note.startswith("no group") else "applied"
    await card_store.set_event_outcome(session, event["id"], outcome, note, None)
    return outcome, note


async def process(
    session: AsyncSession, event: dict[str, Any], provider_ready: bool = True, settings_url: str | None = None
) -> tuple[str, str]:
    """Apply a stored event (in the caller's transaction). Returns (outcome, note)."""
    if event.get("type") in ACCOUNT_EVENTS:
        return await follow_account_event(session, event, provider_ready, settings_url)
    notice = notice_of(event)
    if notice is None:
        await card_store.set_event_outcome(session, event["id"], "ignored", f"{event.get('type')} not handled", None)
        return "ignored", f"{event.get('type')} not handled"
    try:
        async with session.begin_nested():  # a parked event leaves no partial effect behind
            payment_id, note = await apply_notice(session, notice)
    except Park as parked:
        log.warning("stripe event %s (%s) parked: %s", event["id"], event.get("type"), parked.reason)
        await card_store.set_event_outcome(session, event["id"], "parked", parked.reason, parked.payment_id)
        return "parked", parked.reason
    await card_store.set_event_outcome(session, event["id"], "applied", note, payment_id)
    await retry_parked_for(session, payment_id)
    return "applied", note


async def retry_parked_for(session: AsyncSession, payment_id: UUID) -> None:
    """Events parked because the payment's provider ids were not known yet (a dispute before the
    success) are applied once they are."""
    payment = await card_store.card_payment_by_id(session, payment_id)
    if payment is None:
        return
    for row in await card_store.parked_events(session, payment=payment, lock=True):
        notice = notice_of(row.payload)
        if notice is None:
            continue
        try:
            async with session.begin_nested():
                applied_to, note = await apply_notice(session, notice)
        except Park as parked:
            await card_store.set_event_outcome(session, row.event_id, "parked", parked.reason, parked.payment_id)
            continue
        await card_store.set_event_outcome(session, row.event_id, "applied", f"{note} (after being parked)", applied_to)


def platform(request: Request) -> tuple[bool, str]:
    """Whether the platform's card keys are configured, and web's card settings page."""
    settings: PaymentsSettings = request.app.state.settings
    return request.app.state.card_provider.ready, settings.card_settings_url


@router.post(
    "/webhooks/stripe",
    tags=["card payments"],
    summary="Stripe webhook endpoint (authenticated by its signature)",
    responses={
        400: {"description": "missing, forged, stale or future signature, or a body not UTF-8 JSON: nothing recorded"},
        413: {"description": "a body over the size limit, not read further: nothing recorded"},
    },
)
async def stripe_webhook(request: Request, database: DatabaseDep) -> JSONResponse:
    try:
        raw = await read_body(request, request.app.state.settings.stripe_webhook_max_bytes)
    except TooLarge as exc:
        log.warning("stripe webhook refused: %s", exc)
        return JSONResponse(status_code=413, content={"error": "too_large", "detail": str(exc)})
    try:
        event = verify(request, raw)
    except BadSignature as exc:
        log.warning("stripe webhook refused: %s", exc)
        return JSONResponse(status_code=400, content={"error": "bad_signature", "detail": str(exc)})
    async with database.transaction() as session:
        if not await card_store.store_event(session, event):
            return JSONResponse(status_code=200, content={"received": True, "duplicate": True})
        outcome, _ = await process(session, event, *platform(request))
    if outcome == "applied":
        request.app.state.service.fee_jobs.wake()  # a success may have queued its fee lookup
    return JSONResponse(status_code=200, content={"received": True, "outcome": outcome})


# -- operators: parked events -----------------------------------------------------------------


def _event_json(row: Any) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "type": row.type,
        "account": row.account,
        "outcome": row.outcome,
        "note": row.note,
        "payment_id": row.payment_id,
        "received_at": row.received_at,
        "resolved_at": row.resolved_at,
    }


@router.get(
    "/card/provider-events/parked",
    tags=["card payments"],
    summary="Provider events kept for inspection, oldest first: no matching payment, or a mismatch (platform admin)",
    responses=PAGINATED,
)
async def list_parked(
    principal: CurrentPrincipal, database: DatabaseDep, page: Page, response: Response
) -> list[dict[str, Any]]:
    principal.require_platform_admin()
    async with database.transaction() as session:
        rows = await card_store.parked_page(session, page)
    return [_event_json(r) for r in page.finish(rows, lambda row: (row.received_at, row.event_id), response)]


@router.post(
    "/card/provider-events/{event_id}/retry",
    tags=["card payments"],
    summary="Apply a parked provider event again, e.g. once its payment is known (platform admin)",
)
async def retry_parked(
    event_id: str, principal: CurrentPrincipal, request: Request, database: DatabaseDep
) -> dict[str, Any]:
    principal.require_platform_admin()
    async with database.transaction() as session:
        row = await card_store.get_event(session, event_id, lock=True)
        if row is None:
            raise NotFound(f"no provider event {event_id}")
        if row.outcome != "parked":
            raise Conflict(f"provider event {event_id} is {row.outcome}, not parked")
        await process(session, row.payload, *platform(request))
        return _event_json(await card_store.get_event(session, event_id))
