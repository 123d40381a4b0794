"""Use cases of orders and subscriptions: each checks who may do it, asks the pure domain what
follows, and writes the rows and the events (outbox) in one transaction. A refusal raises
before anything is written, or rolls the transaction back: a refused request changes nothing.

Only a money-pot order (HOLD settlement) needs a second look: it is checked in one transaction
that also records the hold it is about to ask for (hold_requests), the ledger is asked for the
hold with no transaction open while waiting, then it is checked again and recorded in a second
transaction that marks the hold committed. If that last step fails, the hold is given back at
once; if orders dies or times out first, the reconciliation loop gives it back after the
request's deadline (holds.HoldReconciler). The ids of an attempt (order, subscription, hold)
are derived from it (domain.order_id_for, domain.hold_id_for), so a retry asks for the same
hold. Every other order is checked and recorded once, in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol, TypedDict, TypeVar
from uuid import UUID

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    CatalogCreated,
    CatalogProduct,
    CatalogRef,
    DistributionCreated,
    GroupSettingsChanged,
    Money,
    OrderAbandoned,
    OrderAmended,
    OrderAwaitingPayment,
    OrderConfirmed,
    OrderLine,
    OrderLineUndelivered,
    PaymentMethod,
    ProductCreated,
    SubscriptionAmended,
    SubscriptionConfirmed,
)
from cagette_contracts.ledger import HoldDecision, PlaceHold
from cagette_runtime import outbox
from cagette_runtime.auth import Principal
from cagette_runtime.clock import now
from cagette_runtime.correlation import current_correlation_id
from cagette_runtime.db import Database
from cagette_runtime.errors import Conflict, Forbidden, Invalid, NotFound, RetryLater
from cagette_runtime.pagination import PageRequest
from cagette_runtime.rows import record

from . import domain, store
from .store import DistributionOut, GroupOut, MemberOut, OrderOut, ProductOut, SubscriptionOut

log = logging.getLogger(__name__)


class Holds(Protocol):
    """The ledger's money-pot holds (adapter: holds.LedgerHolds): how long orders waits for a
    decision (`timeout`, seconds) and how long a granted hold lives (`lifetime`)."""

    @property
    def timeout(self) -> float: ...

    @property
    def lifetime(self) -> timedelta: ...

    async def place(self, hold: PlaceHold) -> HoldDecision: ...

    async def release(self, *, group_id: UUID, hold_id: UUID, reason: str) -> bool: ...


def settings_event(group: GroupOut) -> GroupSettingsChanged:
    return GroupSettingsChanged.model_validate(
        {**group.model_dump(mode="json"), **outbox.event_context(group.group_id)}
    )


# Catalogs, products and distributions are published for subscribers that show or plan them
# (docs/events.md): each creation writes its event in the transaction that writes its rows.


def _catalog_product(product: ProductOut) -> CatalogProduct:
    return CatalogProduct(
        product_id=product.product_id,
        name=product.name,
        unit=product.unit,
        unit_price=product.unit_price,
        fee_rate=domain.plain(product.fee_rate),
    )


async def publish_catalog_created(
    session: AsyncSession, group_id: UUID, catalog: CatalogRef, products: Sequence[ProductOut]
) -> None:
    await outbox.add(
        session,
        CatalogCreated(
            catalog_id=catalog.catalog_id,
            name=catalog.name,
            kind=catalog.kind,
            products=[_catalog_product(p) for p in products],
            **outbox.event_context(group_id),
        ),
    )


async def publish_product_created(
    session: AsyncSession, group_id: UUID, catalog: CatalogRef, product: ProductOut
) -> None:
    await outbox.add(
        session,
        ProductCreated(catalog=catalog, product=_catalog_product(product), **outbox.event_context(group_id)),
    )


async def publish_distribution_created(
    session: AsyncSession, distribution: DistributionOut, catalogs: Sequence[CatalogRef]
) -> None:
    await outbox.add(
        session,
        DistributionCreated(
            distribution_id=distribution.distribution_id,
            starts_at=distribution.starts_at,
            place=distribution.place,
            catalogs=list(catalogs),
            orders_open_at=distribution.orders_open_at,
            orders_close_at=distribution.orders_close_at,
            **outbox.event_context(distribution.group_id),
        ),
    )


async def require_registered(session: AsyncSession, principal: Principal, group_id: UUID) -> MemberOut:
    principal.require_group_member(group_id)
    member = await store.find_member(session, group_id, principal.user_id)
    if member is None:
        raise Forbidden(f"you are not a registered member of group {group_id}")
    return member


# ------------------------------------------------------------------ checked once, or twice around a hold


@dataclass(frozen=True)
class HoldRequest:
    """The money-pot hold an order, addition or subscription needs before it is recorded (R13, B2)."""

    attempt_id: UUID  # derived from the attempt (domain.hold_id_for): a retry asks for the same hold
    group_id: UUID
    member_id: UUID
    order_id: UUID  # what the hold is for: the order, or the subscription
    amount: Money


class _Checked(Protocol):
    @property
    def hold(self) -> HoldRequest | None: ...


Checked = TypeVar("Checked", bound=_Checked)


def _deadlines(holds: Holds) -> tuple[datetime, datetime]:
    """When the ledger must have decided (grant_before) and when a granted hold stops counting."""
    asked_at = now()
    return asked_at + timedelta(seconds=holds.timeout), asked_at + holds.lifetime


async def _ask_id(session: AsyncSession, request: HoldRequest) -> UUID:
    """The hold this attempt asks for now (domain.ask_hold_id): the open one if any."""
    return domain.ask_hold_id(request.attempt_id, await store.ended_asks(session, request.attempt_id))


class HoldUndecided(RetryLater):
    """The ledger answered without deciding: nothing is held under this hold id."""


async def _hold(
    holds: Holds, request: HoldRequest, hold_id: UUID, grant_before: datetime, expires_at: datetime
) -> UUID:
    """The ledger holds the amount on the member's pot, or the request is refused (409). A ledger
    that did not decide (the request came too late, it could not decide now) is not a verdict on
    the member's money: 503, try again."""
    # The request's own fields (group, member, order, amount), asked under `hold_id`.
    asked = record(
        PlaceHold,
        vars(request),
        hold_id=hold_id,
        grant_before=grant_before,
        expires_at=expires_at,
        correlation_id=current_correlation_id(),
    )
    decision = await holds.place(asked)
    if not decision.granted and not decision.decided:
        raise HoldUndecided(
            "the ledger could not check your money pot just now; nothing was held, please try again",
            retry_after=2,
            ledger_reason=decision.reason,
        )
    if not decision.granted:
        raise Conflict(
            f"your money pot does not cover this: {request.amount} needed, {decision.available} available. "
            "Top up your account first (this group does not allow negative money pots).",
            needed=request.amount.model_dump(),
            available=decision.available.model_dump(),
            ledger_reason=decision.reason,
        )
    return decision.hold_id


