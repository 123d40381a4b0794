"""The effects of the card provider's notifications (typed notices, domain/notices.py) on our card
payments: a state change, the money rows (through the payments store, so baskets and takings
see them), every transition in the payment's history, and the events in the outbox, all in the
caller's transaction. A notice that cannot be applied raises Park (kept for an operator)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    CardDisputeFundsReinstated,
    CardDisputeFundsWithdrawn,
    CardDisputeUpdated,
    CardPaymentDisputed,
    CardPaymentFailed,
    CardPaymentSucceeded,
    Money,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
)
from cagette_runtime import outbox
from cagette_runtime.clock import now

from . import card_store, store
from .card_usecases import money_of
from .domain import card as domain
from .domain.card import CardState
from .domain.methods import Method
from .domain.notices import (
    CardNotice,
    ChargeRefunded,
    DisputeChanged,
    DisputeFunds,
    DisputeStep,
    PaymentOutcome,
    RefundFailed,
    Source,
)
from .domain.states import Kind, State, creation
from .domain.states import Payment as ManualPayment

log = logging.getLogger(__name__)

# Ids of the money rows a notice creates, derived from the provider's ids: the same notice
# (or a replay of its effect) can never write a second row.
_ROWS = uuid.UUID("3f1c9a57-2b8e-4d07-9a0c-5e2f4b1d7a66")


class Park(Exception):
    """The notification cannot be applied now (unknown payment, a mismatch): keep it for an
    operator, with the reason."""

    def __init__(self, reason: str, payment_id: UUID | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payment_id = payment_id


class _DisputeFields(store.PaymentEventFields):
    """What each event of a dispute says first: the card payment, the provider's one, the dispute."""

    provider_payment_id: str
    dispute_id: str


class _DisputeFundsFields(_DisputeFields):
    """What both funds events of a dispute say: how much moved, by which provider transaction."""

    amount: Money
    transaction_id: str


async def apply_notice(session: AsyncSession, notice: CardNotice) -> tuple[UUID, str]:
    """Apply one notification to its card payment. Returns (payment id, what happened). Raises
    Park when it cannot be applied."""
    found = await card_store.payments_named_by(session, notice.source)
    if len(found) > 1:
        raise Park(f"the notification's ids name {len(found)} different card payments")
    if not found:
        raise Park("no card payment of ours matches this notification")
    payment = found[0]
    if notice.source.account != payment.stripe_account:
        # A platform event for a connected payment, or the reverse, or another account: never ours.
        raise Park(
            f"the notification comes from {notice.source.account or 'the platform account'}, the payment was "
            f"made on {payment.stripe_account or 'the platform account'}",
            payment.payment_id,
        )
    await _learn_ids(session, payment, notice.source)
    locked = await card_store.card_payment_by_id(session, payment.payment_id, lock=True)
    assert locked is not None
    match notice:
        case PaymentOutcome():
            note = await _apply_outcome(session, locked, notice)
        case ChargeRefunded():
            note = await _apply_refund(session, locked, notice)
        case RefundFailed():
            note = await _apply_refund_failure(session, locked, notice)
        case DisputeChanged():
            note = await _apply_dispute(session, locked, notice)
    return locked.payment_id, note


async def _learn_ids(session: AsyncSession, payment: Row, source: Source) -> None:
    values: dict[str, Any] = {}
    if source.payment_intent and payment.payment_intent_id is None:
        values["payment_intent_id"] = source.payment_intent
    elif source.payment_intent and payment.payment_intent_id != source.payment_intent:
        raise Park(
            f"payment intent {source.payment_intent} is not the one recorded ({payment.payment_intent_id})",
            payment.payment_id,
        )
    if source.charge_id and payment.charge_id is None:
        values["charge_id"] = source.charge_id
    if source.session_id and payment.checkout_session_id is None:
        values["checkout_session_id"] = source.session_id
    if values:
        await card_store.update_card_payment(session, payment.payment_id, **values)


async def _move(
    session: AsyncSession, payment: Row, after: CardState, event_id: str, note: str, at: datetime, **values: Any
) -> None:
    """The payment to `after` (with other column values), the transition in its history."""
    await card_store.update_card_payment(session, payment.payment_id, state=after.value, **values)
    await card_store.record_history(session, payment.payment_id, CardState(payment.state), after, event_id, note, at)


