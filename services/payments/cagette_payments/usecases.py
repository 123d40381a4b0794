"""Use cases: each runs inside the caller's database transaction, checks who may do it, asks the
pure domain what follows, writes the rows and the events (outbox) together. Any refusal raises
before anything is written, or rolls the whole transaction back: a refused request changes
nothing and publishes nothing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    BasketUnvalidated,
    BasketValidated,
    Event,
    Money,
    PaymentCancelled,
    PaymentDeclared,
    PaymentReceived,
    PaymentRefunded,
    PaymentReversed,
)
from cagette_runtime import outbox
from cagette_runtime.auth import Principal
from cagette_runtime.clock import now
from cagette_runtime.errors import Conflict, Invalid, NotFound

from . import store
from .domain import references, states
from .domain.baskets import BasketState, Figures, RefundTooLarge, check_overpayment_refund, figures
from .domain.methods import DECLARED_METHODS, MANUAL_METHODS, REFERENCED_METHODS, Method
from .domain.states import Kind, State
from .domain.takings import MemberBasket, Takings, takings

# -- shared checks --------------------------------------------------------------------------


async def group_currency(session: AsyncSession, group_id: UUID, *, for_writing: bool = True) -> str:
    """The group's currency. Writing money needs the group's settings and payments on (R1);
    reading and validating need only the settings."""
    group = await store.get_group(session, group_id)
    if group is None:
        if not for_writing:
            raise NotFound(f"the payments service knows no group {group_id}")
        raise Conflict(f"the payments service has not received the settings of group {group_id} yet")
    if for_writing and not group.payments_enabled:
        raise Conflict(f"payment management is off in group {group_id} (R1)")
    return group.currency


async def require_member(session: AsyncSession, group_id: UUID, member_id: UUID) -> Row:
    member = await store.get_member(session, group_id, member_id)
    if member is None:
        raise NotFound(f"member {member_id} is not a member of group {group_id}")
    return member


def require_amount(amount: Money, currency: str, what: str = "amount") -> None:
    try:
        states.require_positive(amount, currency, what)
    except states.BadAmount as exc:
        raise Invalid(str(exc)) from None


def require_manual_method(method: Method) -> None:
    if method not in MANUAL_METHODS:
        raise Invalid(f"{method} cannot be recorded by hand; use one of {', '.join(sorted(MANUAL_METHODS))}")


def received_event(row: dict[str, Any], *, by: UUID | None, declared_amount: Money | None = None) -> PaymentReceived:
    method = Method(row["method"])
    return PaymentReceived(
        **store.payment_event_fields(row),
        amount=Money(amount=row["amount"], currency=row["currency"]),
        method=method.contract_method,
        card_terminal=method is Method.CARD_TERMINAL,
        declared_amount=declared_amount,
        reference=references.format_reference(row["reference"]) if row.get("reference") else None,
        label=row.get("label"),
        recorded_by=by,
    )


def refunded_event(row: dict[str, Any], *, by: UUID, refunded_payment_id: UUID | None) -> PaymentRefunded:
    method = Method(row["method"])
    common = store.payment_event_fields(row)
    common["payment_id"] = refunded_payment_id or row["payment_id"]
    return PaymentRefunded(
        **common,
        refund_id=row["payment_id"],
        amount=Money(amount=-row["amount"], currency=row["currency"]),
        method=method.contract_method,
        card_terminal=method is Method.CARD_TERMINAL,
        reason=row.get("reason") or "",
        recorded_by=by,
        reverses_payment_id=row.get("reverses_payment_id"),
    )


async def _create(
    session: AsyncSession, values: dict[str, Any], by: UUID | None, event: Event | None, note: str = ""
) -> None:
    """Write a new payment row (already inserted by the caller), its creation transition and event."""
    payment = states.Payment(
        values["payment_id"],
        Kind(values["kind"]),
        State(values["state"]),
        Method(values["method"]),
        Money(amount=values["amount"], currency=values["currency"]),
    )
    await store.record_transition(session, states.creation(payment, by=by, at=values["created_at"], note=note))
    if event is not None:
        await outbox.add(session, event)


def _new_payment_values(
    group_id: UUID, member_id: UUID, kind: Kind, state: State, amount: Money, **values: Any
) -> dict[str, Any]:
    """A new payment's row; `amount` signed (a refund's is negative)."""
    at = now()
    return {
        "payment_id": uuid4(),
        "group_id": group_id,
        "member_id": member_id,
        "kind": kind.value,
        "state": state.value,
        "amount": amount.amount,
        "currency": amount.currency,
        "created_at": at,
        "updated_at": at,
        "order_id": None,
        "amendment_id": None,
        "subscription_id": None,
        "distribution_id": None,
        "reference": None,
        "label": None,
        "reason": None,
        "declared_amount": None,
        "reverses_payment_id": None,
        **values,
    }


# -- from the orders events -----------------------------------------------------------------


async def declare_for_order(
    session: AsyncSession,
    *,
    group_id: UUID,
    member_id: UUID,
    method: Method,
    amount: Money,
    source: str,
    item_id: UUID,
    order_id: UUID,
    amendment_id: UUID | None,
    distribution_id: UUID | None,
) -> None:
    """A declared (pending) payment for an order or amendment paid by cheque, transfer, cash or on
    the spot, with its own RF reference for cheques and transfers; PaymentDeclared in the outbox."""
    if method not in DECLARED_METHODS:
        return
    group = await store.get_group(session, group_id)
    if group is not None and not group.payments_enabled:
        return
    if distribution_id is not None:
        await store.ensure_basket(session, group_id, distribution_id, member_id)
        await store.lock_basket(session, group_id, distribution_id, member_id)
    values = _new_payment_values(
        group_id,
        member_id,
        Kind.PAYMENT,
        State.DECLARED,
        amount,
        method=method.value,
        declared_amount=amount.amount,
        order_id=order_id,
        amendment_id=amendment_id,
        distribution_id=distribution_id,
        source=source,
        source_key=f"{source}:{item_id}",
    )
    del values["reference"]
    reference = await store.insert_payment(session, values, with_reference=method in REFERENCED_METHODS)
    event = PaymentDeclared(
        **store.payment_event_fields(values),
        amount=amount,
        method=method.contract_method,
        reference=references.format_reference(reference) if reference else None,
    )
    await _create(session, values, None, event, note=f"declared with the {source}")


# -- manual entry (R7, R22) -----------------------------------------------------------------


@dataclass
class Link:
    order_id: UUID | None = None
    amendment_id: UUID | None = None
    subscription_id: UUID | None = None
    distribution_id: UUID | None = None


async def resolve_link(
    session: AsyncSession,
    group_id: UUID,
    member_id: UUID,
    *,
    order_id: UUID | None,
    subscription_id: UUID | None,
    distribution_id: UUID | None,
) -> Link:
    if order_id is not None and subscription_id is not None:
        raise Invalid("link a payment to an order or to a subscription, not both")
    link = Link(distribution_id=distribution_id)
    if order_id is not None:
        item = await store.get_owed(session, group_id, order_id)
        if item is None or item.kind != "order" or item.member_id != member_id:
            raise Invalid(f"order {order_id} is not an order of member {member_id} in group {group_id}")
        if distribution_id is not None and item.distribution_id != distribution_id:
            raise Invalid(f"order {order_id} is not for distribution {distribution_id}")
        link.order_id, link.distribution_id = order_id, item.distribution_id
    if subscription_id is not None:
        item = await store.get_owed(session, group_id, subscription_id)
        if item is None or item.kind != "subscription" or item.member_id != member_id:
            raise Invalid(
                f"subscription {subscription_id} is not a subscription of member {member_id} in group {group_id}"
            )
        link.subscription_id = subscription_id
    return link


async def visible_payment(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    payment_id: UUID,
    find: Callable[[AsyncSession, UUID, UUID], Awaitable[Row | None]] = store.get_payment,
    what: str = "payment",
) -> Row:
    """The group's payment (`find` reads it) as its member or a coordinator may see it."""
    principal.require_group_member(group_id)
    row = await find(session, group_id, payment_id)
    if row is None:
        raise NotFound(f"no {what} {payment_id} in group {group_id}")
    principal.require_self_or_coordinator(group_id, row.member_id)
    return row


