"""Orders HTTP API, part 2: baskets (variable orders) and subscriptions.

A request that needs a money-pot hold runs in three steps: check everything in one transaction,
ask the ledger for the hold (no transaction open while waiting), then check everything again and
record the order in a second transaction. If that last step fails, the hold simply expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Protocol, TypedDict, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    Money,
    OrderAmended,
    OrderAwaitingPayment,
    OrderConfirmed,
    OrderLine,
    PaymentMethod,
    SubscriptionAmended,
    SubscriptionConfirmed,
)
from cagette_contracts.inputs import AsciiDecimal, RequestBody
from cagette_runtime import outbox
from cagette_runtime.auth import CurrentPrincipal, Principal
from cagette_runtime.errors import Conflict, Invalid, NotFound

from . import domain
from .api import (
    DistributionOut,
    GroupOut,
    database,
    load_distribution,
    load_group,
    load_products,
    now,
    payment_settings,
    require_registered,
    to_domain_distribution,
)
from .holds import LedgerHolds
from .tables import (
    basket_locks,
    catalogs,
    distribution_catalogs,
    distributions,
    order_amendments,
    order_lines,
    orders,
    subscription_amendments,
    subscription_lines,
    subscriptions,
)

router = APIRouter()


class _OrderIds(TypedDict):
    order_id: UUID
    member_id: UUID
    distribution_id: UUID


class _AmendmentIds(_OrderIds):
    amendment_id: UUID


class _Prepared(Protocol):
    """What both checks of an order or amendment share: the group it was checked against."""

    group: GroupOut


T = TypeVar("T", bound=_Prepared)


def ledger_holds(request: Request) -> LedgerHolds:
    holds = getattr(request.app.state, "holds", None)
    if holds is None:
        holds = request.app.state.holds = LedgerHolds(request.app.state.service.broker)
    return holds


async def _hold(request: Request, *, group_id: UUID, member_id: UUID, order_id: UUID, amount: Money) -> UUID:
    """R13/B2: the ledger holds `amount` on the member's pot or the request is refused (409)."""
    decision = await ledger_holds(request).place(
        group_id=group_id, member_id=member_id, order_id=order_id, amount=amount
    )
    if not decision.granted:
        raise Conflict(
            f"your money pot does not cover this: {amount} needed, {decision.available} available. "
            "Top up your account first (this group does not allow negative money pots).",
            needed=amount.model_dump(),
            available=decision.available.model_dump(),
            ledger_reason=decision.reason,
        )
    return decision.hold_id


async def _checked_twice(
    request: Request,
    prepare: Callable[[AsyncSession], Awaitable[T]],
    hold: Callable[[T], Awaitable[UUID | None]],
    record: Callable[[AsyncSession, T, UUID | None], Awaitable[None]],
) -> T:
    async with database(request).transaction() as session:
        first = await prepare(session)
    hold_id = await hold(first)
    try:
        async with database(request).transaction() as session:
            second = await prepare(session)
            if hold_id is not None and _held_amount(second) != _held_amount(first):
                raise Conflict("prices changed while your order was being checked; please try again")
            await record(session, second, hold_id)
    except BaseException as exc:
        if hold_id is not None:  # the order was not recorded: give the held money back at once
            await ledger_holds(request).release(
                group_id=first.group.group_id,
                hold_id=hold_id,
                reason=f"order not recorded: {getattr(exc, 'reason', type(exc).__name__)}",
            )
        if isinstance(exc, IntegrityError):
            raise Conflict("this basket changed at the same time in another request; reload it and try again") from None
        raise
    return second


def _held_amount(prepared: object) -> Money:
    return prepared.amount  # type: ignore[attr-defined]


# ------------------------------------------------------------------ shapes


class LineIn(RequestBody):
    product_id: UUID
    quantity: Annotated[
        AsciiDecimal, Field(max_digits=12, decimal_places=3, description="Fractions only for kg / litre products")
    ]


class OrderIn(RequestBody):
    distribution_id: UUID
    payment_method: PaymentMethod | None = Field(default=None, description="Required with payments on (R8)")
    lines: list[LineIn] = Field(min_length=1, max_length=200)