def _asked(request: HoldRequest, hold_id: UUID, grant_before: datetime, expires_at: datetime) -> store.AskedHold:
    # The request's own fields; what it is for is the hold's subject.
    return record(
        store.AskedHold,
        vars(request),
        hold_id=hold_id,
        subject_id=request.order_id,
        grant_before=grant_before,
        expires_at=expires_at,
    )


async def _commit_hold(session: AsyncSession, hold_id: UUID) -> None:
    """In the transaction that records the order: the hold is now the order's. Refused when the
    same attempt was recorded by a simultaneous request, or when the hold was given back."""
    already = await store.hold_resolved(session, hold_id, domain.HoldState.COMMITTED)
    if already is domain.HoldState.COMMITTED:
        raise Conflict("this order was just recorded by a simultaneous identical request; reload it")
    if already is not None:
        raise RetryLater(
            "your money-pot check took too long and its hold was given back; nothing was recorded, please try again",
            retry_after=1,
        )


async def give_back(database: Database, holds: Holds, group_id: UUID, hold_id: UUID, reason: str) -> bool:
    """Release a hold orders asked for whose order is not recorded (and never will be by this
    attempt). Nothing happens when its order was recorded meanwhile (a simultaneous retry of the
    same attempt) or it was given back already. The row stays locked while the release is
    published, so no request records an order on a hold being given back; if the broker does
    not take the release, the hold stays open for the reconciliation loop. True when released."""
    async with database.transaction() as session:
        if await store.lock_open_hold(session, hold_id) is None:
            return False
        if not await holds.release(group_id=group_id, hold_id=hold_id, reason=reason):
            return False
        await store.set_hold_state(session, hold_id, domain.HoldState.RELEASED)
    return True