async def _lock_basket_of(session: AsyncSession, group_id: UUID, member_id: UUID, distribution_id: UUID | None) -> None:
    """Lock the basket a payment goes to (it must exist: a basket comes from an order)."""
    if distribution_id is not None and await store.lock_basket(session, group_id, distribution_id, member_id) is None:
        raise Invalid(f"member {member_id} has no basket for distribution {distribution_id} in group {group_id}")


async def _written(session: AsyncSession, group_id: UUID, payment_id: UUID) -> Row:
    """The payment this transaction has just written or changed (so it exists)."""
    row = await store.get_payment(session, group_id, payment_id)
    if row is None:
        raise RuntimeError(f"payment {payment_id} written in this transaction is not found")
    return row


@dataclass
class Recorded:
    payment: Row
    created: bool


@dataclass(frozen=True, kw_only=True)
class Entry:
    """Money a coordinator records by hand (R7, R22), as received or given back."""

    method: Method
    amount: Money  # positive: for a refund, the money given back
    paid_on: date | None = None
    label: str | None = None
    distribution_id: UUID | None = None
    client_key: str | None = None
    # The request's fingerprint: its client key used again for another request is refused.
    request_hash: str | None = None


@dataclass(frozen=True, kw_only=True)
class PaymentEntry(Entry):
    """A payment received, linked to one of the member's orders or subscriptions if given."""

    order_id: UUID | None = None
    subscription_id: UUID | None = None
    source: str = "manual"


