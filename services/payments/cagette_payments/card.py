"""Online card payments: use cases (paying, group set-up, refunds, fees) and the effects of the
provider's notifications. Each effect runs in the caller's database transaction and writes its
events to the outbox there: a state change and its events commit together or not at all."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Row, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    CardFeeCharged,
    CardPaymentFailed,
    CardPaymentSucceeded,
    CardSettingsChanged,
    Money,
    OrderAwaitingPayment,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
)
from cagette_contracts.payments import CardPaymentDisputed
from cagette_runtime import outbox
from cagette_runtime.auth import Principal
from cagette_runtime.correlation import peek_correlation_id
from cagette_runtime.errors import Conflict, Forbidden, Invalid, NotFound

from . import store
from .domain import card as domain
from .domain.card import CardState, Outcome
from .domain.methods import Method
from .domain.states import Kind, State, creation
from .domain.states import Payment as ManualPayment
from .provider import CardNotConfigured
from .settings import PaymentsSettings
from .tables import (
    card_dues,
    card_jobs,
    card_payment_history,
    card_payments,
    card_refund_requests,
    card_settings,
    payments,
    provider_events,
)

log = logging.getLogger(__name__)

PROVIDER = "stripe"
FEE_JOB = "fee"
EXPIRY_MARGIN = timedelta(minutes=2)
# Namespace of refund request ids derived from (payment, client key).
_REFUND_NAMESPACE = uuid.UUID("6b0f6f3e-9d0a-4a59-8f55-2f1f6b8a9c11")


def now() -> datetime:
    return datetime.now(UTC)


def money_of(row: Row) -> Money:
    return Money(amount=row.amount, currency=row.currency)


# -- what orders awaits by card ---------------------------------------------------------------


async def on_order_awaiting_payment(session: AsyncSession, event: OrderAwaitingPayment) -> None:
    """Record what the member is to pay by card (the order, or an amendment's added lines)."""
    if event.payment_method is not PaymentMethod.CARD:
        return
    await store.ensure_member(session, event.group_id, event.member_id)
    lines = json.loads(json.dumps([line.model_dump(mode="json") for line in event.lines]))
    await session.execute(
        pg_insert(card_dues)
        .values(
            due_id=event.amendment_id or event.order_id,
            kind="amendment" if event.amendment_id else "order",
            group_id=event.group_id,
            member_id=event.member_id,
            order_id=event.order_id,
            amendment_id=event.amendment_id,
            distribution_id=event.distribution_id,
            amount=event.amount.amount,
            currency=event.amount.currency,
            lines=lines,
            event_id=event.event_id,
            occurred_at=event.occurred_at,
        )
        .on_conflict_do_nothing()
    )


# -- group set-up -----------------------------------------------------------------------------


async def group_card_settings(session: AsyncSession, group_id: UUID) -> Row | None:
    return (await session.execute(select(card_settings).where(card_settings.c.group_id == group_id))).first()


async def set_group_card_settings(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    *,
    enabled: bool,
    stripe_account: str | None,
    provider_ready: bool,
) -> Row:
    """Store the group's card set-up and, in the same transaction, announce its card readiness
    (payments.card_settings.changed) when it is set for the first time or changed."""
    principal.require_coordinator(group_id)
    if await store.get_group(session, group_id) is None:
        raise NotFound(f"the payments service knows no group {group_id}")
    if enabled and not provider_ready:
        raise CardNotConfigured(
            "card payments cannot be enabled: the platform's card provider keys (CAGETTE_STRIPE_API_KEY and "
            "CAGETTE_STRIPE_WEBHOOK_SECRET) are not configured"
        )
    values = {
        "enabled": enabled,
        "stripe_account": stripe_account,
        "updated_by": principal.user_id,
        "updated_at": now(),
    }
    stmt = pg_insert(card_settings).values(group_id=group_id, **values)
    await session.execute(stmt.on_conflict_do_update(index_elements=[card_settings.c.group_id], set_=values))
    row = await group_card_settings(session, group_id)
    assert row is not None
    if await announce_readiness(session, row, provider_ready):
        row = await group_card_settings(session, group_id)
        assert row is not None
    return row


def readiness(row: Row | None, provider_ready: bool) -> tuple[bool, bool]:
    """(card payments ready, paid to a connected account) for a group's card settings row."""
    if row is None:
        return False, False
    return provider_ready and bool(row.enabled), row.stripe_account is not None


async def announce_readiness(session: AsyncSession, row: Row, provider_ready: bool) -> bool:
    """Publish payments.card_settings.changed (outbox, caller's transaction) if the group's
    readiness differs from what was last announced, or was never announced. True if published."""
    ready, connected = readiness(row, provider_ready)
    if row.announced_ready is ready and row.announced_connected is connected:
        return False
    await session.execute(
        update(card_settings)
        .where(card_settings.c.group_id == row.group_id)
        .values(announced_ready=ready, announced_connected=connected)
    )
    await outbox.add(
        session,
        CardSettingsChanged(
            **outbox.event_context(row.group_id),
            card_payments_ready=ready,
            enabled=bool(row.enabled),
            provider_configured=provider_ready,
            uses_connected_account=connected,
        ),
    )
    log.info("group %s: card payments %s", row.group_id, "ready" if ready else "not ready")
    return True


async def reannounce_readiness(session: AsyncSession, provider_ready: bool, *, group_id: UUID | None = None) -> int:
    """Announce every group whose readiness changed without a PUT: the platform's keys were added
    or removed (a restart with other settings). Run at start; replicas lock the rows, so each
    change is announced once. Returns how many groups were announced."""
    statement = select(card_settings).order_by(card_settings.c.group_id).with_for_update()
    if group_id is not None:
        statement = statement.where(card_settings.c.group_id == group_id)
    announced = 0
    for row in (await session.execute(statement)).all():
        announced += await announce_readiness(session, row, provider_ready)
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
    due = (
        await session.execute(
            select(card_dues)
            .where(
                card_dues.c.group_id == group_id,
                card_dues.c.due_id == (amendment_id or order_id),
                card_dues.c.order_id == order_id,
            )
            .with_for_update()
        )
    ).first()
    if due is None:
        what = f"amendment {amendment_id} of order {order_id}" if amendment_id else f"order {order_id}"
        raise NotFound(f"{what} is not waiting for a card payment in group {group_id}")
    if due.member_id != principal.user_id:
        raise Forbidden("only the member who placed the order pays it by card")
    config = await group_card_settings(session, group_id)
    if config is None or not config.enabled:
        raise CardNotConfigured(f"card payments are not set up for group {group_id}")
    group = await store.get_group(session, group_id)
    if group is not None and not group.payments_enabled:
        raise Conflict(f"payment management is off in group {group_id} (R1)")
    attempts = list(
        await session.execute(
            select(card_payments).where(card_payments.c.due_id == due.due_id).order_by(card_payments.c.attempt)
        )
    )
    if any(a.state == CardState.SUCCEEDED.value for a in attempts):
        raise Conflict(
            "this order is already paid by card",
            payment_id=next(a.payment_id for a in attempts if a.state == "succeeded"),
        )
    at = now()
    if attempts:
        last = attempts[-1]
        # An open session is given again until it is surely over at the provider (its expiry
        # notification, or its end plus a margin for clocks): two payable sessions at once could
        # take the money twice.
        if CardState(last.state) in domain.OPEN_STATES and at <= last.expires_at + EXPIRY_MARGIN:
            return Started(last, False, last.checkout_session_id is None)
    payment_id = uuid.uuid4()
    values = {
        "payment_id": payment_id,
        "due_id": due.due_id,
        "attempt": (attempts[-1].attempt + 1) if attempts else 1,
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
    }
    await session.execute(insert(card_payments).values(**values))
    await _history(session, payment_id, None, CardState.INITIATED, None, f"attempt {values['attempt']}", at)
    row = await get_card_payment(session, group_id, payment_id)
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
    await session.execute(
        update(card_payments)
        .where(card_payments.c.payment_id == payment_id, card_payments.c.checkout_session_id.is_(None))
        .values(checkout_session_id=session_id, checkout_url=url, updated_at=now())
    )


async def get_card_payment(
    session: AsyncSession, group_id: UUID, payment_id: UUID, *, lock: bool = False
) -> Row | None:
    query = select(card_payments).where(card_payments.c.group_id == group_id, card_payments.c.payment_id == payment_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def group_card_payments(
    session: AsyncSession, group_id: UUID, *, state: str | None, disputed: bool | None
) -> list[Row]:
    query = select(card_payments).where(card_payments.c.group_id == group_id)
    if state is not None:
        query = query.where(card_payments.c.state == state)
    if disputed is not None:
        query = query.where(
            card_payments.c.dispute_id.isnot(None) if disputed else card_payments.c.dispute_id.is_(None)
        )
    return list(await session.execute(query.order_by(card_payments.c.created_at.desc()).limit(500)))


async def order_card_payments(session: AsyncSession, group_id: UUID, order_id: UUID) -> list[Row]:
    return list(
        await session.execute(
            select(card_payments)
            .where(card_payments.c.group_id == group_id, card_payments.c.order_id == order_id)
            .order_by(card_payments.c.created_at)
        )
    )


async def history_of(session: AsyncSession, payment_id: UUID) -> list[Row]:
    return list(
        await session.execute(
            select(card_payment_history)
            .where(card_payment_history.c.payment_id == payment_id)
            .order_by(card_payment_history.c.id)
        )
    )


async def _history(
    session: AsyncSession,
    payment_id: UUID,
    before: CardState | None,
    after: CardState,
    provider_event_id: str | None,
    note: str,
    at: datetime,
) -> None:
    await session.execute(
        insert(card_payment_history).values(
            payment_id=payment_id,
            from_state=before.value if before else None,
            to_state=after.value,
            provider_event_id=provider_event_id,
            note=note,
            at=at,
        )
    )


# -- the effects of provider notifications ---------------------------------------------------


class Park(Exception):
    """The notification cannot be applied now (unknown payment, a mismatch): keep it for an
    operator, with the reason."""

    def __init__(self, reason: str, payment_id: UUID | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payment_id = payment_id


@dataclass(frozen=True)
class Notice:
    """What one provider notification says, in our terms (see webhooks.py for the parsing)."""

    event_id: str
    kind: str  # outcome | refunded | disputed
    account: str | None = None
    payment_id: UUID | None = None  # from our metadata
    session_id: str | None = None
    payment_intent: str | None = None
    charge_id: str | None = None
    outcome: Outcome | None = None
    amount: int | None = None
    currency: str | None = None
    amount_refunded: int | None = None
    reason: str = ""
    dispute_id: str | None = None
    dispute_status: str = ""


async def find_payment_for(session: AsyncSession, notice: Notice) -> Row | None:
    """The card payment a notification is about (locked): by our metadata, else by the
    provider's ids we recorded."""
    conditions = []
    if notice.payment_id is not None:
        conditions.append(card_payments.c.payment_id == notice.payment_id)
    if notice.session_id:
        conditions.append(card_payments.c.checkout_session_id == notice.session_id)
    if notice.payment_intent:
        conditions.append(card_payments.c.payment_intent_id == notice.payment_intent)
    if notice.charge_id:
        conditions.append(card_payments.c.charge_id == notice.charge_id)
    if not conditions:
        return None
    rows = list(await session.execute(select(card_payments).where(or_(*conditions)).with_for_update()))
    if len(rows) > 1:
        raise Park(f"the notification's ids name {len(rows)} different card payments")
    return rows[0] if rows else None


async def apply_notice(session: AsyncSession, notice: Notice) -> tuple[UUID, str]:
    """Apply one notification to its card payment. Returns (payment id, what happened). Raises
    Park when it cannot be applied."""
    payment = await find_payment_for(session, notice)
    if payment is None:
        raise Park("no card payment of ours matches this notification")
    if notice.account and payment.stripe_account and notice.account != payment.stripe_account:
        raise Park(
            f"the notification comes from account {notice.account}, the payment was made on {payment.stripe_account}",
            payment.payment_id,
        )
    await _learn_ids(session, payment, notice)
    payment = await get_card_payment(session, payment.group_id, payment.payment_id, lock=True)
    assert payment is not None
    if notice.kind == "outcome":
        assert notice.outcome is not None
        note = await _apply_outcome(session, payment, notice)
    elif notice.kind == "refunded":
        note = await _apply_refund(session, payment, notice)
    elif notice.kind == "disputed":
        note = await _apply_dispute(session, payment, notice)
    else:  # pragma: no cover - webhooks.py makes only these
        raise Park(f"unknown notice kind {notice.kind}")
    return payment.payment_id, note


async def _learn_ids(session: AsyncSession, payment: Row, notice: Notice) -> None:
    values: dict[str, Any] = {}
    if notice.payment_intent and payment.payment_intent_id is None:
        values["payment_intent_id"] = notice.payment_intent
    elif notice.payment_intent and payment.payment_intent_id != notice.payment_intent:
        raise Park(
            f"payment intent {notice.payment_intent} is not the one recorded ({payment.payment_intent_id})",
            payment.payment_id,
        )
    if notice.charge_id and payment.charge_id is None:
        values["charge_id"] = notice.charge_id
    if notice.session_id and payment.checkout_session_id is None:
        values["checkout_session_id"] = notice.session_id
    if values:
        await session.execute(
            update(card_payments).where(card_payments.c.payment_id == payment.payment_id).values(**values)
        )


async def _apply_outcome(session: AsyncSession, payment: Row, notice: Notice) -> str:
    assert notice.outcome is not None
    state = CardState(payment.state)
    after = domain.advance(state, notice.outcome)
    if after is None:
        return f"{notice.outcome} ignored: the payment is {state}"
    if after is CardState.SUCCEEDED:
        try:
            domain.check_paid_amount(money_of(payment), notice.amount, notice.currency)
        except domain.AmountMismatch as exc:
            raise Park(str(exc), payment.payment_id) from None
        await _succeed(session, payment, notice.event_id, "paid")
        return "succeeded"
    at = now()
    await session.execute(
        update(card_payments)
        .where(card_payments.c.payment_id == payment.payment_id)
        .values(state=after.value, failure_reason=notice.reason or after.value, updated_at=at)
    )
    await _history(session, payment.payment_id, state, after, notice.event_id, notice.reason, at)
    paid_otherwise = (
        await session.execute(
            select(card_payments.c.payment_id).where(
                card_payments.c.due_id == payment.due_id, card_payments.c.state == "succeeded"
            )
        )
    ).first()
    if paid_otherwise is None and not (state is CardState.FAILED and after is CardState.EXPIRED):
        # A failed attempt that then expires was already reported once.
        await outbox.add(
            session,
            CardPaymentFailed(
                **store.payment_event_fields(payment),
                amount=money_of(payment),
                provider_payment_id=payment.payment_intent_id or notice.payment_intent or payment.checkout_session_id,
                reason=notice.reason or after.value,
                retry_url=payment.checkout_url if after is CardState.FAILED else None,
            ),
        )
    return after.value


async def _succeed(session: AsyncSession, payment: Row, provider_event_id: str, note: str) -> None:
    """initiated|failed|expired -> succeeded: the money is received. CardPaymentSucceeded (orders
    confirms the order) and PaymentReceived with method card (the ledger credits the member), a
    received `payments` row (baskets, takings), and the fee to fetch in the background."""
    at = now()
    before = CardState(payment.state)
    await session.execute(
        update(card_payments)
        .where(card_payments.c.payment_id == payment.payment_id)
        .values(state=CardState.SUCCEEDED.value, failure_reason=None, updated_at=at)
    )
    await _history(session, payment.payment_id, before, CardState.SUCCEEDED, provider_event_id, note, at)
    current = await get_card_payment(session, payment.group_id, payment.payment_id)
    assert current is not None
    provider_payment_id = current.payment_intent_id or current.checkout_session_id or str(current.payment_id)
    amount = money_of(current)
    if current.distribution_id is not None:
        await store.ensure_basket(session, current.group_id, current.distribution_id, current.member_id)
    await session.execute(
        insert(payments).values(
            payment_id=current.payment_id,
            group_id=current.group_id,
            member_id=current.member_id,
            kind=Kind.PAYMENT.value,
            state=State.RECEIVED.value,
            method=Method.CARD.value,
            amount=amount.amount,
            currency=amount.currency,
            paid_on=at.date(),
            order_id=current.order_id,
            amendment_id=current.amendment_id,
            distribution_id=current.distribution_id,
            source="card",
            source_key=f"card:{current.payment_id}",
            provider=PROVIDER,
            provider_payment_id=provider_payment_id,
            created_at=at,
            updated_at=at,
        )
    )
    await store.record_transition(
        session,
        creation(
            ManualPayment(current.payment_id, Kind.PAYMENT, State.RECEIVED, Method.CARD, amount),
            by=None,
            at=at,
            note=f"card payment confirmed by the provider ({provider_event_id})",
        ),
    )
    await outbox.add(
        session,
        CardPaymentSucceeded(
            **store.payment_event_fields(current), amount=amount, provider_payment_id=provider_payment_id
        ),
        PaymentReceived(
            **store.payment_event_fields(current), amount=amount, method=PaymentMethod.CARD, label=provider_payment_id
        ),
    )
    await session.execute(
        pg_insert(card_jobs)
        .values(payment_id=current.payment_id, kind=FEE_JOB, correlation_id=peek_correlation_id())
        .on_conflict_do_nothing()
    )


async def _apply_refund(session: AsyncSession, payment: Row, notice: Notice) -> str:
    paid = money_of(payment)
    if notice.currency and notice.currency.upper() != paid.currency:
        raise Park(f"refund in {notice.currency.upper()} on a payment in {paid.currency}", payment.payment_id)
    if notice.amount_refunded is None:
        raise Park("the refund notification carries no amount_refunded", payment.payment_id)
    try:
        delta = domain.refund_delta(
            paid, notice.amount_refunded, Money(amount=payment.amount_refunded, currency=paid.currency)
        )
    except domain.RefundOverflow as exc:
        raise Park(str(exc), payment.payment_id) from None
    notes = []
    if domain.implies_success(CardState(payment.state)):
        await _succeed(session, payment, notice.event_id, "implied by a refund notification that came first")
        notes.append("success implied")
    if delta.new.is_zero:
        notes.append(f"refunded total {notice.amount_refunded} already recorded")
        return "; ".join(notes)
    at = now()
    await session.execute(
        update(card_payments)
        .where(card_payments.c.payment_id == payment.payment_id)
        .values(amount_refunded=delta.cumulative.amount, updated_at=at)
    )
    refund_id = uuid.uuid4()
    reason = notice.reason or "card refund"
    values = {
        "payment_id": refund_id,
        "group_id": payment.group_id,
        "member_id": payment.member_id,
        "kind": Kind.REFUND.value,
        "state": State.RECEIVED.value,
        "method": Method.CARD.value,
        "amount": -delta.new.amount,
        "currency": paid.currency,
        "reason": reason,
        "paid_on": at.date(),
        "order_id": payment.order_id,
        "amendment_id": payment.amendment_id,
        "distribution_id": payment.distribution_id,
        "source": "card_refund",
        "source_key": f"card_refund:{payment.payment_id}:{delta.cumulative.amount}",
        "created_at": at,
        "updated_at": at,
    }
    await session.execute(insert(payments).values(**values))
    await store.record_transition(
        session,
        creation(
            ManualPayment(refund_id, Kind.REFUND, State.RECEIVED, Method.CARD, -delta.new),
            by=None,
            at=at,
            note=f"card refund confirmed by the provider ({notice.event_id})",
        ),
    )
    await _history(
        session,
        payment.payment_id,
        CardState.SUCCEEDED,
        CardState.SUCCEEDED,
        notice.event_id,
        f"refunded {delta.new.amount} (in all {delta.cumulative.amount})",
        at,
    )
    await outbox.add(
        session,
        PaymentRefunded(
            **store.payment_event_fields(payment),
            refund_id=refund_id,
            amount=delta.new,
            method=PaymentMethod.CARD,
            reason=reason,
        ),
    )
    notes.append(f"refunded {delta.new.amount}")
    return "; ".join(notes)


async def _apply_dispute(session: AsyncSession, payment: Row, notice: Notice) -> str:
    notes = []
    if domain.implies_success(CardState(payment.state)):
        await _succeed(session, payment, notice.event_id, "implied by a dispute notification that came first")
        notes.append("success implied")
    if payment.dispute_id == notice.dispute_id:
        return "; ".join([*notes, "dispute already recorded"])
    at = now()
    await session.execute(
        update(card_payments)
        .where(card_payments.c.payment_id == payment.payment_id)
        .values(
            dispute_id=notice.dispute_id,
            dispute_reason=notice.reason,
            dispute_status=notice.dispute_status,
            disputed_at=at,
            updated_at=at,
        )
    )
    await _history(
        session,
        payment.payment_id,
        CardState.SUCCEEDED,
        CardState.SUCCEEDED,
        notice.event_id,
        f"disputed: {notice.reason}",
        at,
    )
    disputed = (
        Money(amount=notice.amount, currency=notice.currency.upper())
        if notice.amount and notice.currency
        else money_of(payment)
    )
    log.warning(
        "card payment %s of group %s disputed (%s): coordinators are told",
        payment.payment_id,
        payment.group_id,
        notice.reason,
    )
    await outbox.add(
        session,
        CardPaymentDisputed(
            **store.payment_event_fields(payment),
            amount=disputed,
            provider_payment_id=payment.payment_intent_id or notice.payment_intent or "",
            dispute_id=notice.dispute_id or "",
            reason=notice.reason,
            status=notice.dispute_status,
        ),
    )
    return "; ".join([*notes, "dispute recorded"])


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
    payment = await get_card_payment(session, group_id, payment_id, lock=True)
    if payment is None:
        raise NotFound(f"no card payment {payment_id} in group {group_id}")
    request_hash = hashlib.sha256(json.dumps([amount.amount, amount.currency, reason.strip()]).encode()).hexdigest()
    request_id = refund_request_id(payment_id, client_key)
    existing = (
        await session.execute(select(card_refund_requests).where(card_refund_requests.c.request_id == request_id))
    ).first()
    if existing is not None:
        if existing.request_hash != request_hash:
            raise Conflict(f"client key {client_key!r} was already used for a different refund")
        return RefundStarted(existing, payment, False)
    if not reason.strip():
        raise Invalid("a refund needs a reason")
    requested = (
        await session.execute(
            select(func.coalesce(func.sum(card_refund_requests.c.amount), 0)).where(
                card_refund_requests.c.payment_id == payment_id
            )
        )
    ).scalar_one()
    already = max(int(requested), payment.amount_refunded)
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
    await session.execute(
        insert(card_refund_requests).values(
            request_id=request_id,
            payment_id=payment_id,
            group_id=group_id,
            amount=amount.amount,
            currency=amount.currency,
            reason=reason.strip(),
            client_key=client_key,
            request_hash=request_hash,
            requested_by=principal.user_id,
            requested_at=now(),
        )
    )
    row = (
        await session.execute(select(card_refund_requests).where(card_refund_requests.c.request_id == request_id))
    ).first()
    assert row is not None
    return RefundStarted(row, payment, True)


async def finish_refund(session: AsyncSession, request_id: UUID, refund_id: str, status: str) -> Row:
    await session.execute(
        update(card_refund_requests)
        .where(card_refund_requests.c.request_id == request_id)
        .values(provider_refund_id=refund_id, provider_status=status)
    )
    row = (
        await session.execute(select(card_refund_requests).where(card_refund_requests.c.request_id == request_id))
    ).first()
    assert row is not None
    return row


async def refund_requests_of(session: AsyncSession, payment_id: UUID) -> list[Row]:
    return list(
        await session.execute(
            select(card_refund_requests)
            .where(card_refund_requests.c.payment_id == payment_id)
            .order_by(card_refund_requests.c.requested_at)
        )
    )


# -- the fee, fetched in the background -------------------------------------------------------


async def claim_fee_jobs(session: AsyncSession, limit: int = 10) -> list[Row]:
    """Due fee jobs, pushed back a minute (claimed) so another replica or pass leaves them alone."""
    rows = list(
        await session.execute(
            select(
                card_jobs,
                card_payments.c.group_id,
                card_payments.c.payment_intent_id,
                card_payments.c.charge_id,
                card_payments.c.stripe_account,
            )
            .join(card_payments, card_payments.c.payment_id == card_jobs.c.payment_id)
            .where(card_jobs.c.done_at.is_(None), card_jobs.c.next_attempt_at <= func.now())
            .order_by(card_jobs.c.next_attempt_at)
            .limit(limit)
            .with_for_update(of=card_jobs, skip_locked=True)
        )
    )
    for row in rows:
        await session.execute(
            update(card_jobs)
            .where(card_jobs.c.payment_id == row.payment_id, card_jobs.c.kind == row.kind)
            .values(attempts=row.attempts + 1, next_attempt_at=func.now() + timedelta(seconds=60))
        )
    return rows


async def record_fee(session: AsyncSession, payment_id: UUID, fee: Any) -> None:
    """The fee is known: CardFeeCharged when it is in the payment's currency (the group's fee
    account bears it), recorded either way; the job is done."""
    payment = (
        await session.execute(select(card_payments).where(card_payments.c.payment_id == payment_id).with_for_update())
    ).first()
    assert payment is not None
    await session.execute(
        update(card_jobs)
        .where(card_jobs.c.payment_id == payment_id, card_jobs.c.kind == FEE_JOB)
        .values(done_at=func.now(), last_error=None)
    )
    if payment.fee_amount is not None:
        return
    await session.execute(
        update(card_payments)
        .where(card_payments.c.payment_id == payment_id)
        .values(
            fee_amount=fee.amount,
            fee_currency=fee.currency,
            charge_id=payment.charge_id or fee.charge_id,
            updated_at=now(),
        )
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


async def fee_job_failed(session: AsyncSession, payment_id: UUID, error: str, attempts: int) -> None:
    delay = min(3600, 5 * 2 ** min(attempts, 10))
    await session.execute(
        update(card_jobs)
        .where(card_jobs.c.payment_id == payment_id, card_jobs.c.kind == FEE_JOB)
        .values(last_error=error[:1000], next_attempt_at=func.now() + timedelta(seconds=delay))
    )


# -- provider events (stored once) -----------------------------------------------------------


async def store_event(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Store the provider event by its id; False when it was already stored (a replay)."""
    result = await session.execute(
        pg_insert(provider_events)
        .values(
            event_id=str(event["id"]),
            provider=PROVIDER,
            type=str(event.get("type") or ""),
            account=event.get("account"),
            livemode=bool(event.get("livemode")),
            provider_created=event.get("created") if isinstance(event.get("created"), int) else None,
            payload=event,
            outcome="ignored",
            received_at=now(),
        )
        .on_conflict_do_nothing()
        .returning(provider_events.c.event_id)
    )
    return result.first() is not None


async def set_event_outcome(
    session: AsyncSession, event_id: str, outcome: str, note: str, payment_id: UUID | None
) -> None:
    await session.execute(
        update(provider_events)
        .where(provider_events.c.event_id == event_id)
        .values(
            outcome=outcome,
            note=note[:2000],
            payment_id=payment_id,
            resolved_at=now() if outcome != "parked" else None,
        )
    )


async def parked_events(session: AsyncSession, *, payment: Row | None = None, lock: bool = False) -> list[Row]:
    query = select(provider_events).where(provider_events.c.outcome == "parked")
    if payment is not None:
        obj = provider_events.c.payload["data"]["object"]
        ids = [i for i in (payment.payment_intent_id, payment.charge_id, payment.checkout_session_id) if i]
        conditions = [obj["metadata"]["cagette_payment_id"].astext == str(payment.payment_id)]
        for value in ids:
            conditions += [
                obj["payment_intent"].astext == value,
                obj["charge"].astext == value,
                obj["id"].astext == value,
            ]
        query = query.where(or_(*conditions))
    query = query.order_by(provider_events.c.received_at)
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list(await session.execute(query))


async def get_event(session: AsyncSession, event_id: str, *, lock: bool = False) -> Row | None:
    query = select(provider_events).where(provider_events.c.event_id == event_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def get_card_payment_any(session: AsyncSession, payment_id: UUID) -> Row | None:
    return (await session.execute(select(card_payments).where(card_payments.c.payment_id == payment_id))).first()