async def give_back_lapsed_holds(database: Database, holds: Holds, *, asked_before: datetime, limit: int) -> int:
    """Reconciliation: every hold still open whose request's deadline passed before
    `asked_before` (the deadline plus a grace) belongs to an attempt that died before recording
    its order: give it back (ReleaseHold, idempotent on the ledger), or only mark it expired
    when its lifetime is over (the ledger expired it). Returns how many were resolved."""
    resolved = 0
    async with database.transaction() as session:
        for hold in await store.lock_lapsed_holds(session, asked_before, limit):
            if hold.expires_at <= now():
                await store.set_hold_state(session, hold.hold_id, domain.HoldState.EXPIRED)
            elif await holds.release(
                group_id=hold.group_id, hold_id=hold.hold_id, reason="its order was not recorded by the deadline"
            ):
                await store.set_hold_state(session, hold.hold_id, domain.HoldState.RELEASED)
            else:
                continue
            resolved += 1
    return resolved


async def _check_and_record(
    database: Database,
    holds: Holds,
    check: Callable[[AsyncSession], Awaitable[Checked]],
    record: Callable[[AsyncSession, Checked, UUID | None], Awaitable[None]],
) -> None:
    asked: HoldRequest | None = None
    hold_id: UUID | None = None
    try:
        async with database.transaction() as session:
            first = await check(session)
            if first.hold is None:
                await record(session, first, None)
                return
            ask_id = await _ask_id(session, first.hold)
            grant_before, expires_at = _deadlines(holds)
            # Recorded before asking, committed with the check: whatever happens next, the
            # reconciliation loop knows this hold may exist.
            if not await store.hold_asked(session, _asked(first.hold, ask_id, grant_before, expires_at)):
                raise RetryLater(
                    "your previous money-pot check for this basket just ended; please try again", retry_after=1
                )
        asked = first.hold
        try:
            hold_id = await _hold(holds, asked, ask_id, grant_before, expires_at)
        except (Conflict, HoldUndecided):  # nothing held: the attempt's next ask uses a new hold id
            async with database.transaction() as session:
                await store.hold_resolved(session, ask_id, domain.HoldState.REFUSED)
            raise
        async with database.transaction() as session:
            second = await check(session)
            if second.hold != asked or await _ask_id(session, second.hold) != hold_id:
                raise Conflict("your basket or its prices changed while it was being checked; please try again")
            await _commit_hold(session, hold_id)
            await record(session, second, hold_id)
    except BaseException as exc:
        if hold_id is not None and asked is not None:
            # The order was not recorded: give the held money back at once (unless a
            # simultaneous retry of the same attempt recorded it).
            try:
                await give_back(
                    database,
                    holds,
                    asked.group_id,
                    hold_id,
                    reason=f"order not recorded: {getattr(exc, 'reason', type(exc).__name__)}",
                )
            except Exception:  # the reconciliation loop gives it back; the caller gets the first error
                log.exception("could not give hold %s back now", hold_id)
        if isinstance(exc, IntegrityError):
            raise Conflict("this basket changed at the same time in another request; reload it and try again") from None
        raise


def _hold_for(
    payment: domain.Settlement | None,
    group_id: UUID,
    member_id: UUID,
    subject_id: UUID,
    step: str,
    amount: Money,
    lines: Sequence[OrderLine],
) -> HoldRequest | None:
    if payment is not domain.Settlement.HOLD:
        return None
    attempt_id = domain.hold_id_for(group_id, member_id, subject_id, step, amount, lines)
    return HoldRequest(attempt_id, group_id, member_id, subject_id, amount)


class _DistributionFields(TypedDict):
    distribution_id: UUID
    distribution_starts_at: datetime
    distribution_place: str


def _distribution_fields(distribution: DistributionOut) -> _DistributionFields:
    """What the events say of an order's distribution, for the emails and statements that name it."""
    return _DistributionFields(
        distribution_id=distribution.distribution_id,
        distribution_starts_at=distribution.starts_at,
        distribution_place=distribution.place,
    )


class _OrderIds(_DistributionFields):
    order_id: UUID
    member_id: UUID


class _AmendmentIds(_OrderIds):
    amendment_id: UUID


# ------------------------------------------------------------------ orders


@dataclass(frozen=True)
class PlaceOrder:
    group_id: UUID
    distribution_id: UUID
    payment_method: PaymentMethod | None
    lines: Sequence[domain.LineRequest]