async def _money_row(
    session: AsyncSession,
    payment: Row,
    *,
    row_id: UUID,
    kind: Kind,
    amount: Money,
    source: str,
    reason: str | None,
    note: str,
    at: datetime,
    provider_payment_id: str | None = None,
) -> dict[str, Any]:
    """A received (amount > 0) or refunded (amount < 0) card row in the payments table, written
    through the payments store with its creation transition: baskets and takings count it."""
    values: dict[str, Any] = {
        "payment_id": row_id,
        "group_id": payment.group_id,
        "member_id": payment.member_id,
        "kind": kind.value,
        "state": State.RECEIVED.value,
        "method": Method.CARD.value,
        "amount": amount.amount,
        "currency": amount.currency,
        "reason": reason,
        "paid_on": at.date(),
        "order_id": payment.order_id,
        "amendment_id": payment.amendment_id,
        "distribution_id": payment.distribution_id,
        "source": source,
        "source_key": f"{source}:{row_id}",
        "created_at": at,
        "updated_at": at,
    }
    if source == "card":  # the payment itself carries the provider's id (unique: one row per provider payment)
        values.update(provider=card_store.PROVIDER, provider_payment_id=provider_payment_id)
    if payment.distribution_id is not None:
        await store.ensure_basket(session, payment.group_id, payment.distribution_id, payment.member_id)
    await store.insert_payment(session, values)
    await store.record_transition(
        session,
        creation(ManualPayment(row_id, kind, State.RECEIVED, Method.CARD, amount), by=None, at=at, note=note),
    )
    return values


def _row_id(*parts: object) -> UUID:
    return uuid.uuid5(_ROWS, ":".join(str(p) for p in parts))


# -- outcomes of an attempt ----------------------------------------------------------------------


async def _apply_outcome(session: AsyncSession, payment: Row, notice: PaymentOutcome) -> str:
    state = CardState(payment.state)
    after = domain.advance(state, notice.outcome)
    if after is None:
        return f"{notice.outcome} ignored: the payment is {state}"
    if after is CardState.SUCCEEDED:
        try:
            domain.check_paid_amount(money_of(payment), notice.amount, notice.currency)
        except domain.AmountMismatch as exc:
            raise Park(str(exc), payment.payment_id) from None
        await _succeed(session, payment, notice.source.event_id, "paid")
        return "succeeded"
    at = now()
    reason = notice.reason or after.value
    await _move(session, payment, after, notice.source.event_id, notice.reason, at, failure_reason=reason)
    # A failed attempt that then expires was already reported once.
    if not await card_store.due_paid_otherwise(session, payment.due_id) and not (
        state is CardState.FAILED and after is CardState.EXPIRED
    ):
        await outbox.add(
            session,
            CardPaymentFailed(
                **store.payment_event_fields(payment),
                amount=money_of(payment),
                provider_payment_id=payment.payment_intent_id
                or notice.source.payment_intent
                or payment.checkout_session_id,
                reason=reason,
                retry_url=payment.checkout_url if after is CardState.FAILED else None,
            ),
        )
    return after.value