@dataclass(frozen=True, kw_only=True)
class RefundEntry(Entry):
    """Money given back, with its reason; `payment_id`: the payment it gives back, if one."""

    reason: str
    payment_id: UUID | None = None
    overpayment_only: bool = False  # at most what the basket (`distribution_id`) was overpaid


@dataclass(frozen=True)
class _Recording:
    """An entry being recorded by a coordinator for a member, in the group's currency."""

    principal: Principal
    group_id: UUID
    member_id: UUID
    entry: Entry
    currency: str

    def values(self, kind: Kind, amount: Money, **values: Any) -> dict[str, Any]:
        """The row of the received entry (`amount` signed); `values` add to or override what the
        entry gives."""
        entry = self.entry
        given = {
            "method": entry.method.value,
            "label": entry.label,
            "paid_on": entry.paid_on or store.today(),
            "source_key": f"client:{entry.client_key}" if entry.client_key else None,
            "request_hash": entry.request_hash,
            "created_by": self.principal.user_id,
        }
        return _new_payment_values(self.group_id, self.member_id, kind, State.RECEIVED, amount, **(given | values))

    async def insert(self, session: AsyncSession, values: dict[str, Any], event: Event, note: str = "") -> Recorded:
        """Write the entry, once per client key: the same key again answers the entry it recorded
        (if the request is the same)."""
        key = self.entry.client_key
        if key:
            if not await store.insert_payment_once(session, values):
                return await _replay(session, self.group_id, f"client:{key}", self.entry.request_hash)
        else:
            await store.insert_payment(session, values)
        await _create(session, values, self.principal.user_id, event, note=note)
        return Recorded(await _written(session, self.group_id, values["payment_id"]), True)


async def _checked_entry(
    session: AsyncSession, principal: Principal, group_id: UUID, member_id: UUID, entry: Entry, what: str
) -> _Recording:
    """The entry once it may be recorded: by a coordinator, in a group with payments on, for a
    member, by a manual method, for a positive amount."""
    principal.require_coordinator(group_id)
    currency = await group_currency(session, group_id)
    await require_member(session, group_id, member_id)
    require_manual_method(entry.method)
    require_amount(entry.amount, currency, what)
    return _Recording(principal, group_id, member_id, entry, currency)