@dataclass(frozen=True)
class _NewOrder:
    order_id: UUID
    group: GroupOut
    member: store.MemberOut
    distribution: DistributionOut
    payment: domain.Payment | None  # None: payments off (R1)
    lines: list[OrderLine]
    amount: Money

    @property
    def member_id(self) -> UUID:
        return self.member.member_id

    @property
    def hold(self) -> HoldRequest | None:
        how = self.payment.settlement if self.payment else None
        return _hold_for(how, self.group.group_id, self.member_id, self.order_id, "order", self.amount, self.lines)


async def place_order(database: Database, holds: Holds, principal: Principal, command: PlaceOrder) -> OrderOut:
    """Validate a member's basket for a distribution with a payment method (R8). Cheque, cash,
    transfer, on the spot, money pot with negatives allowed: confirmed at once (OrderConfirmed).
    Money pot without negatives: the ledger must hold the amount first. Card: the order waits for
    the card payment (OrderAwaitingPayment). Payments off (R1): recorded, no money events.
    The order is answered as recorded in the transaction that records it (built from what was
    inserted, not read back): once that commits, nothing can fail and answer an error for an
    order that exists."""
    group_id = command.group_id
    placed: OrderOut | None = None

    async def check(session: AsyncSession) -> _NewOrder:
        group = await store.load_group(session, group_id)
        member = await require_registered(session, principal, group_id)
        distribution = await store.load_distribution(session, group, command.distribution_id)
        domain.check_unlocked(
            await store.basket_locked(session, group_id, distribution.distribution_id, member.member_id)
        )
        store.to_domain_distribution(distribution).check_open(now(), group.order_cutoff_hours)
        payment = domain.settlement(store.payment_settings(group), command.payment_method)
        wanted = domain.quantities(command.lines)
        products = await store.load_products(session, group_id, list(wanted))
        allowed = await store.variable_catalogs(session, distribution.catalog_ids)
        priced, amount = domain.price_basket(wanted, products, allowed, group.currency)
        domain.check_card_limits(payment, amount)
        active, earlier = await store.member_orders_at(
            session, group_id, member.member_id, distribution.distribution_id
        )
        domain.check_no_active_order(active)
        lines = [store.order_line(p) for p in priced]
        new_id = domain.order_id_for(group_id, member.member_id, distribution.distribution_id, earlier)
        return _NewOrder(new_id, group, member, distribution, payment, lines, amount)

    async def record(session: AsyncSession, order: _NewOrder, hold_id: UUID | None) -> None:
        nonlocal placed
        placed = await insert(session, order, hold_id)

    async def insert(session: AsyncSession, order: _NewOrder, hold_id: UUID | None) -> store.OrderOut:
        payment = order.payment
        placed = await store.insert_order(
            session,
            order_id=order.order_id,
            group=order.group,
            member=order.member,
            distribution_id=order.distribution.distribution_id,
            method=payment.method if payment else None,
            status=payment.initial_status if payment else domain.OrderStatus.CONFIRMED,
            lines=order.lines,
            total=order.amount,
            hold_id=hold_id,
        )
        if payment is None:
            return placed
        ids = _OrderIds(order_id=order.order_id, member_id=order.member_id, **_distribution_fields(order.distribution))
        context = outbox.event_context(group_id)
        if payment.settlement is domain.Settlement.AWAIT_CARD:
            await outbox.add(
                session,
                OrderAwaitingPayment(
                    **context, **ids, payment_method=payment.method, lines=order.lines, amount=order.amount
                ),
            )
        else:
            await outbox.add(
                session,
                OrderConfirmed(**context, **ids, payment_method=payment.method, lines=order.lines, total=order.amount),
            )
        return placed

    await _check_and_record(database, holds, check, record)
    assert placed is not None  # set by record, which ran
    return placed


async def get_order(
    session: AsyncSession, principal: Principal, group_id: UUID, order_id: UUID, *, for_update: bool = False
) -> OrderOut:
    """An order with its lines and additions (its member, or a coordinator); `for_update`: locked,
    to change it."""
    principal.require_group_member(group_id)
    order = await store.load_order(session, group_id, order_id, for_update=for_update)
    principal.require_self_or_coordinator(group_id, order.member_id)
    return order


@dataclass(frozen=True)
class _Listing:
    """Which rows of a group a list shows (one member's, when given) and which page of them."""

    group_id: UUID
    member_id: UUID | None = None
    page: PageRequest | None = None