class BasketIn(RequestBody):
    lines: list[LineIn] = Field(
        min_length=1,
        max_length=200,
        description="The whole basket wanted. With payments on it may only grow (R6): the difference is added.",
    )


class OrderLineOut(OrderLine):
    amendment_id: UUID | None = None


class AmendmentOut(BaseModel):
    amendment_id: UUID
    status: domain.OrderStatus
    added_total: Money
    flagged_reason: str | None


class OrderOut(BaseModel):
    order_id: UUID
    group_id: UUID
    member_id: UUID
    distribution_id: UUID | None = Field(description="None only for orders placed before distributions existed")
    status: domain.OrderStatus
    payment_method: PaymentMethod | None
    total: Money = Field(description="What the member owes for this order (confirmed lines)")
    lines: list[OrderLineOut]
    amendments: list[AmendmentOut] = []
    locked: bool = Field(description="The basket was validated at the distribution (R20)")
    flagged_reason: str | None = None


def _order_line(priced: domain.PricedLine) -> OrderLine:
    p = priced.product
    return OrderLine(
        product_id=p.product_id,
        product_name=p.name,
        quantity=priced.quantity,
        unit_price=p.unit_price,
        fee_rate=p.fee_rate,
        line_total=priced.line_total,
    )


def _line_rows(
    parent: str, parent_id: UUID, lines: list[OrderLine], first_number: int, amendment_id: UUID | None
) -> list[dict]:
    return [
        {
            parent: parent_id,
            "line_number": number,
            "product_id": line.product_id,
            "product_name": line.product_name,
            "quantity": line.quantity,
            "unit_price": line.unit_price.amount,
            "fee_rate": line.fee_rate,
            "line_total": line.line_total.amount,
            "amendment_id": amendment_id,
        }
        for number, line in enumerate(lines, start=first_number)
    ]


def _stored_line(row, currency: str) -> OrderLineOut:  # type: ignore[no-untyped-def]
    return OrderLineOut(
        product_id=row.product_id,
        product_name=row.product_name,
        quantity=domain.plain(row.quantity),
        unit_price=Money(amount=row.unit_price, currency=currency),
        fee_rate=domain.plain(row.fee_rate),
        line_total=Money(amount=row.line_total, currency=currency),
        amendment_id=row.amendment_id,
    )


# ------------------------------------------------------------------ shared checks


async def check_unlocked(session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID) -> None:
    locked = await session.scalar(
        select(
            exists().where(
                basket_locks.c.group_id == group_id,
                basket_locks.c.distribution_id == distribution_id,
                basket_locks.c.member_id == member_id,
            )
        )
    )
    if locked:
        raise Conflict("this basket was validated at the distribution and is locked (R20)")


async def variable_catalogs(session: AsyncSession, distribution: DistributionOut) -> frozenset[UUID]:
    ids = await session.scalars(
        select(catalogs.c.catalog_id).where(
            catalogs.c.catalog_id.in_(distribution.catalog_ids), catalogs.c.kind == domain.CatalogKind.VARIABLE.value
        )
    )
    return frozenset(ids.all())


def _can_see(principal: Principal, group_id: UUID, member_id: UUID) -> None:
    principal.require_self_or_coordinator(group_id, member_id)


# ------------------------------------------------------------------ placing an order


@dataclass
class NewOrder:
    group: GroupOut
    member_id: UUID
    distribution_id: UUID
    method: PaymentMethod | None
    how: domain.Settlement
    lines: list[OrderLine]
    amount: Money