async def record_payment(
    session: AsyncSession, principal: Principal, group_id: UUID, member_id: UUID, entry: PaymentEntry
) -> Recorded:
    """A payment received, recorded by a coordinator: already received, credits the member."""
    recording = await _checked_entry(session, principal, group_id, member_id, entry, "amount")
    link = await resolve_link(
        session,
        group_id,
        member_id,
        order_id=entry.order_id,
        subscription_id=entry.subscription_id,
        distribution_id=entry.distribution_id,
    )
    await _lock_basket_of(session, group_id, member_id, link.distribution_id)
    values = recording.values(
        Kind.PAYMENT,
        entry.amount,
        order_id=link.order_id,
        subscription_id=link.subscription_id,
        distribution_id=link.distribution_id,
        source=entry.source,
    )
    return await recording.insert(session, values, received_event(values, by=principal.user_id))


async def _replay(session: AsyncSession, group_id: UUID, source_key: str, request_hash: str | None) -> Recorded:
    existing = await store.payment_by_source(session, group_id, source_key)
    assert existing is not None
    if existing.request_hash != request_hash:
        raise Conflict(f"client key {source_key.split(':', 1)[1]!r} was already used for a different request")
    return Recorded(existing, False)


async def record_refund(
    session: AsyncSession, principal: Principal, group_id: UUID, member_id: UUID, entry: RefundEntry
) -> Recorded:
    """Money given back to the member: a negative payment with a reason; PaymentRefunded."""
    recording = await _checked_entry(session, principal, group_id, member_id, entry, "the refunded amount")
    reason = entry.reason.strip()
    if not reason:
        raise Invalid("a refund needs a reason")
    if entry.payment_id is not None:
        refunded = await store.get_payment(session, group_id, entry.payment_id)
        if refunded is None or refunded.member_id != member_id or refunded.kind != Kind.PAYMENT.value:
            raise Invalid(f"payment {entry.payment_id} is not a payment of member {member_id} in group {group_id}")
        if refunded.state != State.RECEIVED.value:
            raise Conflict(f"payment {entry.payment_id} is {refunded.state}: only money received can be given back")
    await _lock_basket_of(session, group_id, member_id, entry.distribution_id)
    if entry.overpayment_only:
        assert entry.distribution_id is not None
        current = await basket_figures(session, group_id, entry.distribution_id, member_id, recording.currency)
        try:
            check_overpayment_refund(current, entry.amount)
        except RefundTooLarge as exc:
            raise Invalid(str(exc)) from None
    values = recording.values(
        Kind.REFUND,
        -entry.amount,
        reason=reason,
        distribution_id=entry.distribution_id,
        source="refund",
    )
    event = refunded_event(values, by=principal.user_id, refunded_payment_id=entry.payment_id)
    return await recording.insert(session, values, event, note=reason)


# -- transitions (B3) -----------------------------------------------------------------------


async def _payment_for_change(session: AsyncSession, group_id: UUID, payment_id: UUID) -> Row:
    """The payment locked for a change, its basket locked first (same lock order everywhere)."""
    row = await store.get_payment(session, group_id, payment_id)
    if row is None:
        raise NotFound(f"no payment {payment_id} in group {group_id}")
    if row.distribution_id is not None:
        await store.lock_basket(session, group_id, row.distribution_id, row.member_id)
    locked = await store.lock_payment(session, group_id, payment_id)
    assert locked is not None
    return locked


def _row_dict(row: Row) -> dict[str, Any]:
    return dict(row._mapping)


@dataclass(frozen=True, kw_only=True)
class Confirmation:
    """A declared payment confirmed as received: the amount and the method actually received
    where they are not the declared ones (R20)."""

    amount: Money | None = None
    method: Method | None = None
    label: str | None = None
    note: str = ""


async def confirm_payment(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    payment_id: UUID,
    received: Confirmation,
    at: datetime | None = None,
) -> Row:
    """declared -> received, with the amount and the method actually received (R20)."""
    principal.require_coordinator(group_id)
    row = await _payment_for_change(session, group_id, payment_id)
    await _confirm_locked(session, principal, row, received, at or now())
    return await _written(session, group_id, payment_id)