def _whose(principal: Principal, listing: _Listing) -> UUID | None:
    """Whose rows a list shows: a member only ever their own; a coordinator everyone's, or one member's."""
    group_id, member_id = listing.group_id, listing.member_id
    principal.require_group_member(group_id)
    if member_id is None and not principal.platform_admin and principal.role_in(group_id) != "coordinator":
        member_id = principal.user_id
    if member_id is not None:
        principal.require_self_or_coordinator(group_id, member_id)
    return member_id


@dataclass(frozen=True)
class ListOrders(_Listing):
    distribution_id: UUID | None = None


async def list_orders(session: AsyncSession, principal: Principal, query: ListOrders) -> list[OrderOut]:
    """Orders of the group (coordinators) or one's own (members), optionally for one distribution."""
    member_id = _whose(principal, query)
    return await store.find_orders(
        session, query.group_id, distribution_id=query.distribution_id, member_id=member_id, page=query.page
    )


@dataclass(frozen=True)
class ChangeOrder:
    group_id: UUID
    order_id: UUID
    lines: Sequence[domain.LineRequest]  # the whole basket wanted


@dataclass(frozen=True)
class _BasketChange:
    group: GroupOut
    order: OrderOut
    distribution: DistributionOut
    payment: domain.Payment | None  # None: payments off, the basket is replaced
    lines: list[OrderLine]  # payments off: the new basket; payments on: what is added (R6)
    amount: Money  # payments off: the new total; payments on: the added amount

    @property
    def hold(self) -> HoldRequest | None:
        how = self.payment.settlement if self.payment else None
        # The order's n-th addition: once one is recorded, the next is another attempt.
        step = f"addition {len(self.order.amendments)}"
        member_id, order_id = self.order.member_id, self.order.order_id
        return _hold_for(how, self.group.group_id, member_id, order_id, step, self.amount, self.lines)


async def change_order(database: Database, holds: Holds, principal: Principal, command: ChangeOrder) -> None:
    """Change a basket until the cut-off (its member, or a coordinator). Payments off (R1): any
    change, no money events. Payments on (R6): the basket may only grow; what is added is paid
    by the order's method under the same rules as an order and publishes OrderAmended (card:
    after the card payment). Removing or lowering is refused with the reason."""
    group_id, order_id = command.group_id, command.order_id
    amendment_id = uuid.uuid4()

    async def check(session: AsyncSession) -> _BasketChange:
        group = await store.load_group(session, group_id)
        order = await get_order(session, principal, group_id, order_id, for_update=True)
        domain.check_unlocked(order.locked)
        distribution = await store.load_distribution(session, group, order.distribution_id)
        store.to_domain_distribution(distribution).check_open(now(), group.order_cutoff_hours)
        domain.check_changeable(order.status, order.addition_awaits_payment)
        domain.check_same_money_mode(order.payment_method is not None, group.payments_enabled)
        wanted = domain.quantities(command.lines)
        products = await store.load_products(session, group_id, list(wanted))
        allowed = await store.variable_catalogs(session, distribution.catalog_ids)
        payment = domain.settlement(store.payment_settings(group), order.payment_method)
        if payment is not None:
            current, names = order.basket()
            wanted = domain.add_only_diff(current, wanted, names)
        priced, amount = domain.price_basket(wanted, products, allowed, group.currency)
        domain.check_card_limits(payment, amount)
        lines = [store.order_line(p) for p in priced]
        return _BasketChange(group, order, distribution, payment, lines, amount)

    async def record(session: AsyncSession, change: _BasketChange, hold_id: UUID | None) -> None:
        order, payment = change.order, change.payment
        if payment is None:
            await store.ORDER_LINES.replace(session, order_id, change.lines)
            await store.set_order(session, order_id, total_amount=change.amount.amount)
            return
        status = payment.initial_status
        await store.insert_amendment(
            session,
            amendment_id=amendment_id,
            order_id=order_id,
            status=status,
            added=change.lines,
            added_total=change.amount,
            hold_id=hold_id,
        )
        ids = _AmendmentIds(
            order_id=order_id,
            amendment_id=amendment_id,
            member_id=order.member_id,
            **_distribution_fields(change.distribution),
        )
        context = outbox.event_context(group_id)
        if status is domain.OrderStatus.AWAITING_PAYMENT:
            await outbox.add(
                session,
                OrderAwaitingPayment(
                    **context, **ids, payment_method=payment.method, lines=change.lines, amount=change.amount
                ),
            )
            return
        new_total = order.total + change.amount
        await store.set_order(session, order_id, total_amount=new_total.amount)
        await outbox.add(
            session,
            OrderAmended(
                **context,
                **ids,
                payment_method=payment.method,
                added_lines=change.lines,
                added_total=change.amount,
                new_total=new_total,
            ),
        )

    await _check_and_record(database, holds, check, record)


