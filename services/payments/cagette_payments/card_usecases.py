"""Online card payments: one function per action (what orders awaits by card, a group's card
set-up, paying, a coordinator's refund, the fee once known). Each runs in the caller's database
transaction and writes its events to the outbox there. The provider is called by the HTTP
layer (card_api.py) or the fee job (jobs.py) between a use case and its `finish_` step; the
effects of the provider's notifications are in card_effects.py."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    CardAccountProblem,
    CardFeeCharged,
    CardSettingsChanged,
    Money,
    OrderAwaitingPayment,
    PaymentMethod,
)
from cagette_contracts.card_limits import card_amount_refusal
from cagette_runtime import outbox
from cagette_runtime.auth import Principal
from cagette_runtime.clock import now
from cagette_runtime.errors import Conflict, Forbidden, Invalid, NotFound

from . import card_store, store
from .domain import card as domain
from .domain.card import CardState
from .provider import CardNotConfigured, Fee
from .settings import PaymentsSettings

log = logging.getLogger(__name__)

EXPIRY_MARGIN = timedelta(minutes=2)
# Namespace of refund request ids derived from (payment, client key).
_REFUND_NAMESPACE = uuid.UUID("6b0f6f3e-9d0a-4a59-8f55-2f1f6b8a9c11")


def money_of(row: Row) -> Money:
    return Money(amount=row.amount, currency=row.currency)


# -- what orders awaits by card ---------------------------------------------------------------


async def on_order_awaiting_payment(session: AsyncSession, event: OrderAwaitingPayment) -> None:
    """Record what the member is to pay by card (the order, or an amendment's added lines)."""
    if event.payment_method is not PaymentMethod.CARD:
        return
    await store.ensure_member(session, event.group_id, event.member_id)
    await card_store.insert_due(
        session,
        {
            "due_id": event.amendment_id or event.order_id,
            "kind": "amendment" if event.amendment_id else "order",
            "group_id": event.group_id,
            "member_id": event.member_id,
            "order_id": event.order_id,
            "amendment_id": event.amendment_id,
            "distribution_id": event.distribution_id,
            "amount": event.amount.amount,
            "currency": event.amount.currency,
            "lines": json.loads(json.dumps([line.model_dump(mode="json") for line in event.lines])),
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
        },
    )


# -- group set-up -----------------------------------------------------------------------------


async def set_group_card_settings(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    *,
    enabled: bool,
    stripe_account: str | None,
    provider_ready: bool,
    account_status: domain.AccountStatus | None = None,
    settings_url: str | None = None,
) -> Row:
    """Store the group's card set-up and, in the same transaction, announce its card readiness
    (payments.card_settings.changed) when it is set for the first time or changed. A connected
    account serves one group only; its state (`account_status`, read from the provider by the
    caller) decides whether payments can go to it."""
    principal.require_coordinator(group_id)
    if await store.get_group(session, group_id) is None:
        raise NotFound(f"the payments service knows no group {group_id}")
    if enabled and not provider_ready:
        raise CardNotConfigured(
            "card payments cannot be enabled: the platform's card provider keys (CAGETTE_STRIPE_API_KEY and "
            "CAGETTE_STRIPE_WEBHOOK_SECRET) are not configured"
        )
    values: dict[str, Any] = {
        "enabled": enabled,
        "stripe_account": stripe_account,
        "updated_by": principal.user_id,
        "updated_at": now(),
    }
    if stripe_account is not None:
        await _refuse_account_of_another_group(session, group_id, stripe_account)
        current = await card_store.group_card_settings(session, group_id)
        same_account = current is not None and current.stripe_account == stripe_account
        if account_status is not None:
            values |= {
                "account_charges_enabled": account_status.charges_enabled,
                "account_card_payments": account_status.card_payments,
                "account_checked_at": now(),
            }
        if not same_account:
            values["account_deauthorized_at"] = None
    row = await card_store.save_card_settings(session, group_id, values)
    if await announce_readiness(session, row, provider_ready, settings_url=settings_url):
        found = await card_store.group_card_settings(session, group_id)
        assert found is not None
        row = found
    return row


async def _refuse_account_of_another_group(session: AsyncSession, group_id: UUID, stripe_account: str) -> None:
    holder = await card_store.card_settings_by_account(session, stripe_account)
    if holder is not None and holder.group_id != group_id:
        raise Conflict("this Stripe account already serves another group: one connected account per group")


def stored_account_status(row: Row) -> domain.AccountStatus | None:
    if row.account_charges_enabled is None:
        return None
    return domain.AccountStatus(bool(row.account_charges_enabled), row.account_card_payments or "unrequested")


def account_problem(row: Row | None) -> str | None:
    """Why the group's connected account cannot take payments now, in words (None: it can, or
    there is none)."""
    if row is None or row.stripe_account is None:
        return None
    return domain.account_problem(stored_account_status(row), deauthorized=row.account_deauthorized_at is not None)


def account_problem_of(row: Row) -> CardAccountProblem | None:
    """The same as a reason code (for the readiness announcement)."""
    if row.stripe_account is None:
        return None
    return domain.account_problem_of(stored_account_status(row), deauthorized=row.account_deauthorized_at is not None)


async def follow_account(
    session: AsyncSession,
    account: str,
    status: domain.AccountStatus | None,
    provider_ready: bool,
    *,
    deauthorized: bool = False,
    settings_url: str | None = None,
) -> str:
    """Apply the provider's account.updated (`status`) or account.application.deauthorized to
    the group the account serves; its readiness is announced again when it changed (orders stops
    offering card payments, notifications tells the coordinators). Returns a note."""
    row = await card_store.card_settings_by_account(session, account, lock=True)
    if row is None:
        return f"no group uses the connected account {account}"
    values: dict[str, Any] = {"account_checked_at": now()}
    if deauthorized:
        values["account_deauthorized_at"] = now()
    if status is not None:
        values |= {"account_charges_enabled": status.charges_enabled, "account_card_payments": status.card_payments}
    row = await card_store.save_account_status(session, row.group_id, values)
    await announce_readiness(session, row, provider_ready, settings_url=settings_url)
    problem = account_problem(row)
    return f"group {row.group_id}: " + (problem or "the connected account can take card payments")


def readiness(row: Row | None, provider_ready: bool) -> tuple[bool, bool]:
    """(card payments ready, paid to a connected account) for a group's card settings row: a
    connected account must also be able to take payments (account_problem)."""
    if row is None:
        return False, False
    connected = row.stripe_account is not None
    account_ok = not connected or account_problem(row) is None
    return provider_ready and bool(row.enabled) and account_ok, connected


def announced_readiness(row: Row) -> domain.Readiness | None:
    if row.announced_ready is None:
        return None
    problem = row.announced_account_problem
    return domain.Readiness(
        bool(row.announced_ready), bool(row.announced_connected), CardAccountProblem(problem) if problem else None
    )


async def announce_readiness(
    session: AsyncSession, row: Row, provider_ready: bool, *, settings_url: str | None = None
) -> bool:
    """Publish payments.card_settings.changed (outbox, caller's transaction) if the group's
    readiness (with its connected account's problem) differs from what was last announced, or
    was never announced; with the change the coordinators are told about, when there is one
    (notifications emails them). `settings_url`: web's card settings page ({group_id}). True if
    published."""
    ready, connected = readiness(row, provider_ready)
    current = domain.Readiness(ready, connected, account_problem_of(row))
    announced = announced_readiness(row)
    if announced == current:
        return False
    change = domain.account_change(announced, current, wanted=provider_ready and bool(row.enabled))
    await card_store.mark_announced(
        session,
        row.group_id,
        ready=ready,
        connected=connected,
        account_problem=current.account_problem.value if current.account_problem else None,
    )
    await outbox.add(
        session,
        CardSettingsChanged(
            **outbox.event_context(row.group_id),
            card_payments_ready=ready,
            enabled=bool(row.enabled),
            provider_configured=provider_ready,
            uses_connected_account=connected,
            account_problem=current.account_problem,
            account_change=change,
            settings_url=settings_url.format(group_id=row.group_id) if settings_url and connected else None,
        ),
    )
    log.info(
        "group %s: card payments %s%s",
        row.group_id,
        "ready" if ready else "not ready",
        f" (the connected account {change.value})" if change else "",
    )
    return True


async def reannounce_readiness(
    session: AsyncSession, provider_ready: bool, *, group_id: UUID | None = None, settings_url: str | None = None
) -> int:
    """Announce every group whose readiness changed without a PUT: the platform's keys were added
    or removed (a restart with other settings). Run at start; replicas lock the rows, so each
    change is announced once. Returns how many groups were announced."""
    announced = 0
    for row in await card_store.all_card_settings(session, group_id):
        announced += await announce_readiness(session, row, provider_ready, settings_url=settings_url)
    return announced


# -- paying -----------------------------------------------------------------------------------


@dataclass
class Started:
    payment: Row
    created: bool  # a new attempt (False: the open one is returned again)
    needs_session: bool  # the provider session is still to be created (or its creation retried)


async def start_payment(
    session: AsyncSession,
    principal: Principal,
    settings: PaymentsSettings,
    group_id: UUID,
    order_id: UUID,
    amendment_id: UUID | None,
) -> Started:
    """The member's card payment for their order (or an amendment of it): the open attempt if
    there is one, else a new attempt for exactly what orders asked (never an amount from the
    client). Runs before the provider is called; `finish_start` records the session."""
    principal.require_group_member(group_id)
    due = await card_store.lock_due(session, group_id, order_id, amendment_id or order_id)
    if due is None:
        what = f"amendment {amendment_id} of order {order_id}" if amendment_id else f"order {order_id}"
        raise NotFound(f"{what} is not waiting for a card payment in group {group_id}")
    if due.member_id != principal.user_id:
        raise Forbidden("only the member who placed the order pays it by card")
    config = await card_store.group_card_settings(session, group_id)
    if config is None or not config.enabled:
        raise CardNotConfigured(f"card payments are not set up for group {group_id}")
    if (problem := account_problem(config)) is not None:
        raise CardNotConfigured(f"card payments are not possible in group {group_id} now: {problem}")
    group = await store.get_group(session, group_id)
    if group is not None and not group.payments_enabled:
        raise Conflict(f"payment management is off in group {group_id} (R1)")
    refusal = card_amount_refusal(money_of(due))
    if refusal is not None:  # orders refuses it first; never ask the provider for what it refuses
        raise Invalid(refusal)
    attempts = await card_store.attempts_of(session, due.due_id)
    paid = [a for a in attempts if CardState(a.state) in domain.PAID_STATES]
    if paid:
        raise Conflict("this order is already paid by card", payment_id=paid[0].payment_id)
    at = now()
    if attempts:
        last = attempts[-1]
        # An open session is given again until it is surely over at the provider (its expiry
        # notification, or its end plus a margin for clocks): two payable sessions at once could
        # take the money twice.
        if CardState(last.state) in domain.OPEN_STATES and at <= last.expires_at + EXPIRY_MARGIN:
            return Started(last, False, last.checkout_session_id is None)
    payment_id = uuid.uuid4()
    attempt = (attempts[-1].attempt + 1) if attempts else 1
    await card_store.insert_card_payment(
        session,
        {
            "payment_id": payment_id,
            "due_id": due.due_id,
            "attempt": attempt,
            "group_id": group_id,
            "member_id": due.member_id,
            "order_id": due.order_id,
            "amendment_id": due.amendment_id,
            "distribution_id": due.distribution_id,
            "amount": due.amount,
            "currency": due.currency,
            "state": CardState.INITIATED.value,
            "stripe_account": config.stripe_account,
            "expires_at": (at + timedelta(minutes=settings.card_session_minutes)).replace(microsecond=0),
            "created_by": principal.user_id,
            "created_at": at,
            "updated_at": at,
        },
    )
    await card_store.record_history(session, payment_id, None, CardState.INITIATED, None, f"attempt {attempt}", at)
    row = await card_store.get_card_payment(session, group_id, payment_id)
    assert row is not None
    return Started(row, True, True)


def session_request(payment: Row, settings: PaymentsSettings) -> dict[str, Any]:
    """What the provider is asked: only from our record of the payment, so a retry asks exactly
    the same thing under the same idempotency key."""
    ids = {"group_id": payment.group_id, "order_id": payment.order_id, "payment_id": payment.payment_id}
    metadata = {
        "cagette_group_id": str(payment.group_id),
        "cagette_member_id": str(payment.member_id),
        "cagette_order_id": str(payment.order_id),
        "cagette_payment_id": str(payment.payment_id),
    }
    if payment.amendment_id:
        metadata["cagette_amendment_id"] = str(payment.amendment_id)
    what = "Addition to order" if payment.amendment_id else "Order"
    return {
        "payment_id": payment.payment_id,
        "account": payment.stripe_account,
        "amount": payment.amount,
        "currency": payment.currency,
        "description": f"{what} {payment.order_id}",
        "metadata": metadata,
        "success_url": settings.card_success_url.format(**ids),
        "cancel_url": settings.card_cancel_url.format(**ids),
        "expires_at": payment.expires_at,
    }


async def finish_start(session: AsyncSession, payment_id: UUID, session_id: str, url: str | None) -> None:
    await card_store.set_checkout_session(session, payment_id, session_id, url)


# -- refunds asked by a coordinator ----------------------------------------------------------


@dataclass
class RefundStarted:
    request: Row
    payment: Row
    created: bool


def refund_request_id(payment_id: UUID, client_key: str) -> UUID:
    return uuid.uuid5(_REFUND_NAMESPACE, f"{payment_id}:{client_key}")


async def start_refund(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    payment_id: UUID,
    *,
    amount: Money,
    reason: str,
    client_key: str,
) -> RefundStarted:
    """Record a coordinator's refund request (before the provider is asked). The same client
    key and body again: the same request (and the same provider idempotency key)."""
    principal.require_coordinator(group_id)
    payment = await card_store.get_card_payment(session, group_id, payment_id, lock=True)
    if payment is None:
        raise NotFound(f"no card payment {payment_id} in group {group_id}")
    request_hash = hashlib.sha256(json.dumps([amount.amount, amount.currency, reason.strip()]).encode()).hexdigest()
    request_id = refund_request_id(payment_id, client_key)
    existing = await card_store.refund_request(session, request_id)
    if existing is not None:
        if existing.request_hash != request_hash:
            raise Conflict(f"client key {client_key!r} was already used for a different refund")
        return RefundStarted(existing, payment, False)
    if not reason.strip():
        raise Invalid("a refund needs a reason")
    already = max(await card_store.requested_refunds_total(session, payment_id), payment.amount_refunded)
    try:
        domain.check_refund_request(
            CardState(payment.state), money_of(payment), Money(amount=already, currency=payment.currency), amount
        )
    except domain.NotRefundable as exc:
        raise Conflict(str(exc)) from None
    except domain.RefundRefused as exc:
        raise Invalid(str(exc)) from None
    if payment.payment_intent_id is None:
        raise Conflict("the provider's payment id is not known yet; try again in a moment")
    row = await card_store.insert_refund_request(
        session,
        {
            "request_id": request_id,
            "payment_id": payment_id,
            "group_id": group_id,
            "amount": amount.amount,
            "currency": amount.currency,
            "reason": reason.strip(),
            "client_key": client_key,
            "request_hash": request_hash,
            "requested_by": principal.user_id,
            "requested_at": now(),
        },
    )
    return RefundStarted(row, payment, True)


async def finish_refund(session: AsyncSession, request_id: UUID, refund_id: str, status: str) -> Row:
    return await card_store.set_refund_request_outcome(session, request_id, refund_id, status)


# -- the fee, once the background job read it -------------------------------------------------


async def record_fee(session: AsyncSession, payment_id: UUID, fee: Fee) -> None:
    """The fee is known: CardFeeCharged when it is in the payment's currency (the group's fee
    account bears it), recorded either way; the job is done."""
    payment = await card_store.card_payment_by_id(session, payment_id, lock=True)
    assert payment is not None
    await card_store.fee_job_done(session, payment_id)
    if payment.fee_amount is not None:
        return
    await card_store.update_card_payment(
        session,
        payment_id,
        fee_amount=fee.amount,
        fee_currency=fee.currency,
        charge_id=payment.charge_id or fee.charge_id,
    )
    charged = domain.fee_in_payment_currency(fee.amount, fee.currency, payment.currency)
    if charged is None:
        if fee.amount:
            log.warning(
                "card payment %s: fee %s %s not in the payment's currency, recorded but not posted",
                payment_id,
                fee.amount,
                fee.currency,
            )
        return
    await outbox.add(
        session,
        CardFeeCharged(
            **store.payment_event_fields(payment),
            amount=charged,
            provider_payment_id=payment.payment_intent_id or fee.charge_id,
        ),
    )