@router.post("/groups/{group_id}/orders", status_code=status.HTTP_201_CREATED, response_model=OrderOut, tags=["orders"])
async def place_order(group_id: UUID, body: OrderIn, principal: CurrentPrincipal, request: Request) -> OrderOut:
    """Validate your basket for a distribution with a payment method (R8).

    cheque, cash, transfer, on the spot, money pot with negatives allowed: confirmed at once
    (OrderConfirmed). Money pot without negatives: the ledger must hold the amount first, or the
    order is refused (409, with the available amount); no answer from the ledger -> 503. Card:
    the order waits for the card payment (status awaiting_payment, OrderAwaitingPayment).
    Payments off (R1): recorded, no money events."""
    order_id = uuid.uuid4()

    async def prepare(session: AsyncSession) -> NewOrder:
        group = await load_group(session, group_id)
        member = await require_registered(session, principal, group_id)
        distribution = await load_distribution(session, group, body.distribution_id)
        await check_unlocked(session, group_id, distribution.distribution_id, member.member_id)
        to_domain_distribution(distribution).check_open(now(), group.order_cutoff_hours)
        how = domain.settlement(payment_settings(group), body.payment_method)
        wanted = domain.quantities(domain.LineRequest(line.product_id, line.quantity) for line in body.lines)
        products = await load_products(session, group_id, list(wanted))
        priced, amount = domain.price_basket(
            wanted, products, await variable_catalogs(session, distribution), group.currency
        )
        existing = await session.scalar(
            select(orders.c.order_id).where(
                orders.c.group_id == group_id,
                orders.c.member_id == member.member_id,
                orders.c.distribution_id == distribution.distribution_id,
                orders.c.status.in_([s.value for s in domain.ACTIVE_STATUSES]),
                orders.c.flagged_reason.is_(None),
            )
        )
        if existing:
            raise Conflict(
                f"you already have an order for this distribution ({existing}): change it instead", order_id=existing
            )
        method = body.payment_method if group.payments_enabled else None
        return NewOrder(
            group, member.member_id, distribution.distribution_id, method, how, [_order_line(p) for p in priced], amount
        )

    async def hold(order: NewOrder) -> UUID | None:
        if order.how is not domain.Settlement.HOLD:
            return None
        return await _hold(
            request, group_id=group_id, member_id=order.member_id, order_id=order_id, amount=order.amount
        )

    async def record(session: AsyncSession, order: NewOrder, hold_id: UUID | None) -> None:
        state = (
            domain.OrderStatus.AWAITING_PAYMENT
            if order.how is domain.Settlement.AWAIT_CARD
            else domain.OrderStatus.CONFIRMED
        )
        await session.execute(
            orders.insert().values(
                order_id=order_id,
                group_id=group_id,
                member_id=order.member_id,
                distribution_id=order.distribution_id,
                payment_method=order.method,
                status=state.value,
                total_amount=order.amount.amount,
                currency=order.group.currency,
                hold_id=hold_id,
            )
        )
        await session.execute(order_lines.insert(), _line_rows("order_id", order_id, order.lines, 1, None))
        if order.how is domain.Settlement.NO_MONEY:
            return
        # settlement() refused an order without a method while payments are on (R8).
        assert order.method is not None
        common = _OrderIds(order_id=order_id, member_id=order.member_id, distribution_id=order.distribution_id)
        if order.how in (domain.Settlement.CONFIRM, domain.Settlement.HOLD):
            await outbox.add(
                session,
                OrderConfirmed(
                    **outbox.event_context(group_id),
                    **common,
                    payment_method=order.method,
                    lines=order.lines,
                    total=order.amount,
                ),
            )
        elif order.how is domain.Settlement.AWAIT_CARD:
            await outbox.add(
                session,
                OrderAwaitingPayment(
                    **outbox.event_context(group_id),
                    **common,
                    payment_method=order.method,
                    lines=order.lines,
                    amount=order.amount,
                ),
            )

    await _checked_twice(request, prepare, hold, record)
    async with database(request).transaction() as session:
        return await load_order(session, group_id, order_id)


async def load_order(session: AsyncSession, group_id: UUID, order_id: UUID) -> OrderOut:
    row = (
        await session.execute(select(orders).where(orders.c.order_id == order_id, orders.c.group_id == group_id))
    ).first()
    if row is None:
        raise NotFound(f"no order {order_id} in group {group_id}")
    lines = (
        await session.execute(
            select(order_lines).where(order_lines.c.order_id == order_id).order_by(order_lines.c.line_number)
        )
    ).all()
    amendments = (
        await session.execute(
            select(order_amendments)
            .where(order_amendments.c.order_id == order_id)
            .order_by(order_amendments.c.created_at)
        )
    ).all()
    locked = await session.scalar(
        select(
            exists().where(
                basket_locks.c.group_id == group_id,
                basket_locks.c.distribution_id == row.distribution_id,
                basket_locks.c.member_id == row.member_id,
            )
        )
    )
    return OrderOut(
        order_id=row.order_id,
        group_id=row.group_id,
        member_id=row.member_id,
        distribution_id=row.distribution_id,
        status=domain.OrderStatus(row.status),
        payment_method=row.payment_method,
        total=Money(amount=row.total_amount, currency=row.currency),
        lines=[_stored_line(line, row.currency) for line in lines],
        amendments=[
            AmendmentOut(
                amendment_id=a.amendment_id,
                status=domain.OrderStatus(a.status),
                added_total=Money(amount=a.added_total, currency=row.currency),
                flagged_reason=a.flagged_reason,
            )
            for a in amendments
        ],
        locked=bool(locked),
        flagged_reason=row.flagged_reason,
    )