async def withdraw_order(session: AsyncSession, principal: Principal, group_id: UUID, order_id: UUID) -> None:
    """Abandon a card order that is not paid (any time), or cancel an order with payments off
    (until the cut-off). A confirmed order with payments on cannot be removed (R6)."""
    principal.require_group_member(group_id)
    group = await store.load_group(session, group_id)
    order = await get_order(session, principal, group_id, order_id, for_update=True)
    domain.check_unlocked(order.locked)
    status = domain.on_withdraw(order.status, group.payments_enabled)
    if status is domain.OrderStatus.CANCELLED:
        domain.check_same_money_mode(order.payment_method is not None, group.payments_enabled)
        distribution = await store.load_distribution(session, group, order.distribution_id)
        store.to_domain_distribution(distribution).check_open(now(), group.order_cutoff_hours)
    await store.set_order(session, order_id, status=status.value)
    if status is domain.OrderStatus.ABANDONED:
        # Subscribers saw it waiting for its payment: they learn it ended. (A payments-off
        # cancellation publishes nothing, like the order itself: R1.)
        await outbox.add(
            session,
            OrderAbandoned(
                **outbox.event_context(group_id),
                order_id=order_id,
                member_id=order.member_id,
                distribution_id=order.distribution_id,
                abandoned_by=principal.user_id,
            ),
        )


@dataclass(frozen=True)
class TakeOffUndelivered:
    group_id: UUID
    order_id: UUID
    line_number: int
    quantity: Decimal | None  # None: all that is left of the line
    reason: str


class _Removal(TypedDict):
    """What is recorded of an undelivered removal, and said again by its event (typed, so both are
    checked field by field)."""

    removal_id: UUID
    order_id: UUID
    line_number: int
    quantity: Decimal
    amount: Money
    reason: str
    removed_by: UUID


async def take_off_undelivered(session: AsyncSession, principal: Principal, command: TakeOffUndelivered) -> UUID:
    """R6: a coordinator takes all or part of a line off a confirmed order because the producer
    could not deliver it, with a reason; also once the basket was validated at the distribution
    (that is when it shows). The order's total is lowered and, when the order carries money, the
    removal is published (OrderLineUndelivered): the ledger credits the member, payments lowers
    what the basket owes, the member is emailed. Payments off (R1): recorded, nothing published."""
    group_id, order_id = command.group_id, command.order_id
    principal.require_coordinator(group_id)
    reason = domain.check_reason(command.reason)
    group = await store.load_group(session, group_id)
    order = await store.load_order(session, group_id, order_id, for_update=True)
    line = order.line(command.line_number)
    domain.check_removable(order.status, order.amendment_status(line.amendment_id))
    unit = await store.product_unit(session, line.product_id)
    taken = domain.undelivered(line, line.removed_quantity, unit, command.quantity)
    new_total = order.total - taken.amount
    removal_id = uuid.uuid4()
    # What is recorded of the removal, and said again by its event.
    removal = _Removal(
        removal_id=removal_id,
        order_id=order_id,
        line_number=command.line_number,
        quantity=taken.quantity,
        amount=taken.amount,
        reason=reason,
        removed_by=principal.user_id,
    )
    await store.insert_removal(session, **removal)
    await store.set_order(session, order_id, total_amount=new_total.amount)
    if order.payment_method is None:
        return removal_id
    distribution = (
        await store.load_distribution(session, group, order.distribution_id) if order.distribution_id else None
    )
    await outbox.add(
        session,
        OrderLineUndelivered(
            **outbox.event_context(group_id),
            **removal,
            member_id=order.member_id,
            distribution_id=order.distribution_id,
            distribution_starts_at=distribution.starts_at if distribution else None,
            distribution_place=distribution.place if distribution else None,
            payment_method=order.payment_method,
            product_id=line.product_id,
            product_name=line.product_name,
            unit=unit.value if unit else None,
            quantity_left=taken.quantity_left,
            unit_price=line.unit_price,
            fee_rate=line.fee_rate,
            new_total=new_total,
        ),
    )
    return removal_id


# ------------------------------------------------------------------ subscriptions (R19)