async def _confirm_locked(
    session: AsyncSession, principal: Principal, row: Row, received: Confirmation, at: datetime
) -> None:
    amount, method, label = received.amount, received.method, received.label
    try:
        after, transition = states.confirm(
            store.payment_of(row), by=principal.user_id, at=at, amount=amount, method=method, note=received.note
        )
    except states.TransitionRefused as exc:
        raise Conflict(str(exc)) from None
    except states.BadCorrection as exc:
        raise Invalid(str(exc)) from None
    await store.save_state(session, after, at)
    if label is not None:
        await store.set_label(session, row.payment_id, label)
    await store.record_transition(session, transition)
    values = _row_dict(row) | {"state": after.state.value, "amount": after.amount.amount, "method": after.method.value}
    if label is not None:
        values["label"] = label
    declared = Money(amount=row.declared_amount, currency=row.currency) if row.declared_amount is not None else None
    await outbox.add(session, received_event(values, by=principal.user_id, declared_amount=declared))


async def cancel_payment(
    session: AsyncSession, principal: Principal, group_id: UUID, payment_id: UUID, *, reason: str
) -> Row:
    """declared -> cancelled: the declared payment will not come; PaymentCancelled."""
    principal.require_coordinator(group_id)
    row = await _payment_for_change(session, group_id, payment_id)
    at = now()
    try:
        after, transition = states.cancel(store.payment_of(row), by=principal.user_id, at=at, note=reason)
    except states.TransitionRefused as exc:
        raise Conflict(str(exc)) from None
    await store.save_state(session, after, at)
    await store.record_transition(session, transition)
    await outbox.add(
        session,
        PaymentCancelled(
            **store.payment_event_fields(row),
            amount=Money(amount=row.amount, currency=row.currency),
            method=Method(row.method).contract_method,
            reason=reason,
            recorded_by=principal.user_id,
        ),
    )
    return await _written(session, group_id, payment_id)


async def reverse_payment(
    session: AsyncSession, principal: Principal, group_id: UUID, payment_id: UUID, *, reason: str
) -> Row:
    """Correct a received payment recorded by mistake (on the wrong member, say) with a new
    reversing (negative) payment; the original stays as it was. A correction, not a refund: no
    money moved back, so PaymentReversed (the ledger reverses the payment's own transaction, the
    member is sent no refund email), never PaymentRefunded."""
    principal.require_coordinator(group_id)
    if not reason.strip():
        raise Invalid("a reversal needs a reason")
    row = await _payment_for_change(session, group_id, payment_id)
    try:
        amount = states.reversal_amount(store.payment_of(row))
    except states.TransitionRefused as exc:
        raise Conflict(str(exc)) from None
    if await store.reversal_of(session, payment_id) is not None:
        raise Conflict(f"payment {payment_id} was already reversed")
    values = _new_payment_values(
        group_id,
        row.member_id,
        Kind.REFUND,
        State.RECEIVED,
        amount,
        method=row.method,
        reason=reason.strip(),
        paid_on=store.today(),
        order_id=row.order_id,
        amendment_id=row.amendment_id,
        subscription_id=row.subscription_id,
        distribution_id=row.distribution_id,
        reverses_payment_id=payment_id,
        source="reversal",
        source_key=f"reversal:{payment_id}",
        created_by=principal.user_id,
    )
    await store.insert_payment(session, values)
    method = Method(row.method)
    fields = store.payment_event_fields(values)
    fields["payment_id"] = payment_id  # the reversed payment; the reversing entry is reversal_id
    event = PaymentReversed(
        **fields,
        reversal_id=values["payment_id"],
        amount=-amount,
        method=method.contract_method,
        card_terminal=method is Method.CARD_TERMINAL,
        reason=reason.strip(),
        recorded_by=principal.user_id,
    )
    await _create(session, values, principal.user_id, event, note=reason.strip())
    return await _written(session, group_id, values["payment_id"])


# -- baskets and distribution validation (R20) ----------------------------------------------


async def basket_figures(
    session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID, currency: str
) -> Figures:
    owed = await store.basket_owed(session, group_id, distribution_id, member_id)
    paid = await store.basket_payments(session, group_id, distribution_id, member_id)
    return _figures(owed, paid, currency)