@router.get("/groups/{group_id}/orders/{order_id}", response_model=OrderOut, tags=["orders"])
async def get_order(group_id: UUID, order_id: UUID, principal: CurrentPrincipal, request: Request) -> OrderOut:
    """An order with its lines and additions (its member, or a coordinator)."""
    principal.require_group_member(group_id)
    async with database(request).transaction() as session:
        order = await load_order(session, group_id, order_id)
    _can_see(principal, group_id, order.member_id)
    return order


@router.get("/groups/{group_id}/orders", response_model=list[OrderOut], tags=["orders"])
async def list_orders(
    group_id: UUID,
    principal: CurrentPrincipal,
    request: Request,
    distribution_id: Annotated[UUID | None, Query()] = None,
    member_id: Annotated[UUID | None, Query()] = None,
) -> list[OrderOut]:
    """Orders of the group (coordinators) or your own (members), optionally for one distribution."""
    principal.require_group_member(group_id)
    if member_id is None and not principal.platform_admin and principal.role_in(group_id) != "coordinator":
        member_id = principal.user_id
    if member_id is not None:
        _can_see(principal, group_id, member_id)
    statement = select(orders.c.order_id).where(orders.c.group_id == group_id).order_by(orders.c.created_at)
    if distribution_id is not None:
        statement = statement.where(orders.c.distribution_id == distribution_id)
    if member_id is not None:
        statement = statement.where(orders.c.member_id == member_id)
    async with database(request).transaction() as session:
        ids = (await session.scalars(statement)).all()
        return [await load_order(session, group_id, order_id) for order_id in ids]


# ------------------------------------------------------------------ changing an order


@dataclass
class Change:
    group: GroupOut
    order: OrderOut
    how: domain.Settlement
    replace: list[OrderLine] | None  # payments off: the new basket
    added: list[OrderLine]  # payments on: what is added (R6)
    amount: Money  # payments off: the new total; payments on: the added amount