@dataclass(frozen=True)
class _ContractTerms:
    contract_id: UUID
    name: str
    remaining: list[UUID]  # distributions of the contract still open or not yet open for orders


async def _contract_terms(session: AsyncSession, group: GroupOut, contract_id: UUID) -> _ContractTerms:
    row = await store.find_catalog(session, group.group_id, contract_id)
    if row is None:
        raise NotFound(f"no contract {contract_id} in group {group.group_id}")
    if row.kind != domain.CatalogKind.SUBSCRIPTION.value:
        raise Invalid(
            f"{row.name} is a variable catalog, not a subscription contract: order its products per distribution"
        )
    moment = now()
    remaining = [
        d.distribution_id
        for d in await store.contract_distributions(session, contract_id)
        if moment < d.closes_at(group.order_cutoff_hours)
    ]
    return _ContractTerms(contract_id, row.name, remaining)


@dataclass(frozen=True)
class Subscribe:
    group_id: UUID
    contract_id: UUID
    payment_method: PaymentMethod | None
    lines: Sequence[domain.LineRequest]


@dataclass(frozen=True)
class _NewSubscription:
    subscription_id: UUID
    group: GroupOut
    member_id: UUID
    terms: _ContractTerms
    settlement: domain.Settlement | None  # None: payments off (R1)
    method: PaymentMethod | None
    lines: list[OrderLine]
    amount: Money

    @property
    def hold(self) -> HoldRequest | None:
        group_id, subscription_id = self.group.group_id, self.subscription_id
        return _hold_for(
            self.settlement, group_id, self.member_id, subscription_id, "subscription", self.amount, self.lines
        )


async def subscribe(database: Database, holds: Holds, principal: Principal, command: Subscribe) -> UUID:
    """Subscribe to a contract: the same products and quantities at each of its remaining
    distributions. With payments on, publishes SubscriptionConfirmed whose total is
    price x quantity x number of distributions (R19)."""
    group_id, contract_id = command.group_id, command.contract_id
    subscription_id: UUID | None = None

    async def check(session: AsyncSession) -> _NewSubscription:
        nonlocal subscription_id
        group = await store.load_group(session, group_id)
        member = await require_registered(session, principal, group_id)
        # A member subscribes once to a contract: a retry is the same subscription.
        subscription_id = new_id = domain.subscription_id_for(group_id, member.member_id, contract_id)
        terms = await _contract_terms(session, group, contract_id)
        how = domain.subscription_settlement(store.payment_settings(group), command.payment_method)
        wanted = domain.quantities(command.lines)
        products = await store.load_products(session, group_id, list(wanted))
        priced, _ = domain.price_basket(wanted, products, frozenset({contract_id}), group.currency)
        amount = domain.subscription_total(priced, len(terms.remaining), group.currency)
        already = await store.existing_subscription(session, contract_id, member.member_id)
        if already:
            raise Conflict(
                f"you already subscribed to this contract ({already}): change that subscription instead",
                subscription_id=already,
            )
        method = command.payment_method if group.payments_enabled else None
        lines = [store.order_line(p) for p in priced]
        return _NewSubscription(new_id, group, member.member_id, terms, how, method, lines, amount)

    async def record(session: AsyncSession, sub: _NewSubscription, hold_id: UUID | None) -> None:
        await store.insert_subscription(
            session,
            subscription_id=sub.subscription_id,
            group=sub.group,
            contract_id=contract_id,
            member_id=sub.member_id,
            method=sub.method,
            distribution_ids=sub.terms.remaining,
            lines=sub.lines,
            total=sub.amount,
        )
        if sub.settlement is None:
            return
        await outbox.add(
            session,
            SubscriptionConfirmed(
                **outbox.event_context(group_id),
                subscription_id=sub.subscription_id,
                contract_id=contract_id,
                contract_name=sub.terms.name,
                member_id=sub.member_id,
                payment_method=sub.method,
                lines=sub.lines,
                distribution_count=len(sub.terms.remaining),
                distribution_ids=sub.terms.remaining,
                total=sub.amount,
            ),
        )

    await _check_and_record(database, holds, check, record)
    assert subscription_id is not None  # set by check, which ran
    return subscription_id


async def get_subscription(
    session: AsyncSession, principal: Principal, group_id: UUID, subscription_id: UUID, *, for_update: bool = False
) -> SubscriptionOut:
    """A subscription (its member, or a coordinator); `for_update`: locked, to change it."""
    principal.require_group_member(group_id)
    sub = await store.load_subscription(session, group_id, subscription_id, for_update=for_update)
    principal.require_self_or_coordinator(group_id, sub.member_id)
    return sub


