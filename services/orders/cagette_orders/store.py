"""Database adapter: the orders tables in and out, as the typed records the use cases work on
and the API returns. No business rules here beyond what the schema enforces: the use cases
(usecases.py) decide, the domain (domain.py) computes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import ColumnElement, Row, Select, Table, and_, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import CurrencyCode, Language, Money, OrderLine, PaymentMethod, Role
from cagette_contracts.common import DEFAULT_TIME_ZONE, TimeZoneName
from cagette_contracts.inputs import Flag, Label, Name, RequestBody
from cagette_runtime.clock import now
from cagette_runtime.errors import Conflict, NotFound
from cagette_runtime.pagination import PageRequest
from cagette_runtime.rows import record

from . import domain
from .tables import (
    basket_locks,
    catalogs,
    distribution_catalogs,
    distributions,
    groups,
    hold_requests,
    members,
    order_amendments,
    order_line_removals,
    order_lines,
    orders,
    products,
    subscription_amendments,
    subscription_lines,
    subscriptions,
)

# ------------------------------------------------------------------ groups


class GroupSettingsIn(RequestBody):
    name: Name
    currency: CurrencyCode = "EUR"
    language: Language = Language.FR
    time_zone: TimeZoneName = Field(default=DEFAULT_TIME_ZONE, description="IANA name the group's dates are shown in")
    payments_enabled: Flag = True
    payment_methods: list[PaymentMethod] = Field(default=[], max_length=len(PaymentMethod))
    allow_negative_money_pot: Flag = False
    cheque_payee: Label | None = None
    transfer_iban: Annotated[Label, Field(max_length=64)] | None = None
    transfer_bic: Annotated[Label, Field(max_length=16)] | None = None
    card_payments_configured: Flag = Field(
        default=False,
        description="Read-only: the group's card payments are ready, as announced by the payments service "
        "(payments.card_settings.changed, after a coordinator's PUT /groups/{g}/card-settings there). "
        "Card may be offered only while it is on. Setting it here is refused (422).",
    )
    order_cutoff_hours: int = Field(
        default=0, ge=0, le=domain.MAX_CUTOFF_HOURS, description="Orders close this many hours before a distribution"
    )


class GroupOut(GroupSettingsIn):
    # Read from a stored row, which has more columns than the answer shows.
    model_config = ConfigDict(extra="ignore")

    group_id: UUID


def payment_settings(group: GroupSettingsIn) -> domain.PaymentSettings:
    # The settings of the same names; the methods as a tuple, card readiness under its domain name.
    return record(
        domain.PaymentSettings,
        dict(group),
        payment_methods=tuple(group.payment_methods),
        card_configured=group.card_payments_configured,
    )


async def load_group(session: AsyncSession, group_id: UUID, *, for_update: bool = False) -> GroupOut:
    statement = select(groups).where(groups.c.group_id == group_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).mappings().first()
    if row is None:
        raise NotFound(f"no group {group_id}")
    return GroupOut.model_validate(dict(row))


# ------------------------------------------------------------------ members


class MemberOut(BaseModel):
    group_id: UUID
    member_id: UUID
    role: Role
    name: str
    email: EmailStr
    language: Language


async def find_member(
    session: AsyncSession, group_id: UUID, member_id: UUID, *, for_update: bool = False
) -> MemberOut | None:
    """A current member (one who left or was removed is not found)."""
    statement = select(members).where(
        members.c.group_id == group_id, members.c.member_id == member_id, members.c.left_at.is_(None)
    )
    if for_update:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).mappings().first()
    return None if row is None else MemberOut.model_validate(dict(row))


async def load_member(session: AsyncSession, group_id: UUID, member_id: UUID, *, for_update: bool = False) -> MemberOut:
    member = await find_member(session, group_id, member_id, for_update=for_update)
    if member is None:
        raise NotFound(f"{member_id} is not a member of group {group_id}")
    return member


async def other_coordinators(session: AsyncSession, group_id: UUID, member_id: UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(members)
        .where(
            members.c.group_id == group_id,
            members.c.role == Role.COORDINATOR.value,
            members.c.member_id != member_id,
            members.c.left_at.is_(None),
        )
    )
    return count or 0


async def known_member_id(session: AsyncSession, email: str) -> UUID | None:
    """The user id this e-mail already has as a member of some group (the person's account)."""
    return await session.scalar(
        select(members.c.member_id).where(func.lower(members.c.email) == email.lower()).limit(1)
    )


async def add_or_rejoin_member(session: AsyncSession, member: MemberOut) -> None:
    """Insert the member, or bring back one who left (their row and history stay); Conflict if
    they are a member already."""
    previous = (
        await session.execute(
            select(members.c.left_at)
            .where(members.c.group_id == member.group_id, members.c.member_id == member.member_id)
            .with_for_update()
        )
    ).first()
    if previous is not None and previous.left_at is None:
        raise Conflict(f"{member.member_id} is already a member of group {member.group_id}")
    values = member.model_dump(mode="json")
    if previous is None:
        await session.execute(members.insert().values(**values))
        return
    await session.execute(
        update(members)
        .where(members.c.group_id == member.group_id, members.c.member_id == member.member_id)
        .values(**values, left_at=None, joined_at=func.now(), updated_at=func.now())
    )


async def mark_left(session: AsyncSession, group_id: UUID, member_id: UUID) -> None:
    await session.execute(
        update(members)
        .where(members.c.group_id == group_id, members.c.member_id == member_id)
        .values(left_at=func.now(), updated_at=func.now())
    )


async def known_roles(session: AsyncSession, user_id: UUID) -> dict[UUID, Role | None]:
    """Each group the person is or was in, with their role there now (None: they left)."""
    rows = await session.execute(
        select(members.c.group_id, members.c.role, members.c.left_at).where(members.c.member_id == user_id)
    )
    return {row.group_id: None if row.left_at is not None else Role(row.role) for row in rows}


# ------------------------------------------------------------------ products


class ProductOut(BaseModel):
    product_id: UUID
    catalog_id: UUID
    name: str
    unit: domain.Unit
    unit_price: Money
    fee_rate: Decimal


def product_out(row: Row[Any]) -> ProductOut:
    """A product row joined with its group's currency."""
    return record(
        ProductOut,
        row,
        unit=domain.Unit(row.unit),
        unit_price=Money(amount=row.unit_price, currency=row.currency),
        fee_rate=domain.plain(row.fee_rate),
    )


def to_domain_product(product: ProductOut) -> domain.Product:
    return domain.Product(
        product.product_id, product.catalog_id, product.name, product.unit, product.unit_price, product.fee_rate
    )


def products_with_currency() -> Any:
    return select(products, groups.c.currency).join(groups, groups.c.group_id == products.c.group_id)


async def load_products(session: AsyncSession, group_id: UUID, product_ids: list[UUID]) -> dict[UUID, domain.Product]:
    """The group's products among `product_ids` (another group's product is simply not found)."""
    rows = (
        await session.execute(
            products_with_currency().where(products.c.group_id == group_id, products.c.product_id.in_(product_ids))
        )
    ).all()
    return {row.product_id: to_domain_product(product_out(row)) for row in rows}


async def variable_catalogs(session: AsyncSession, catalog_ids: Sequence[UUID]) -> frozenset[UUID]:
    """Which of `catalog_ids` are variable catalogs (products ordered per distribution)."""
    ids = await session.scalars(
        select(catalogs.c.catalog_id).where(
            catalogs.c.catalog_id.in_(catalog_ids), catalogs.c.kind == domain.CatalogKind.VARIABLE.value
        )
    )
    return frozenset(ids.all())


# ------------------------------------------------------------------ distributions


class DistributionOut(BaseModel):
    distribution_id: UUID
    group_id: UUID
    starts_at: datetime
    place: str
    catalog_ids: list[UUID]
    orders_open_at: datetime
    orders_close_at: datetime
    orders_close_with_cutoff: datetime = Field(
        description="When orders really close: closing time or the group's cut-off, whichever is first"
    )
    open_for_orders: bool


def as_domain_distribution(
    distribution_id: UUID, starts_at: datetime, open_at: datetime, close_at: datetime, catalog_ids: Sequence[UUID]
) -> domain.Distribution:
    return domain.Distribution(distribution_id, starts_at, open_at, close_at, frozenset(catalog_ids))


def to_domain_distribution(d: DistributionOut) -> domain.Distribution:
    return as_domain_distribution(d.distribution_id, d.starts_at, d.orders_open_at, d.orders_close_at, d.catalog_ids)


def distribution_out(group: GroupOut, row: Row[Any], catalog_ids: list[UUID]) -> DistributionOut:
    d = as_domain_distribution(row.distribution_id, row.starts_at, row.orders_open_at, row.orders_close_at, catalog_ids)
    return record(
        DistributionOut,
        row,
        group_id=group.group_id,
        catalog_ids=catalog_ids,
        orders_close_with_cutoff=d.closes_at(group.order_cutoff_hours),
        open_for_orders=d.is_open(now(), group.order_cutoff_hours),
    )


async def load_distribution(session: AsyncSession, group: GroupOut, distribution_id: UUID | None) -> DistributionOut:
    if distribution_id is None:
        raise NotFound("this order belongs to no distribution")
    row = (
        await session.execute(
            select(distributions).where(
                distributions.c.distribution_id == distribution_id, distributions.c.group_id == group.group_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"no distribution {distribution_id} in group {group.group_id}")
    catalog_ids = (
        await session.scalars(
            select(distribution_catalogs.c.catalog_id).where(distribution_catalogs.c.distribution_id == distribution_id)
        )
    ).all()
    return distribution_out(group, row, list(catalog_ids))


async def contract_distributions(session: AsyncSession, contract_id: UUID) -> list[domain.Distribution]:
    """The distributions delivering a subscription contract, in date order."""
    rows = (
        await session.execute(
            select(distributions)
            .join(distribution_catalogs, distribution_catalogs.c.distribution_id == distributions.c.distribution_id)
            .where(distribution_catalogs.c.catalog_id == contract_id)
            .order_by(distributions.c.starts_at)
        )
    ).all()
    return [domain.Distribution(d.distribution_id, d.starts_at, d.orders_open_at, d.orders_close_at) for d in rows]


async def find_catalog(session: AsyncSession, group_id: UUID, catalog_id: UUID) -> Row[Any] | None:
    return (
        await session.execute(
            select(catalogs).where(catalogs.c.catalog_id == catalog_id, catalogs.c.group_id == group_id)
        )
    ).first()


# ------------------------------------------------------------------ lines (orders and subscriptions alike)


class RemovalOut(BaseModel):
    """Part of a line a coordinator took off the order: not delivered (R6)."""

    removal_id: UUID
    quantity: Decimal
    amount: Money = Field(description="What the member owes less for it")
    reason: str
    removed_by: UUID
    removed_at: datetime


class OrderLineOut(OrderLine):
    amendment_id: UUID | None = None
    line_number: int | None = Field(default=None, description="The line's number in its order (or subscription)")
    removed_quantity: Decimal = Field(
        default=Decimal(0), description="How much of it was taken off the order, not delivered (R6)"
    )
    removals: list[RemovalOut] = Field(default=[], description="Each time some of it was taken off, and why")

    @property
    def quantity_left(self) -> Decimal:
        return self.quantity - self.removed_quantity


def order_line(priced: domain.PricedLine) -> OrderLine:
    # The product's id, price, fee rate and unit; the line's quantity and total.
    product = priced.product
    return record(
        OrderLine, vars(product), product_name=product.name, quantity=priced.quantity, line_total=priced.line_total
    )


def stored_line(row: Row[Any] | Mapping[str, Any], currency: str) -> OrderLineOut:
    """A line as stored (a row read, or the values just inserted) as answered."""
    columns = row._mapping if isinstance(row, Row) else row
    return record(
        OrderLineOut,
        row,
        quantity=domain.plain(columns["quantity"]),
        unit_price=Money(amount=columns["unit_price"], currency=currency),
        fee_rate=domain.plain(columns["fee_rate"]),
        line_total=Money(amount=columns["line_total"], currency=currency),
    )


def with_removals(line: OrderLineOut, removals: Sequence[Row[Any]], currency: str) -> OrderLineOut:
    if not removals:
        return line
    out = [
        record(RemovalOut, r, quantity=domain.plain(r.quantity), amount=Money(amount=r.amount, currency=currency))
        for r in removals
    ]
    removed = domain.plain(sum((r.quantity for r in out), Decimal(0)))
    return line.model_copy(update={"removals": out, "removed_quantity": removed})


def as_order_line(line: OrderLineOut) -> OrderLine:
    """The contract's line (events carry no amendment id, number or removals per line)."""
    return OrderLine.model_validate(
        line.model_dump(exclude={"amendment_id", "line_number", "removed_quantity", "removals"})
    )


@dataclass(frozen=True)
class _Lines:
    """Where one kind of lines is stored: its table and the column naming its parent."""

    table: Table
    parent: str

    async def add(
        self,
        session: AsyncSession,
        parent_id: UUID,
        lines: Sequence[OrderLine],
        amendment_id: UUID | None = None,
        *,
        new_parent: bool = False,
    ) -> list[dict[str, Any]]:
        """Append `lines` after the parent's last line (`new_parent`: it has none yet, no need to
        ask); returns the rows inserted."""
        last = (
            None
            if new_parent
            else await session.scalar(
                select(func.max(self.table.c.line_number)).where(self.table.c[self.parent] == parent_id)
            )
        )
        rows = [
            {
                self.parent: parent_id,
                "line_number": number,
                "product_id": line.product_id,
                "product_name": line.product_name,
                "quantity": line.quantity,
                "unit_price": line.unit_price.amount,
                "fee_rate": line.fee_rate,
                "line_total": line.line_total.amount,
                "amendment_id": amendment_id,
            }
            for number, line in enumerate(lines, start=(last or 0) + 1)
        ]
        await session.execute(self.table.insert(), rows)
        return rows

    async def replace(self, session: AsyncSession, parent_id: UUID, lines: Sequence[OrderLine]) -> None:
        await session.execute(delete(self.table).where(self.table.c[self.parent] == parent_id))
        await self.add(session, parent_id, lines)

    async def of(self, session: AsyncSession, condition: ColumnElement[bool]) -> Sequence[Row[Any]]:
        return (await session.execute(select(self.table).where(condition).order_by(self.table.c.line_number))).all()


ORDER_LINES = _Lines(order_lines, "order_id")
SUBSCRIPTION_LINES = _Lines(subscription_lines, "subscription_id")


# ------------------------------------------------------------------ orders


class AmendmentOut(BaseModel):
    amendment_id: UUID
    status: domain.OrderStatus
    added_total: Money
    flagged_reason: str | None


class OrderOut(BaseModel):
    order_id: UUID
    group_id: UUID
    member_id: UUID
    member_name: str = Field(description="The member's name as the group knows it now")
    member_email: str
    distribution_id: UUID | None = Field(description="None only for orders placed before distributions existed")
    status: domain.OrderStatus
    payment_method: PaymentMethod | None
    total: Money = Field(description="What the member owes for this order (confirmed lines)")
    lines: list[OrderLineOut]
    amendments: list[AmendmentOut] = []
    locked: bool = Field(description="The basket was validated at the distribution (R20)")
    flagged_reason: str | None = None
    created_at: datetime

    def basket(self) -> tuple[dict[UUID, Decimal], dict[UUID, str]]:
        """What the member holds: the order's lines and those of its confirmed additions, less
        what a coordinator took off as not delivered (R6)."""
        counted = {a.amendment_id for a in self.amendments if a.status is domain.OrderStatus.CONFIRMED}
        return domain.basket_of(
            line.model_copy(update={"quantity": line.quantity_left})
            for line in self.lines
            if (line.amendment_id is None or line.amendment_id in counted) and line.quantity_left > 0
        )

    def line(self, line_number: int) -> OrderLineOut:
        for line in self.lines:
            if line.line_number == line_number:
                return line
        raise NotFound(f"order {self.order_id} has no line {line_number}")

    def amendment_status(self, amendment_id: UUID | None) -> domain.OrderStatus | None:
        return next((a.status for a in self.amendments if a.amendment_id == amendment_id), None)

    @property
    def addition_awaits_payment(self) -> bool:
        return any(a.status is domain.OrderStatus.AWAITING_PAYMENT for a in self.amendments)


def _basket_locked(group_id: Any, distribution_id: Any, member_id: Any) -> ColumnElement[bool]:
    return exists().where(
        basket_locks.c.group_id == group_id,
        basket_locks.c.distribution_id == distribution_id,
        basket_locks.c.member_id == member_id,
    )


async def basket_locked(session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID) -> bool:
    return bool(await session.scalar(select(_basket_locked(group_id, distribution_id, member_id))))


async def find_orders(
    session: AsyncSession,
    group_id: UUID,
    *,
    order_id: UUID | None = None,
    distribution_id: UUID | None = None,
    member_id: UUID | None = None,
    page: PageRequest | None = None,
) -> list[OrderOut]:
    """The group's orders matching the filters, oldest first, with their lines and additions:
    three queries whatever the number of orders (one page of them with `page`)."""
    statement = select(
        orders,
        _basket_locked(orders.c.group_id, orders.c.distribution_id, orders.c.member_id).label("locked"),
        *_MEMBER_WORDS,
    ).join_from(orders, members, _member_of(orders))
    statement = statement.where(orders.c.group_id == group_id)
    order_key = (orders.c.created_at, orders.c.order_id)
    statement = page.apply(statement, *order_key) if page else statement.order_by(*order_key)
    for column, value in ((orders.c.order_id, order_id), (orders.c.distribution_id, distribution_id)):
        if value is not None:
            statement = statement.where(column == value)
    if member_id is not None:
        statement = statement.where(orders.c.member_id == member_id)
    rows = (await session.execute(statement)).all()
    if not rows:
        return []
    ids = [row.order_id for row in rows]
    lines: dict[UUID, list[Row[Any]]] = {order_id: [] for order_id in ids}
    for line in await ORDER_LINES.of(session, order_lines.c.order_id.in_(ids)):
        lines[line.order_id].append(line)
    removals: dict[tuple[UUID, int], list[Row[Any]]] = {}
    for removal in (
        await session.execute(
            select(order_line_removals)
            .where(order_line_removals.c.order_id.in_(ids))
            .order_by(order_line_removals.c.removed_at, order_line_removals.c.removal_id)
        )
    ).all():
        removals.setdefault((removal.order_id, removal.line_number), []).append(removal)
    amendments: dict[UUID, list[Row[Any]]] = {order_id: [] for order_id in ids}
    for amendment in (
        await session.execute(
            select(order_amendments).where(order_amendments.c.order_id.in_(ids)).order_by(order_amendments.c.created_at)
        )
    ).all():
        amendments[amendment.order_id].append(amendment)
    return [
        record(
            OrderOut,
            row,
            status=domain.OrderStatus(row.status),
            total=Money(amount=row.total_amount, currency=row.currency),
            lines=[
                with_removals(
                    stored_line(line, row.currency), removals.get((row.order_id, line.line_number), []), row.currency
                )
                for line in lines[row.order_id]
            ],
            amendments=[
                record(
                    AmendmentOut,
                    a,
                    status=domain.OrderStatus(a.status),
                    added_total=Money(amount=a.added_total, currency=row.currency),
                )
                for a in amendments[row.order_id]
            ],
            locked=bool(row.locked),
        )
        for row in rows
    ]


async def load_order(session: AsyncSession, group_id: UUID, order_id: UUID, *, for_update: bool = False) -> OrderOut:
    if for_update:
        await session.execute(select(orders.c.order_id).where(orders.c.order_id == order_id).with_for_update())
    found = await find_orders(session, group_id, order_id=order_id)
    if not found:
        raise NotFound(f"no order {order_id} in group {group_id}")
    return found[0]


async def insert_order(
    session: AsyncSession,
    *,
    order_id: UUID,
    group: GroupOut,
    member: MemberOut,
    distribution_id: UUID,
    method: PaymentMethod | None,
    status: domain.OrderStatus,
    lines: Sequence[OrderLine],
    total: Money,
    hold_id: UUID | None,
) -> OrderOut:
    """Insert a new order and its lines; the order as `load_order` would read it back, built in
    memory (a new order has no removals, amendments or flag; the caller checked it is unlocked)."""
    created_at = await session.scalar(
        orders.insert()
        .values(
            order_id=order_id,
            group_id=group.group_id,
            member_id=member.member_id,
            distribution_id=distribution_id,
            payment_method=method,
            status=status.value,
            total_amount=total.amount,
            currency=group.currency,
            hold_id=hold_id,
        )
        .returning(orders.c.created_at)
    )
    assert created_at is not None
    inserted = await ORDER_LINES.add(session, order_id, lines, new_parent=True)
    return OrderOut(
        order_id=order_id,
        group_id=group.group_id,
        member_id=member.member_id,
        member_name=member.name,
        member_email=member.email,
        distribution_id=distribution_id,
        status=status,
        payment_method=method,
        total=Money(amount=total.amount, currency=group.currency),
        lines=[stored_line(row, group.currency) for row in inserted],
        locked=False,
        created_at=created_at,
    )


async def set_order(session: AsyncSession, order_id: UUID, **values: object) -> None:
    """Change an order's status, total (`total_amount`) or flag."""
    await session.execute(update(orders).where(orders.c.order_id == order_id).values(**values, updated_at=func.now()))


async def insert_amendment(
    session: AsyncSession,
    *,
    amendment_id: UUID,
    order_id: UUID,
    status: domain.OrderStatus,
    added: Sequence[OrderLine],
    added_total: Money,
    hold_id: UUID | None,
) -> None:
    await session.execute(
        order_amendments.insert().values(
            amendment_id=amendment_id,
            order_id=order_id,
            status=status.value,
            added_total=added_total.amount,
            hold_id=hold_id,
        )
    )
    await ORDER_LINES.add(session, order_id, added, amendment_id)


async def set_amendment(session: AsyncSession, amendment_id: UUID, **values: object) -> None:
    await session.execute(
        update(order_amendments)
        .where(order_amendments.c.amendment_id == amendment_id)
        .values(**values, updated_at=func.now())
    )


async def insert_removal(
    session: AsyncSession,
    *,
    removal_id: UUID,
    order_id: UUID,
    line_number: int,
    quantity: Decimal,
    amount: Money,
    reason: str,
    removed_by: UUID,
) -> None:
    await session.execute(
        order_line_removals.insert().values(
            removal_id=removal_id,
            order_id=order_id,
            line_number=line_number,
            quantity=quantity,
            amount=amount.amount,
            reason=reason,
            removed_by=removed_by,
        )
    )


async def product_unit(session: AsyncSession, product_id: UUID | None) -> domain.Unit | None:
    """The unit of an ordered product (order lines do not keep it); None for a line without one."""
    if product_id is None:
        return None
    unit = await session.scalar(select(products.c.unit).where(products.c.product_id == product_id))
    return None if unit is None else domain.Unit(unit)


async def order_row_for_update(session: AsyncSession, group_id: UUID, order_id: UUID) -> Row[Any] | None:
    return (
        await session.execute(
            select(orders).where(orders.c.order_id == order_id, orders.c.group_id == group_id).with_for_update()
        )
    ).first()


async def amendment_row_for_update(session: AsyncSession, order_id: UUID, amendment_id: UUID) -> Row[Any] | None:
    return (
        await session.execute(
            select(order_amendments)
            .where(order_amendments.c.amendment_id == amendment_id, order_amendments.c.order_id == order_id)
            .with_for_update()
        )
    ).first()


async def contract_lines(session: AsyncSession, condition: ColumnElement[bool], currency: str) -> list[OrderLine]:
    """Order lines as the events carry them."""
    return [as_order_line(stored_line(row, currency)) for row in await ORDER_LINES.of(session, condition)]


# ------------------------------------------------------------------ subscriptions


class SubscriptionOut(BaseModel):
    subscription_id: UUID
    group_id: UUID
    contract_id: UUID
    contract_name: str
    member_id: UUID
    member_name: str = Field(description="The member's name as the group knows it now")
    member_email: str
    payment_method: PaymentMethod | None
    distribution_ids: list[UUID]
    total: Money = Field(
        description="What the member owes for the contract: lines x distributions (R19), plus additions"
    )
    lines: list[OrderLineOut]
    created_at: datetime


async def existing_subscription(session: AsyncSession, contract_id: UUID, member_id: UUID) -> UUID | None:
    return await session.scalar(
        select(subscriptions.c.subscription_id).where(
            subscriptions.c.contract_id == contract_id, subscriptions.c.member_id == member_id
        )
    )


async def load_subscription(
    session: AsyncSession, group_id: UUID, subscription_id: UUID, *, for_update: bool = False
) -> SubscriptionOut:
    statement = _subscriptions_with_words().where(
        subscriptions.c.subscription_id == subscription_id, subscriptions.c.group_id == group_id
    )
    if for_update:
        statement = statement.with_for_update(of=subscriptions)
    row = (await session.execute(statement)).first()
    if row is None:
        raise NotFound(f"no subscription {subscription_id} in group {group_id}")
    lines = await SUBSCRIPTION_LINES.of(session, subscription_lines.c.subscription_id == subscription_id)
    return _subscription_out(row, lines)


def _subscription_out(row: Row[Any], lines: Sequence[Row[Any]]) -> SubscriptionOut:
    return record(
        SubscriptionOut,
        row,
        total=Money(amount=row.total_amount, currency=row.currency),
        lines=[stored_line(line, row.currency) for line in lines],
    )


def _member_of(table: Table) -> ColumnElement[bool]:
    return and_(members.c.group_id == table.c.group_id, members.c.member_id == table.c.member_id)


# Who an order or a subscription is for, in words (the member row stays when they leave).
_MEMBER_WORDS = (members.c.name.label("member_name"), members.c.email.label("member_email"))


def _subscriptions_with_words() -> Select[Any]:
    return select(subscriptions, catalogs.c.name.label("contract_name"), *_MEMBER_WORDS).select_from(
        subscriptions.join(catalogs, catalogs.c.catalog_id == subscriptions.c.contract_id).join(
            members, _member_of(subscriptions)
        )
    )


async def find_subscriptions(
    session: AsyncSession,
    group_id: UUID,
    *,
    member_id: UUID | None = None,
    contract_id: UUID | None = None,
    page: PageRequest | None = None,
) -> list[SubscriptionOut]:
    """The group's subscriptions (one member's, one contract's when given), oldest first, with
    their lines: two queries whatever their number (one page of them with `page`)."""
    statement = _subscriptions_with_words().where(subscriptions.c.group_id == group_id)
    if member_id is not None:
        statement = statement.where(subscriptions.c.member_id == member_id)
    if contract_id is not None:
        statement = statement.where(subscriptions.c.contract_id == contract_id)
    order_key = (subscriptions.c.created_at, subscriptions.c.subscription_id)
    rows = (await session.execute(page.apply(statement, *order_key) if page else statement.order_by(*order_key))).all()
    lines: dict[UUID, list[Row[Any]]] = {row.subscription_id: [] for row in rows}
    if lines:
        for line in await SUBSCRIPTION_LINES.of(session, subscription_lines.c.subscription_id.in_(list(lines))):
            lines[line.subscription_id].append(line)
    return [_subscription_out(row, lines[row.subscription_id]) for row in rows]


async def insert_subscription(
    session: AsyncSession,
    *,
    subscription_id: UUID,
    group: GroupOut,
    contract_id: UUID,
    member_id: UUID,
    method: PaymentMethod | None,
    distribution_ids: list[UUID],
    lines: Sequence[OrderLine],
    total: Money,
) -> None:
    await session.execute(
        subscriptions.insert().values(
            subscription_id=subscription_id,
            group_id=group.group_id,
            contract_id=contract_id,
            member_id=member_id,
            payment_method=method,
            distribution_ids=distribution_ids,
            total_amount=total.amount,
            currency=group.currency,
        )
    )
    await SUBSCRIPTION_LINES.add(session, subscription_id, lines)


async def set_subscription_total(session: AsyncSession, subscription_id: UUID, total: Money) -> None:
    await session.execute(
        update(subscriptions)
        .where(subscriptions.c.subscription_id == subscription_id)
        .values(total_amount=total.amount, updated_at=func.now())
    )


async def insert_subscription_amendment(
    session: AsyncSession,
    *,
    amendment_id: UUID,
    subscription_id: UUID,
    distribution_count: int,
    added: Sequence[OrderLine],
    added_total: Money,
) -> None:
    await session.execute(
        subscription_amendments.insert().values(
            amendment_id=amendment_id,
            subscription_id=subscription_id,
            distribution_count=distribution_count,
            added_total=added_total.amount,
        )
    )
    await SUBSCRIPTION_LINES.add(session, subscription_id, added, amendment_id)


async def member_orders_at(
    session: AsyncSession, group_id: UUID, member_id: UUID, distribution_id: UUID
) -> tuple[UUID | None, int]:
    """The member's active order for the distribution, if any (domain.ACTIVE_STATUSES), and how
    many orders (any status) they placed for it: one query, order placement needs both."""
    active = and_(
        orders.c.status.in_([s.value for s in domain.ACTIVE_STATUSES]),
        orders.c.flagged_reason.is_(None),
    )
    row = (
        await session.execute(
            select(
                func.array_agg(orders.c.order_id).filter(active).label("active"),
                func.count().label("placed"),
            ).where(
                orders.c.group_id == group_id,
                orders.c.member_id == member_id,
                orders.c.distribution_id == distribution_id,
            )
        )
    ).one()
    return (row.active[0] if row.active else None), int(row.placed)


# ------------------------------------------------------------------ money-pot holds asked for


async def ended_asks(session: AsyncSession, attempt_id: UUID) -> int:
    """How many holds asked for this attempt ended without its order (refused, released, expired)."""
    ended = [domain.HoldState.REFUSED.value, domain.HoldState.RELEASED.value, domain.HoldState.EXPIRED.value]
    return int(
        await session.scalar(
            select(func.count()).where(hold_requests.c.attempt_id == attempt_id, hold_requests.c.status.in_(ended))
        )
        or 0
    )


@dataclass(frozen=True)
class AskedHold:
    hold_id: UUID
    attempt_id: UUID
    group_id: UUID
    member_id: UUID
    subject_id: UUID
    amount: Money
    grant_before: datetime
    expires_at: datetime


async def hold_asked(session: AsyncSession, hold: AskedHold) -> bool:
    """Record (before asking) that orders asks the ledger for `hold`. The same hold asked again
    while open (a retry of its attempt) moves its deadline and expiry on. False when it is no
    longer open (resolved since it was chosen): nothing is recorded, it must not be asked."""
    values = {
        "hold_id": hold.hold_id,
        "attempt_id": hold.attempt_id,
        "group_id": hold.group_id,
        "member_id": hold.member_id,
        "subject_id": hold.subject_id,
        "amount": hold.amount.amount,
        "currency": hold.amount.currency,
        "grant_before": hold.grant_before,
        "expires_at": hold.expires_at,
        "status": domain.HoldState.ASKED.value,
    }
    statement = pg_insert(hold_requests).values(values)
    still_open = hold_requests.c.status == domain.HoldState.ASKED.value
    recorded = await session.scalar(
        statement.on_conflict_do_update(
            index_elements=[hold_requests.c.hold_id],
            set_={
                "grant_before": statement.excluded.grant_before,
                "expires_at": statement.excluded.expires_at,
                "asked_at": func.now(),
            },
            where=still_open,
        ).returning(hold_requests.c.hold_id)
    )
    return recorded is not None


async def hold_resolved(session: AsyncSession, hold_id: UUID, state: domain.HoldState) -> domain.HoldState | None:
    """Move an asked hold to `state` (committed, refused, released or expired), waiting for any
    other transaction that holds its row. Returns None when it was moved, else the state it was
    already in (another request recorded its order, or it was given back)."""
    moved = await session.scalar(
        update(hold_requests)
        .where(hold_requests.c.hold_id == hold_id, hold_requests.c.status == domain.HoldState.ASKED.value)
        .values(status=state.value, resolved_at=func.now())
        .returning(hold_requests.c.hold_id)
    )
    if moved is not None:
        return None
    current = await session.scalar(select(hold_requests.c.status).where(hold_requests.c.hold_id == hold_id))
    return domain.HoldState(current) if current is not None else None


@dataclass(frozen=True)
class OpenHold:
    hold_id: UUID
    group_id: UUID
    expires_at: datetime


async def lock_open_hold(session: AsyncSession, hold_id: UUID) -> OpenHold | None:
    """The hold if it is still asked (its order not recorded), its row locked until the end of
    the transaction."""
    row = (
        await session.execute(
            select(hold_requests.c.hold_id, hold_requests.c.group_id, hold_requests.c.expires_at)
            .where(hold_requests.c.hold_id == hold_id, hold_requests.c.status == domain.HoldState.ASKED.value)
            .with_for_update()
        )
    ).first()
    return OpenHold(row.hold_id, row.group_id, row.expires_at) if row is not None else None


async def lock_lapsed_holds(session: AsyncSession, asked_before: datetime, limit: int) -> list[OpenHold]:
    """Holds still asked whose deadline passed before `asked_before`: their attempt died between
    asking and recording its order. Rows other transactions hold (an order being recorded, another
    replica's pass) are skipped."""
    rows = (
        await session.execute(
            select(hold_requests.c.hold_id, hold_requests.c.group_id, hold_requests.c.expires_at)
            .where(
                hold_requests.c.status == domain.HoldState.ASKED.value,
                hold_requests.c.grant_before < asked_before,
            )
            .order_by(hold_requests.c.grant_before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    return [OpenHold(r.hold_id, r.group_id, r.expires_at) for r in rows]


async def set_hold_state(session: AsyncSession, hold_id: UUID, state: domain.HoldState) -> None:
    await session.execute(
        update(hold_requests)
        .where(hold_requests.c.hold_id == hold_id)
        .values(status=state.value, resolved_at=func.now())
    )