@router.put("/groups/{group_id}/orders/{order_id}", response_model=OrderOut, tags=["orders"])
async def change_order(
    group_id: UUID, order_id: UUID, body: BasketIn, principal: CurrentPrincipal, request: Request
) -> OrderOut:
    """Change a basket until the cut-off (its member, or a coordinator).

    Payments off (R1): any change, no money events. Payments on (R6): the basket may only grow;
    what is added is paid by the order's method under the same rules as an order and publishes
    OrderAmended (card: after the card payment). Removing or lowering is refused with the reason."""
    amendment_id = uuid.uuid4()

    async def prepare(session: AsyncSession) -> Change:
        group = await load_group(session, group_id)
        principal.require_group_member(group_id)
        await session.execute(select(orders.c.order_id).where(orders.c.order_id == order_id).with_for_update())
        order = await load_order(session, group_id, order_id)
        _can_see(principal, group_id, order.member_id)
        if order.locked:
            raise Conflict("this basket was validated at the distribution and is locked (R20)")
        distribution = await load_distribution(session, group, order.distribution_id)
        to_domain_distribution(distribution).check_open(now(), group.order_cutoff_hours)
        pending = any(a.status is domain.OrderStatus.AWAITING_PAYMENT for a in order.amendments)
        domain.check_changeable(order.status, pending)
        domain.check_same_money_mode(order.payment_method is not None, group.payments_enabled)
        counted = {a.amendment_id for a in order.amendments if a.status is domain.OrderStatus.CONFIRMED}
        current: dict[UUID, Decimal] = {}
        names: dict[UUID, str] = {}
        for line in order.lines:
            if line.amendment_id is None or line.amendment_id in counted:
                assert line.product_id is not None
                current[line.product_id] = current.get(line.product_id, Decimal(0)) + line.quantity
                names[line.product_id] = line.product_name
        wanted = domain.quantities(domain.LineRequest(line.product_id, line.quantity) for line in body.lines)
        products = await load_products(session, group_id, list(wanted))
        allowed = await variable_catalogs(session, distribution)
        if not group.payments_enabled:
            priced, amount = domain.price_basket(wanted, products, allowed, group.currency)
            return Change(group, order, domain.Settlement.NO_MONEY, [_order_line(p) for p in priced], [], amount)
        how = domain.settlement(payment_settings(group), order.payment_method)
        added = domain.add_only_diff(current, wanted, names)
        priced, amount = domain.price_basket(added, products, allowed, group.currency)
        return Change(group, order, how, None, [_order_line(p) for p in priced], amount)

    async def hold(change: Change) -> UUID | None:
        if change.how is not domain.Settlement.HOLD:
            return None
        return await _hold(
            request, group_id=group_id, member_id=change.order.member_id, order_id=order_id, amount=change.amount
        )

    async def record(session: AsyncSession, change: Change, hold_id: UUID | None) -> None:
        order = change.order
        if change.replace is not None:
            await session.execute(delete(order_lines).where(order_lines.c.order_id == order_id))
            await session.execute(order_lines.insert(), _line_rows("order_id", order_id, change.replace, 1, None))
            await session.execute(
                update(orders)
                .where(orders.c.order_id == order_id)
                .values(total_amount=change.amount.amount, updated_at=func.now())
            )
            return
        awaiting = change.how is domain.Settlement.AWAIT_CARD
        state = domain.OrderStatus.AWAITING_PAYMENT if awaiting else domain.OrderStatus.CONFIRMED
        await session.execute(
            order_amendments.insert().values(
                amendment_id=amendment_id,
                order_id=order_id,
                status=state.value,
                added_total=change.amount.amount,
                hold_id=hold_id,
            )
        )
        first = max((line_number for line_number in await _line_numbers(session, order_id)), default=0) + 1
        await session.execute(order_lines.insert(), _line_rows("order_id", order_id, change.added, first, amendment_id))
        assert order.distribution_id is not None  # prepare() loaded the order's distribution
        common = _AmendmentIds(
            order_id=order_id,
            amendment_id=amendment_id,
            member_id=order.member_id,
            distribution_id=order.distribution_id,
        )
        assert order.payment_method is not None
        if awaiting:
            await outbox.add(
                session,
                OrderAwaitingPayment(
                    **outbox.event_context(group_id),
                    **common,
                    payment_method=order.payment_method,
                    lines=change.added,
                    amount=change.amount,
                ),
            )
            return
        new_total = order.total + change.amount
        await session.execute(
            update(orders)
            .where(orders.c.order_id == order_id)
            .values(total_amount=new_total.amount, updated_at=func.now())
        )
        await outbox.add(
            session,
            OrderAmended(
                **outbox.event_context(group_id),
                **common,
                payment_method=order.payment_method,
                added_lines=change.added,
                added_total=change.amount,
                new_total=new_total,
            ),
        )

    await _checked_twice(request, prepare, hold, record)
    async with database(request).transaction() as session:
        return await load_order(session, group_id, order_id)


async def _line_numbers(session: AsyncSession, order_id: UUID) -> list[int]:
    return list(
        (await session.scalars(select(order_lines.c.line_number).where(order_lines.c.order_id == order_id))).all()
    )