@dataclass(frozen=True)
class ListSubscriptions(_Listing):
    contract_id: UUID | None = None


async def list_subscriptions(
    session: AsyncSession, principal: Principal, query: ListSubscriptions
) -> list[SubscriptionOut]:
    """The group's subscriptions (coordinators) or one's own (members), to one contract when given."""
    member_id = _whose(principal, query)
    return await store.find_subscriptions(
        session, query.group_id, member_id=member_id, contract_id=query.contract_id, page=query.page
    )


@dataclass(frozen=True)
class ChangeSubscription:
    group_id: UUID
    subscription_id: UUID
    lines: Sequence[domain.LineRequest]  # the whole basket wanted at each remaining distribution


@dataclass(frozen=True)
class _SubscriptionChange:
    group: GroupOut
    sub: SubscriptionOut
    remaining: list[UUID]
    settlement: domain.Settlement | None  # None: payments off, the lines are replaced
    lines: list[OrderLine]  # payments off: the new lines; payments on: what is added (R6)
    amount: Money  # payments off: the new total; payments on: the added amount

    @property
    def hold(self) -> HoldRequest | None:
        sub = self.sub
        # An addition to what the subscription owes so far (every addition raises its total).
        step = f"addition after {sub.total.amount}"
        group_id = self.group.group_id
        return _hold_for(self.settlement, group_id, sub.member_id, sub.subscription_id, step, self.amount, self.lines)


async def change_subscription(
    database: Database, holds: Holds, principal: Principal, command: ChangeSubscription
) -> None:
    """Change a subscription's products for its remaining distributions. Payments on: add-only
    (R6); the addition x remaining distributions is owed and published as SubscriptionAmended."""
    group_id, subscription_id = command.group_id, command.subscription_id
    amendment_id = uuid.uuid4()

    async def check(session: AsyncSession) -> _SubscriptionChange:
        group = await store.load_group(session, group_id)
        sub = await get_subscription(session, principal, group_id, subscription_id, for_update=True)
        terms = await _contract_terms(session, group, sub.contract_id)
        remaining = [d for d in terms.remaining if d in set(sub.distribution_ids)]
        if not remaining:
            raise Conflict("this subscription has no distribution left open for changes")
        wanted = domain.quantities(command.lines)
        products = await store.load_products(session, group_id, list(wanted))
        allowed = frozenset({sub.contract_id})
        if not group.payments_enabled:
            priced, _ = domain.price_basket(wanted, products, allowed, group.currency)
            amount = domain.subscription_total(priced, len(sub.distribution_ids), group.currency)
            return _SubscriptionChange(group, sub, remaining, None, [store.order_line(p) for p in priced], amount)
        current, names = domain.basket_of(sub.lines)
        priced, _ = domain.price_basket(domain.add_only_diff(current, wanted, names), products, allowed, group.currency)
        how = domain.subscription_settlement(store.payment_settings(group), sub.payment_method)
        amount = domain.subscription_total(priced, len(remaining), group.currency)
        return _SubscriptionChange(group, sub, remaining, how, [store.order_line(p) for p in priced], amount)

    async def record(session: AsyncSession, change: _SubscriptionChange, hold_id: UUID | None) -> None:
        sub = change.sub
        if change.settlement is None:
            await store.SUBSCRIPTION_LINES.replace(session, subscription_id, change.lines)
            await store.set_subscription_total(session, subscription_id, change.amount)
            return
        new_total = sub.total + change.amount
        await store.insert_subscription_amendment(
            session,
            amendment_id=amendment_id,
            subscription_id=subscription_id,
            distribution_count=len(change.remaining),
            added=change.lines,
            added_total=change.amount,
        )
        await store.set_subscription_total(session, subscription_id, new_total)
        await outbox.add(
            session,
            SubscriptionAmended(
                **outbox.event_context(group_id),
                subscription_id=subscription_id,
                amendment_id=amendment_id,
                contract_id=sub.contract_id,
                member_id=sub.member_id,
                payment_method=sub.payment_method,
                added_lines=change.lines,
                distribution_count=len(change.remaining),
                added_total=change.amount,
                new_total=new_total,
            ),
        )

    await _check_and_record(database, holds, check, record)