async def _succeed(session: AsyncSession, payment: Row, provider_event_id: str, note: str) -> Row:
    """initiated|failed|expired -> succeeded: the money is received. CardPaymentSucceeded (orders
    confirms the order) and PaymentReceived with method card (the ledger credits the member), a
    received `payments` row (baskets, takings), and the fee to fetch in the background. Returns
    the payment as it is now."""
    at = now()
    await _move(session, payment, CardState.SUCCEEDED, provider_event_id, note, at, failure_reason=None)
    current = await card_store.card_payment_by_id(session, payment.payment_id)
    assert current is not None
    provider_payment_id = current.payment_intent_id or current.checkout_session_id or str(current.payment_id)
    amount = money_of(current)
    await _money_row(
        session,
        current,
        row_id=current.payment_id,
        kind=Kind.PAYMENT,
        amount=amount,
        source="card",
        reason=None,
        note=f"card payment confirmed by the provider ({provider_event_id})",
        at=at,
        provider_payment_id=provider_payment_id,
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
    await card_store.queue_fee_job(session, current.payment_id)
    return current


async def _implied_success(session: AsyncSession, payment: Row, event_id: str, what: str) -> tuple[Row, list[str]]:
    """A refund or dispute exists only for money taken: the success first when it is not known."""
    if not domain.implies_success(CardState(payment.state)):
        return payment, []
    current = await _succeed(session, payment, event_id, f"implied by a {what} notification that came first")
    return current, ["success implied"]


# -- refunds -----------------------------------------------------------------------------------


async def _apply_refund(session: AsyncSession, payment: Row, notice: ChargeRefunded) -> str:
    paid = money_of(payment)
    if notice.currency and notice.currency.upper() != paid.currency:
        raise Park(f"refund in {notice.currency.upper()} on a payment in {paid.currency}", payment.payment_id)
    if notice.amount_refunded is None:
        raise Park("the refund notification carries no amount_refunded", payment.payment_id)
    if (
        payment.refund_failed_after is not None
        and notice.source.created is not None
        and notice.source.created < payment.refund_failed_after
    ):
        # Its total still counts a refund that failed since: news older than what we know.
        return f"refunded total {notice.amount_refunded} predates a refund failure already applied"
    try:
        delta = domain.refund_delta(
            paid, notice.amount_refunded, Money(amount=payment.amount_refunded, currency=paid.currency)
        )
    except domain.RefundOverflow as exc:
        raise Park(str(exc), payment.payment_id) from None
    payment, notes = await _implied_success(session, payment, notice.source.event_id, "refund")
    if delta.new.is_zero:
        return "; ".join([*notes, f"refunded total {notice.amount_refunded} already recorded"])
    at = now()
    after = domain.after_refund_change(CardState(payment.state), paid, delta.cumulative)
    await _move(
        session,
        payment,
        after,
        notice.source.event_id,
        f"refunded {delta.new.amount} (in all {delta.cumulative.amount})",
        at,
        amount_refunded=delta.cumulative.amount,
    )
    refund_id = _row_id("card_refund", payment.payment_id, delta.cumulative.amount, notice.source.event_id)
    values = await _money_row(
        session,
        payment,
        row_id=refund_id,
        kind=Kind.REFUND,
        amount=-delta.new,
        source="card_refund",
        reason="card refund",
        note=f"card refund confirmed by the provider ({notice.source.event_id})",
        at=at,
    )
    await outbox.add(
        session,
        PaymentRefunded(
            **store.payment_event_fields(payment),
            refund_id=values["payment_id"],
            amount=delta.new,
            method=PaymentMethod.CARD,
            reason="card refund",
        ),
    )
    return "; ".join([*notes, f"refunded {delta.new.amount}"])


async def _apply_refund_failure(session: AsyncSession, payment: Row, notice: RefundFailed) -> str:
    """The refund's money did not reach the card: it is back on the provider balance, so the
    member is credited it back (once per refund) and the refunded total goes down."""
    paid = money_of(payment)
    if notice.currency.upper() != paid.currency:
        raise Park(f"refund in {notice.currency.upper()} on a payment in {paid.currency}", payment.payment_id)
    if notice.amount <= 0:
        raise Park(f"a failed refund of {notice.amount}", payment.payment_id)
    new = await card_store.record_failed_refund(
        session,
        {
            "refund_id": notice.refund_id,
            "payment_id": payment.payment_id,
            "amount": notice.amount,
            "currency": paid.currency,
            "status": notice.status,
            "provider_event_id": notice.source.event_id,
        },
    )
    if not new:
        return f"refund {notice.refund_id} already recorded as {notice.status}"
    if payment.amount_refunded < notice.amount:
        # The refund itself is not recorded yet (its charge.refunded comes later): wait for it.
        # Parking undoes the row above (the effect runs in a savepoint).
        raise Park(f"refund {notice.refund_id} failed before it was recorded", payment.payment_id)
    at = now()
    given_back = Money(amount=notice.amount, currency=paid.currency)
    remaining = Money(amount=payment.amount_refunded - notice.amount, currency=paid.currency)
    after = domain.after_refund_change(CardState(payment.state), paid, remaining)
    await _move(
        session,
        payment,
        after,
        notice.source.event_id,
        f"refund {notice.refund_id} {notice.status}: {notice.amount} given back ({notice.reason})".strip(),
        at,
        amount_refunded=remaining.amount,
        refund_failed_after=max(notice.source.created or 0, payment.refund_failed_after or 0),
    )
    values = await _money_row(
        session,
        payment,
        row_id=_row_id("card_refund_failed", notice.refund_id),
        kind=Kind.PAYMENT,
        amount=given_back,
        source="card_refund_failed",
        reason=f"card refund {notice.status}",
        note=f"card refund {notice.refund_id} {notice.status} at the provider ({notice.source.event_id})",
        at=at,
    )
    await outbox.add(
        session,
        PaymentReceived(
            **store.payment_event_fields(values),
            amount=given_back,
            method=PaymentMethod.CARD,
            label=f"card refund {notice.refund_id} {notice.status}: not given back to the card",
        ),
    )
    return f"refund {notice.refund_id} {notice.status}: {notice.amount} credited back"


# -- disputes ----------------------------------------------------------------------------------


async def _apply_dispute(session: AsyncSession, payment: Row, notice: DisputeChanged) -> str:
    payment, notes = await _implied_success(session, payment, notice.source.event_id, "dispute")
    paid = money_of(payment)
    at = now()
    disputed = (
        Money(amount=notice.amount, currency=notice.currency.upper()) if notice.amount and notice.currency else paid
    )
    provider_payment_id = payment.payment_intent_id or notice.source.payment_intent or ""
    first = payment.dispute_id != notice.dispute_id
    status_changed = first or payment.dispute_status != notice.status
    refunded = Money(amount=payment.amount_refunded, currency=paid.currency)
    after = domain.after_dispute(CardState(payment.state), notice.status, paid, refunded)
    values: dict[str, Any] = {"dispute_status": notice.status}
    if first:
        values.update(dispute_id=notice.dispute_id, dispute_reason=notice.reason, disputed_at=at)
    if after is not CardState(payment.state):
        await _move(session, payment, after, notice.source.event_id, f"dispute {notice.status}", at, **values)
    elif status_changed:
        await card_store.update_card_payment(session, payment.payment_id, **values)
        await card_store.record_history(
            session, payment.payment_id, after, after, notice.source.event_id, f"dispute {notice.status}", at
        )
    about = _DisputeFields(
        **store.payment_event_fields(payment), provider_payment_id=provider_payment_id, dispute_id=notice.dispute_id
    )
    if first:
        log.warning(
            "card payment %s of group %s disputed (%s): coordinators are told",
            payment.payment_id,
            payment.group_id,
            notice.reason,
        )
        await outbox.add(
            session,
            CardPaymentDisputed(**about, amount=disputed, reason=notice.reason, status=notice.status),
        )
        notes.append("dispute recorded")
    elif status_changed:
        await outbox.add(
            session,
            CardDisputeUpdated(
                **about,
                amount=disputed,
                status=notice.status,
                reason=notice.reason,
                closed=domain.dispute_outcome(notice.status) is not domain.DisputeOutcome.OPEN,
            ),
        )
        notes.append(f"dispute {notice.status}")
    for funds in notice.funds:
        notes.extend(await _dispute_funds(session, payment, notice, funds, about, at))
    if notice.step is DisputeStep.CLOSED and not notes:
        notes.append("dispute closure already recorded")
    return "; ".join(notes) or f"dispute {notice.status} already recorded"


async def _dispute_funds(
    session: AsyncSession,
    payment: Row,
    notice: DisputeChanged,
    funds: DisputeFunds,
    about: _DisputeFields,
    at: datetime,
) -> list[str]:
    """One balance transaction of the dispute, once: withdrawn (the member's payment no longer
    stands: debited, the group bears the fee) or reinstated (credited back)."""
    paid = money_of(payment)
    if funds.currency.upper() != paid.currency:
        raise Park(f"dispute funds in {funds.currency.upper()} on a payment in {paid.currency}", payment.payment_id)
    if funds.amount == 0:
        return []
    new = await card_store.record_dispute_funds(
        session,
        {
            "transaction_id": funds.transaction_id,
            "payment_id": payment.payment_id,
            "dispute_id": notice.dispute_id,
            "amount": funds.amount,
            "fee": funds.fee,
            "currency": paid.currency,
            "provider_event_id": notice.source.event_id,
        },
    )
    if not new:
        return []
    moved = Money(amount=abs(funds.amount), currency=paid.currency)
    withdrawn = funds.amount < 0
    await _money_row(
        session,
        payment,
        row_id=_row_id("card_dispute", funds.transaction_id),
        kind=Kind.REFUND if withdrawn else Kind.PAYMENT,
        amount=-moved if withdrawn else moved,
        source="card_dispute",
        reason=f"card dispute {notice.dispute_id}: funds {'withdrawn' if withdrawn else 'reinstated'}",
        note=f"card dispute funds {'withdrawn' if withdrawn else 'reinstated'} ({notice.source.event_id})",
        at=at,
    )
    moved_by = _DisputeFundsFields(**about, amount=moved, transaction_id=funds.transaction_id)  # keyed by it
    if withdrawn:
        fee = Money(amount=max(funds.fee, 0), currency=paid.currency)
        await outbox.add(session, CardDisputeFundsWithdrawn(**moved_by, fee=fee))
        return [f"funds withdrawn {moved.amount}, fee {fee.amount}"]
    fee_returned = Money(amount=max(-funds.fee, 0), currency=paid.currency)
    await outbox.add(session, CardDisputeFundsReinstated(**moved_by, fee_returned=fee_returned))
    return [f"funds reinstated {moved.amount}, fee returned {fee_returned.amount}"]