@router.delete("/groups/{group_id}/orders/{order_id}", response_model=OrderOut, tags=["orders"])
async def withdraw_order(group_id: UUID, order_id: UUID, principal: CurrentPrincipal, request: Request) -> OrderOut:
    """Abandon a card order that is not paid (any time), or cancel an order with payments off
    (until the cut-off). A confirmed order with payments on cannot be removed (R6)."""
    principal.require_group_member(group_id)
    async with database(request).transaction() as session:
        group = await load_group(session, group_id)
        await session.execute(select(orders.c.order_id).where(orders.c.order_id == order_id).with_for_update())
        order = await load_order(session, group_id, order_id)
        _can_see(principal, group_id, order.member_id)
        if order.locked:
            raise Conflict("this basket was validated at the distribution and is locked (R20)")
        state = domain.on_withdraw(order.status, group.payments_enabled)
        if state is domain.OrderStatus.CANCELLED:
            domain.check_same_money_mode(order.payment_method is not None, group.payments_enabled)
        if state is domain.OrderStatus.CANCELLED:
            distribution = await load_distribution(session, group, order.distribution_id)
            to_domain_distribution(distribution).check_open(now(), group.order_cutoff_hours)
        await session.execute(
            update(orders).where(orders.c.order_id == order_id).values(status=state.value, updated_at=func.now())
        )
        return await load_order(session, group_id, order_id)


# ------------------------------------------------------------------ subscriptions (R19)


class SubscriptionIn(RequestBody):
    payment_method: PaymentMethod | None = Field(default=None, description="Optional; if given, one the group offers")
    lines: list[LineIn] = Field(
        min_length=1, max_length=100, description="Products and quantities for every distribution"
    )


class SubscriptionOut(BaseModel):
    subscription_id: UUID
    group_id: UUID
    contract_id: UUID
    member_id: UUID
    payment_method: PaymentMethod | None
    distribution_ids: list[UUID]
    total: Money = Field(
        description="What the member owes for the contract: lines x distributions (R19), plus additions"
    )
    lines: list[OrderLineOut]


@dataclass
class ContractTerms:
    contract_id: UUID
    name: str
    remaining: list[UUID]  # distributions of the contract still open or not yet open for orders