def _figures(owed: list[Row], paid: list[Row], currency: str) -> Figures:
    """The figures of what the owed rows ask and the payment rows bring."""
    return figures([store.owed_of(r) for r in owed], [store.line_of(r) for r in paid], currency)


def _by(rows: Iterable[Row], column: str) -> defaultdict[UUID, list[Row]]:
    """The rows by their value of `column` (in their order)."""
    grouped: defaultdict[UUID, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[getattr(row, column)].append(row)
    return grouped


@dataclass
class BasketView:
    basket: Row
    name: str
    figures: Figures
    owed: list[Row] = field(default_factory=list)
    payments: list[Row] = field(default_factory=list)


async def distribution_view(session: AsyncSession, group_id: UUID, distribution_id: UUID) -> list[BasketView]:
    currency = await group_currency(session, group_id, for_writing=False)
    found = await store.distribution_baskets(session, group_id, distribution_id)
    owed_by = _by(await store.basket_owed(session, group_id, distribution_id), "member_id")
    paid_by = _by(await store.basket_payments(session, group_id, distribution_id), "member_id")
    names = await store.member_names(session, group_id, [b.member_id for b in found])
    return [_basket_view(b, names, owed_by[b.member_id], paid_by[b.member_id], currency) for b in found]


def _basket_view(basket: Row, names: dict[UUID, str], owed: list[Row], paid: list[Row], currency: str) -> BasketView:
    return BasketView(basket, names.get(basket.member_id, ""), _figures(owed, paid, currency), owed, paid)


async def basket_view(session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID) -> BasketView:
    currency = await group_currency(session, group_id, for_writing=False)
    found = await store.get_basket(session, group_id, distribution_id, member_id)
    if found is None:
        raise NotFound(f"member {member_id} has no basket for distribution {distribution_id} in group {group_id}")
    owed = await store.basket_owed(session, group_id, distribution_id, member_id)
    paid = await store.basket_payments(session, group_id, distribution_id, member_id)
    return _basket_view(found, await store.member_names(session, group_id, [member_id]), owed, paid, currency)


async def _lock_basket_for_validation(
    session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID
) -> Row:
    basket = await store.lock_basket(session, group_id, distribution_id, member_id)
    if basket is None:
        raise NotFound(f"member {member_id} has no basket for distribution {distribution_id} in group {group_id}")
    if basket.state == BasketState.VALIDATED.value:
        raise Conflict(f"the basket of member {member_id} for distribution {distribution_id} is already validated")
    return basket


class _BasketFields(outbox.EventContext):
    """Which basket a (un)validation event is about."""

    distribution_id: UUID
    member_id: UUID


async def _set_basket_state(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    distribution_id: UUID,
    member_id: UUID,
    currency: str,
    state: BasketState,
) -> None:
    """The basket validated or unvalidated, its history keeping the difference it shows now; the
    event that says so."""
    current = await basket_figures(session, group_id, distribution_id, member_id, currency)
    by, at = principal.user_id, now()
    await store.set_basket_state(session, group_id, distribution_id, member_id, state, by, at, current.difference)
    basket = _BasketFields(**outbox.event_context(group_id), distribution_id=distribution_id, member_id=member_id)
    validated = state is BasketState.VALIDATED
    await outbox.add(
        session,
        BasketValidated(**basket, validated_by=by) if validated else BasketUnvalidated(**basket, unvalidated_by=by),
    )


async def _validate_locked(
    session: AsyncSession, principal: Principal, group_id: UUID, distribution_id: UUID, member_id: UUID, currency: str
) -> list[UUID]:
    """Validate a locked, not yet validated basket; return the pending payment ids instead when
    some remain (and change nothing)."""
    pending = [
        p.payment_id
        for p in await store.basket_payments(session, group_id, distribution_id, member_id)
        if p.state == State.DECLARED.value
    ]
    if pending:
        return pending
    await _set_basket_state(session, principal, group_id, distribution_id, member_id, currency, BasketState.VALIDATED)
    return []


async def validate_basket(
    session: AsyncSession, principal: Principal, group_id: UUID, distribution_id: UUID, member_id: UUID
) -> None:
    principal.require_coordinator(group_id)
    currency = await group_currency(session, group_id, for_writing=False)
    await _lock_basket_for_validation(session, group_id, distribution_id, member_id)
    pending = await _validate_locked(session, principal, group_id, distribution_id, member_id, currency)
    if pending:
        raise Conflict(
            "confirm or cancel the pending payments before validating the basket",
            pending_payment_ids=[str(p) for p in pending],
        )


async def confirm_all_and_validate(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    distribution_id: UUID,
    member_id: UUID,
    *,
    on_the_spot_method: Method | None,
) -> None:
    """The common case in one click: every pending payment confirmed as received for its declared
    amount (each confirmation recorded and published), then the basket validated."""
    principal.require_coordinator(group_id)
    currency = await group_currency(session, group_id, for_writing=False)
    await _lock_basket_for_validation(session, group_id, distribution_id, member_id)
    at = now()
    for row in await store.basket_payments(session, group_id, distribution_id, member_id, lock=True):
        if row.state == State.DECLARED.value:
            method = on_the_spot_method if row.method == Method.ON_THE_SPOT.value else None
            confirmation = Confirmation(method=method, note="confirmed with the basket validation")
            await _confirm_locked(session, principal, row, confirmation, at)
    pending = await _validate_locked(session, principal, group_id, distribution_id, member_id, currency)
    assert not pending


@dataclass
class DistributionValidation:
    validated: list[UUID] = field(default_factory=list)
    already_validated: list[UUID] = field(default_factory=list)
    blocked: list[dict[str, Any]] = field(default_factory=list)


async def validate_distribution(
    session: AsyncSession, principal: Principal, group_id: UUID, distribution_id: UUID
) -> DistributionValidation:
    """Validate every basket that can be; report the others (pending payments) and leave them."""
    principal.require_coordinator(group_id)
    currency = await group_currency(session, group_id, for_writing=False)
    found = await store.distribution_baskets(session, group_id, distribution_id, lock=True)
    if not found:
        raise NotFound(f"no basket for distribution {distribution_id} in group {group_id}")
    report = DistributionValidation()
    for basket in found:
        if basket.state == BasketState.VALIDATED.value:
            report.already_validated.append(basket.member_id)
            continue
        pending = await _validate_locked(session, principal, group_id, distribution_id, basket.member_id, currency)
        if pending:
            report.blocked.append(
                {"member_id": basket.member_id, "reason": "pending payments", "pending_payment_ids": pending}
            )
        else:
            report.validated.append(basket.member_id)
    return report


async def unvalidate_basket(
    session: AsyncSession, principal: Principal, group_id: UUID, distribution_id: UUID, member_id: UUID
) -> None:
    """Platform administrators only; payment states are left as they are."""
    principal.require_platform_admin()
    currency = await group_currency(session, group_id, for_writing=False)
    basket = await store.lock_basket(session, group_id, distribution_id, member_id)
    if basket is None:
        raise NotFound(f"member {member_id} has no basket for distribution {distribution_id} in group {group_id}")
    if basket.state != BasketState.VALIDATED.value:
        raise Conflict(f"the basket of member {member_id} for distribution {distribution_id} is not validated")
    await _set_basket_state(session, principal, group_id, distribution_id, member_id, currency, BasketState.TO_VALIDATE)


# -- mass entry for a subscription contract (R7, R22) ---------------------------------------


@dataclass(frozen=True, kw_only=True)
class MassRow(PaymentEntry):
    """One subscriber's payment of a mass entry (the entry's client key is the batch's)."""

    member_id: UUID


async def mass_entry(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    contract_id: UUID,
    *,
    client_key: str,
    request_hash: str,
    rows: list[MassRow],
) -> tuple[list[Row], bool]:
    """One received payment per row, all or nothing, idempotent by `client_key`. Returns the
    payments and whether they were created now (False: a replay of the same request)."""
    principal.require_coordinator(group_id)
    currency = await group_currency(session, group_id)
    subscriptions = await store.contract_subscriptions(session, group_id, contract_id)
    if not subscriptions:
        raise NotFound(f"no subscription to contract {contract_id} in group {group_id}")
    by_member: dict[UUID, list[UUID]] = defaultdict(list)
    for sub in subscriptions:
        by_member[sub.member_id].append(sub.item_id)
    problems: list[dict[str, Any]] = []
    resolved: list[UUID] = []
    for index, row in enumerate(rows):
        try:
            require_manual_method(row.method)
            require_amount(row.amount, currency)
            subs = by_member.get(row.member_id, [])
            if row.subscription_id is not None:
                if row.subscription_id not in subs:
                    raise Invalid(
                        f"subscription {row.subscription_id} is not member {row.member_id}'s to this contract"
                    )
                resolved.append(row.subscription_id)
            elif not subs:
                raise Invalid(f"member {row.member_id} has no subscription to contract {contract_id}")
            elif len(subs) > 1:
                raise Invalid(
                    f"member {row.member_id} has several subscriptions to this contract: give subscription_id"
                )
            else:
                resolved.append(subs[0])
        except Invalid as exc:
            problems.append({"row": index, "member_id": str(row.member_id), "error": exc.reason})
    if problems:
        raise Invalid(f"{len(problems)} of {len(rows)} rows are wrong; nothing was recorded", rows=problems)
    at = now()
    batch_id = uuid4()
    claimed = await store.claim_batch(
        session,
        {
            "batch_id": batch_id,
            "group_id": group_id,
            "client_key": client_key,
            "request_hash": request_hash,
            "contract_id": contract_id,
            "created_by": principal.user_id,
            "created_at": at,
        },
    )
    if not claimed:
        existing = await store.batch_by_key(session, group_id, client_key)
        assert existing is not None
        if existing.request_hash != request_hash:
            raise Conflict(f"client key {client_key!r} was already used for a different mass entry")
        return await store.batch_payments(session, existing.batch_id), False
    for index, (row, subscription_id) in enumerate(zip(rows, resolved, strict=True)):
        values = _Recording(principal, group_id, row.member_id, row, currency).values(
            Kind.PAYMENT,
            row.amount,
            subscription_id=subscription_id,
            source="mass_entry",
            source_key=f"batch:{batch_id}:{index:05d}",
            batch_id=batch_id,
        )
        await store.insert_payment(session, values)
        await _create(
            session,
            values,
            principal.user_id,
            received_event(values, by=principal.user_id),
            note=f"mass entry {client_key}",
        )
    return await store.batch_payments(session, batch_id), True


@dataclass
class SubscriptionView:
    subscription: Row
    name: str
    figures: Figures
    payments: list[Row]


async def contract_view(session: AsyncSession, group_id: UUID, contract_id: UUID) -> list[SubscriptionView]:
    currency = await group_currency(session, group_id, for_writing=False)
    subscriptions = await store.contract_subscriptions(session, group_id, contract_id)
    ids = [s.item_id for s in subscriptions]
    paid = _by(await store.subscription_payments(session, group_id, ids), "subscription_id")
    amendments = _by(await store.subscription_amendments(session, group_id, ids), "subscription_id")
    names = await store.member_names(session, group_id, [s.member_id for s in subscriptions])
    return [
        SubscriptionView(
            s,
            names.get(s.member_id, ""),
            _figures([s, *amendments[s.item_id]], paid[s.item_id], currency),
            paid[s.item_id],
        )
        for s in subscriptions
    ]


# -- takings (B8) ---------------------------------------------------------------------------


async def distribution_takings(session: AsyncSession, group_id: UUID, distribution_id: UUID) -> Takings:
    currency = await group_currency(session, group_id, for_writing=False)
    views = await distribution_view(session, group_id, distribution_id)
    if not views:
        raise NotFound(f"no basket for distribution {distribution_id} in group {group_id}")
    lines = [store.line_of(p) for view in views for p in view.payments]
    return takings(lines, [MemberBasket(v.basket.member_id, v.name, v.figures) for v in views], currency)