async def _contract_terms(session: AsyncSession, group: GroupOut, contract_id: UUID) -> ContractTerms:
    row = (
        await session.execute(
            select(catalogs).where(catalogs.c.catalog_id == contract_id, catalogs.c.group_id == group.group_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no contract {contract_id} in group {group.group_id}")
    if row.kind != domain.CatalogKind.SUBSCRIPTION.value:
        raise Invalid(
            f"{row.name} is a variable catalog, not a subscription contract: order its products per distribution"
        )
    dist_rows = (
        await session.execute(
            select(distributions)
            .join(distribution_catalogs, distribution_catalogs.c.distribution_id == distributions.c.distribution_id)
            .where(distribution_catalogs.c.catalog_id == contract_id)
            .order_by(distributions.c.starts_at)
        )
    ).all()
    moment = now()
    remaining = [
        d.distribution_id
        for d in dist_rows
        if moment
        < domain.Distribution(d.distribution_id, d.starts_at, d.orders_open_at, d.orders_close_at).closes_at(
            group.order_cutoff_hours
        )
    ]
    return ContractTerms(contract_id, row.name, remaining)


@dataclass
class NewSubscription:
    group: GroupOut
    member_id: UUID
    terms: ContractTerms
    method: PaymentMethod | None
    how: domain.Settlement
    lines: list[OrderLine]
    amount: Money


def _subscription_settlement(group: GroupOut, method: PaymentMethod | None) -> domain.Settlement:
    settings = payment_settings(group)
    if not settings.payments_enabled:
        return domain.Settlement.NO_MONEY
    if method is None:
        return domain.Settlement.CONFIRM  # R7: paid by cheques a coordinator enters
    how = domain.settlement(settings, method)
    if how is domain.Settlement.AWAIT_CARD:
        raise Invalid(
            "subscriptions cannot be paid by card yet: choose another method "
            "or none (cheques entered by a coordinator, R7)"
        )
    return how


@router.post(
    "/groups/{group_id}/contracts/{contract_id}/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionOut,
    tags=["subscriptions"],
)
async def subscribe(
    group_id: UUID, contract_id: UUID, body: SubscriptionIn, principal: CurrentPrincipal, request: Request
) -> SubscriptionOut:
    """Subscribe to a contract: the same products and quantities at each of its remaining
    distributions. With payments on, publishes SubscriptionConfirmed whose total is
    price x quantity x number of distributions (R19)."""
    subscription_id = uuid.uuid4()

    async def prepare(session: AsyncSession) -> NewSubscription:
        group = await load_group(session, group_id)
        member = await require_registered(session, principal, group_id)
        terms = await _contract_terms(session, group, contract_id)
        how = _subscription_settlement(group, body.payment_method)
        wanted = domain.quantities(domain.LineRequest(line.product_id, line.quantity) for line in body.lines)
        products = await load_products(session, group_id, list(wanted))
        priced, _ = domain.price_basket(wanted, products, frozenset({contract_id}), group.currency)
        amount = domain.subscription_total(priced, len(terms.remaining), group.currency)
        already = await session.scalar(
            select(subscriptions.c.subscription_id).where(
                subscriptions.c.contract_id == contract_id, subscriptions.c.member_id == member.member_id
            )
        )
        if already:
            raise Conflict(
                f"you already subscribed to this contract ({already}): change that subscription instead",
                subscription_id=already,
            )
        method = body.payment_method if group.payments_enabled else None
        return NewSubscription(group, member.member_id, terms, method, how, [_order_line(p) for p in priced], amount)

    async def hold(sub: NewSubscription) -> UUID | None:
        if sub.how is not domain.Settlement.HOLD:
            return None
        return await _hold(
            request, group_id=group_id, member_id=sub.member_id, order_id=subscription_id, amount=sub.amount
        )

    async def record(session: AsyncSession, sub: NewSubscription, hold_id: UUID | None) -> None:
        await session.execute(
            subscriptions.insert().values(
                subscription_id=subscription_id,
                group_id=group_id,
                contract_id=contract_id,
                member_id=sub.member_id,
                payment_method=sub.method,
                distribution_ids=sub.terms.remaining,
                total_amount=sub.amount.amount,
                currency=sub.group.currency,
            )
        )
        await session.execute(
            subscription_lines.insert(), _line_rows("subscription_id", subscription_id, sub.lines, 1, None)
        )
        if sub.how is not domain.Settlement.NO_MONEY:
            await outbox.add(
                session,
                SubscriptionConfirmed(
                    **outbox.event_context(group_id),
                    subscription_id=subscription_id,
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

    await _checked_twice(request, prepare, hold, record)
    async with database(request).transaction() as session:
        return await load_subscription(session, group_id, subscription_id)


async def load_subscription(session: AsyncSession, group_id: UUID, subscription_id: UUID) -> SubscriptionOut:
    row = (
        await session.execute(
            select(subscriptions).where(
                subscriptions.c.subscription_id == subscription_id, subscriptions.c.group_id == group_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"no subscription {subscription_id} in group {group_id}")
    lines = (
        await session.execute(
            select(subscription_lines)
            .where(subscription_lines.c.subscription_id == subscription_id)
            .order_by(subscription_lines.c.line_number)
        )
    ).all()
    return SubscriptionOut(
        subscription_id=row.subscription_id,
        group_id=row.group_id,
        contract_id=row.contract_id,
        member_id=row.member_id,
        payment_method=row.payment_method,
        distribution_ids=row.distribution_ids,
        total=Money(amount=row.total_amount, currency=row.currency),
        lines=[_stored_line(line, row.currency) for line in lines],
    )


@router.get(
    "/groups/{group_id}/subscriptions/{subscription_id}", response_model=SubscriptionOut, tags=["subscriptions"]
)
async def get_subscription(
    group_id: UUID, subscription_id: UUID, principal: CurrentPrincipal, request: Request
) -> SubscriptionOut:
    principal.require_group_member(group_id)
    async with database(request).transaction() as session:
        sub = await load_subscription(session, group_id, subscription_id)
    _can_see(principal, group_id, sub.member_id)
    return sub


@dataclass
class SubscriptionChange:
    group: GroupOut
    sub: SubscriptionOut
    terms: ContractTerms
    how: domain.Settlement
    replace: list[OrderLine] | None
    added: list[OrderLine]
    amount: Money  # payments off: the new total; payments on: the added amount


@router.put(
    "/groups/{group_id}/subscriptions/{subscription_id}", response_model=SubscriptionOut, tags=["subscriptions"]
)
async def change_subscription(
    group_id: UUID, subscription_id: UUID, body: BasketIn, principal: CurrentPrincipal, request: Request
) -> SubscriptionOut:
    """Change a subscription's products for its remaining distributions. Payments on: add-only
    (R6); the addition x remaining distributions is owed and published as SubscriptionAmended."""
    amendment_id = uuid.uuid4()

    async def prepare(session: AsyncSession) -> SubscriptionChange:
        group = await load_group(session, group_id)
        principal.require_group_member(group_id)
        await session.execute(
            select(subscriptions.c.subscription_id)
            .where(subscriptions.c.subscription_id == subscription_id)
            .with_for_update()
        )
        sub = await load_subscription(session, group_id, subscription_id)
        _can_see(principal, group_id, sub.member_id)
        terms = await _contract_terms(session, group, sub.contract_id)
        remaining = [d for d in terms.remaining if d in set(sub.distribution_ids)]
        if not remaining:
            raise Conflict("this subscription has no distribution left open for changes")
        wanted = domain.quantities(domain.LineRequest(line.product_id, line.quantity) for line in body.lines)
        products = await load_products(session, group_id, list(wanted))
        allowed = frozenset({sub.contract_id})
        if not group.payments_enabled:
            priced, _ = domain.price_basket(wanted, products, allowed, group.currency)
            amount = domain.subscription_total(priced, len(sub.distribution_ids), group.currency)
            return SubscriptionChange(
                group, sub, terms, domain.Settlement.NO_MONEY, [_order_line(p) for p in priced], [], amount
            )
        current: dict[UUID, Decimal] = {}
        names: dict[UUID, str] = {}
        for line in sub.lines:
            assert line.product_id is not None
            current[line.product_id] = current.get(line.product_id, Decimal(0)) + line.quantity
            names[line.product_id] = line.product_name
        added = domain.add_only_diff(current, wanted, names)
        priced, _ = domain.price_basket(added, products, allowed, group.currency)
        how = _subscription_settlement(group, sub.payment_method)
        terms = ContractTerms(terms.contract_id, terms.name, remaining)
        amount = domain.subscription_total(priced, len(remaining), group.currency)
        return SubscriptionChange(group, sub, terms, how, None, [_order_line(p) for p in priced], amount)

    async def hold(change: SubscriptionChange) -> UUID | None:
        if change.how is not domain.Settlement.HOLD:
            return None
        return await _hold(
            request, group_id=group_id, member_id=change.sub.member_id, order_id=subscription_id, amount=change.amount
        )

    async def record(session: AsyncSession, change: SubscriptionChange, hold_id: UUID | None) -> None:
        sub = change.sub
        if change.replace is not None:
            await session.execute(
                delete(subscription_lines).where(subscription_lines.c.subscription_id == subscription_id)
            )
            await session.execute(
                subscription_lines.insert(), _line_rows("subscription_id", subscription_id, change.replace, 1, None)
            )
            await session.execute(
                update(subscriptions)
                .where(subscriptions.c.subscription_id == subscription_id)
                .values(total_amount=change.amount.amount, updated_at=func.now())
            )
            return
        new_total = sub.total + change.amount
        await session.execute(
            subscription_amendments.insert().values(
                amendment_id=amendment_id,
                subscription_id=subscription_id,
                distribution_count=len(change.terms.remaining),
                added_total=change.amount.amount,
            )
        )
        numbers = (
            await session.scalars(
                select(func.max(subscription_lines.c.line_number)).where(
                    subscription_lines.c.subscription_id == subscription_id
                )
            )
        ).first() or 0
        await session.execute(
            subscription_lines.insert(),
            _line_rows("subscription_id", subscription_id, change.added, numbers + 1, amendment_id),
        )
        await session.execute(
            update(subscriptions)
            .where(subscriptions.c.subscription_id == subscription_id)
            .values(total_amount=new_total.amount, updated_at=func.now())
        )
        await outbox.add(
            session,
            SubscriptionAmended(
                **outbox.event_context(group_id),
                subscription_id=subscription_id,
                amendment_id=amendment_id,
                contract_id=sub.contract_id,
                member_id=sub.member_id,
                payment_method=sub.payment_method,
                added_lines=change.added,
                distribution_count=len(change.terms.remaining),
                added_total=change.amount,
                new_total=new_total,
            ),
        )

    await _checked_twice(request, prepare, hold, record)
    async with database(request).transaction() as session:
        return await load_subscription(session, group_id, subscription_id)
