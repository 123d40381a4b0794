"""Orders HTTP API, part 1: groups and their payment settings, members, catalogs and products,
distributions. Orders and subscriptions are in orders_api.py."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, EmailStr, Field, ValidationError
from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    CatalogRef,
    CurrencyCode,
    Language,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    Money,
    PaymentMethod,
    Role,
)
from cagette_contracts.common import TimeZoneName
from cagette_contracts.inputs import AsciiDecimal, AwareUtcDatetime, Flag, Label, Name, Place, RequestBody
from cagette_contracts.money import MinorUnits
from cagette_runtime import idempotency, outbox
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.clock import now
from cagette_runtime.db import Database
from cagette_runtime.errors import Invalid, NotFound
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page

from . import domain, store, usecases
from .store import (
    DistributionOut,
    GroupOut,
    GroupSettingsIn,
    MemberOut,
    ProductOut,
    distribution_out,
    load_distribution,
    load_group,
    load_member,
    payment_settings,
    product_out,
)
from .tables import catalogs, distribution_catalogs, distributions, groups, members, orders, products
from .usecases import settings_event

router = APIRouter(route_class=idempotency.IdempotentRoute)


# ------------------------------------------------------------------ groups


class GroupSettingsPatch(RequestBody):
    """Only the fields given change; the result is validated as a whole."""

    name: Name | None = None
    currency: CurrencyCode | None = None
    language: Language | None = None
    time_zone: TimeZoneName | None = None
    payments_enabled: Flag | None = None
    payment_methods: list[PaymentMethod] | None = Field(default=None, max_length=len(PaymentMethod))
    allow_negative_money_pot: Flag | None = None
    cheque_payee: Label | None = None
    transfer_iban: Annotated[Label, Field(max_length=64)] | None = None
    transfer_bic: Annotated[Label, Field(max_length=16)] | None = None
    card_payments_configured: Flag | None = Field(
        default=None,
        description="Read-only (follows the payments service's card settings): a different value is refused (422)",
    )
    order_cutoff_hours: int | None = Field(default=None, ge=0, le=domain.MAX_CUTOFF_HOURS)


CARD_FLAG_READ_ONLY = (
    "card_payments_configured is read-only: it follows the group's card settings on the payments service "
    "(a coordinator enables card payments there with PUT /groups/{group_id}/card-settings)"
)


def _normalised(group_id: UUID, body: GroupSettingsIn, previous: GroupOut | None = None) -> GroupOut:
    settings = payment_settings(body).validated(payment_settings(previous) if previous is not None else None)
    return GroupOut(
        group_id=group_id,
        **body.model_dump(exclude={"payment_methods", "cheque_payee", "transfer_iban", "transfer_bic"}),
        payment_methods=list(settings.payment_methods),
        cheque_payee=settings.cheque_payee,
        transfer_iban=settings.transfer_iban,
        transfer_bic=settings.transfer_bic,
    )


@router.post("/groups", status_code=status.HTTP_201_CREATED, response_model=GroupOut, tags=["groups"])
async def create_group(body: GroupSettingsIn, principal: CurrentPrincipal, database: DatabaseDep) -> GroupOut:
    """Create a buying group (platform administrators). Publishes GroupSettingsChanged."""
    principal.require_platform_admin()
    if body.card_payments_configured:
        raise Invalid(f"{CARD_FLAG_READ_ONLY}; a new group starts without card payments")
    group = _normalised(uuid.uuid4(), body)
    async with database.transaction() as session:
        await session.execute(groups.insert().values(**group.model_dump(mode="json")))
        await outbox.add(session, settings_event(group))
    return group


@router.get("/groups/{group_id}", response_model=GroupOut, tags=["groups"])
async def get_group(group_id: UUID, principal: CurrentPrincipal, database: DatabaseDep) -> GroupOut:
    principal.require_group_member(group_id)
    async with database.transaction() as session:
        return await load_group(session, group_id)


@router.patch("/groups/{group_id}", response_model=GroupOut, tags=["groups"])
async def update_group(
    group_id: UUID, body: GroupSettingsPatch, principal: CurrentPrincipal, database: DatabaseDep
) -> GroupOut:
    """Change the group's settings (coordinators). Every change publishes GroupSettingsChanged
    with the full new state; invalid combinations are refused with the reason."""
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        current = await load_group(session, group_id, for_update=True)
        changes = body.model_dump(exclude_unset=True)
        if "card_payments_configured" in changes:
            if changes.pop("card_payments_configured") != current.card_payments_configured:
                raise Invalid(CARD_FLAG_READ_ONLY)
        try:
            merged = GroupSettingsIn.model_validate(current.model_dump(exclude={"group_id"}) | changes)
        except ValidationError as exc:  # e.g. null for a setting that must have a value
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        group = _normalised(group_id, merged, current)
        if group == current:
            return current
        if group.currency != current.currency:
            priced = await session.scalar(
                select(exists().where(products.c.group_id == group_id).correlate(None))
            ) or await session.scalar(select(exists().where(orders.c.group_id == group_id).correlate(None)))
            domain.check_currency_change(current.currency, group.currency, has_priced_things=bool(priced))
        await session.execute(
            update(groups)
            .where(groups.c.group_id == group_id)
            .values(**group.model_dump(mode="json", exclude={"group_id"}), updated_at=func.now())
        )
        await outbox.add(session, settings_event(group))
    return group


# ------------------------------------------------------------------ members


class MemberIn(RequestBody):
    member_id: UUID | None = Field(
        default=None,
        description="The member's user id (the `sub` of their tokens). Omitted: the id this e-mail already has "
        "in another group (one account per person across groups), else a new one.",
    )
    role: Role = Role.MEMBER
    name: Name
    email: EmailStr
    language: Language | None = Field(default=None, description="Defaults to the group's language")


class MemberPatch(RequestBody):
    role: Role | None = Field(default=None, description="Coordinators only")
    name: Name | None = None
    email: EmailStr | None = None
    language: Language | None = None


@router.post(
    "/groups/{group_id}/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut, tags=["members"]
)
async def add_member(group_id: UUID, body: MemberIn, principal: CurrentPrincipal, database: DatabaseDep) -> MemberOut:
    """Add a member to the group (coordinators). Publishes MemberJoined."""
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        group = await load_group(session, group_id)
        member_id = body.member_id or await store.known_member_id(session, body.email) or uuid.uuid4()
        member = MemberOut(
            group_id=group_id,
            **body.model_dump(exclude={"language", "member_id"}),
            member_id=member_id,
            language=body.language or group.language,
        )
        await store.add_or_rejoin_member(session, member)
        values = member.model_dump(mode="json")
        await outbox.add(session, MemberJoined.model_validate({**values, **outbox.event_context(group_id)}))
    return member


@router.get("/groups/{group_id}/members", response_model=list[MemberOut], tags=["members"], responses=PAGINATED)
async def list_members(
    group_id: UUID, principal: CurrentPrincipal, database: DatabaseDep, page: Page, response: Response
) -> list[MemberOut]:
    """The group's current members by name, one page at a time."""
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        await load_group(session, group_id)
        query = select(members).where(members.c.group_id == group_id, members.c.left_at.is_(None))
        rows = (await session.execute(page.apply(query, members.c.name, members.c.member_id))).mappings()
        found = [MemberOut.model_validate(dict(row)) for row in rows]
    return page.finish(found, lambda member: (member.name, member.member_id), response)


@router.patch("/groups/{group_id}/members/{member_id}", response_model=MemberOut, tags=["members"])
async def update_member(
    group_id: UUID, member_id: UUID, body: MemberPatch, principal: CurrentPrincipal, database: DatabaseDep
) -> MemberOut:
    """Change a member's details (the member themself, or a coordinator) or role (coordinators).
    Publishes MemberUpdated with the full new state."""
    principal.require_self_or_coordinator(group_id, member_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "role" in changes:
        principal.require_coordinator(group_id)
    async with database.transaction() as session:
        current = await load_member(session, group_id, member_id, for_update=True)
        member = current.model_copy(update=changes)
        if member == current:
            return current
        if domain.demotes_coordinator(current.role, member.role):
            others = await store.other_coordinators(session, group_id, member_id)
            domain.check_keeps_coordinator(current.role, member.role, others)
        values = member.model_dump(mode="json")
        await session.execute(
            update(members)
            .where(members.c.group_id == group_id, members.c.member_id == member_id)
            .values(**values, updated_at=func.now())
        )
        await outbox.add(session, MemberUpdated.model_validate({**values, **outbox.event_context(group_id)}))
    return member


@router.delete("/groups/{group_id}/members/{member_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["members"])
async def remove_member(group_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep) -> None:
    """A member leaves the group (themself) or a coordinator removes them. Their account, orders
    and ledger history stay; they hold no role in the group any more, on any service, once the
    services consumed the MemberLeft this publishes. Re-adding them later is allowed."""
    principal.require_self_or_coordinator(group_id, member_id)
    async with database.transaction() as session:
        current = await load_member(session, group_id, member_id, for_update=True)
        if current.role is Role.COORDINATOR:
            others = await store.other_coordinators(session, group_id, member_id)
            domain.check_keeps_coordinator(current.role, Role.MEMBER, others)
        await store.mark_left(session, group_id, member_id)
        removed = member_id != principal.user_id
        await outbox.add(session, MemberLeft(member_id=member_id, removed=removed, **outbox.event_context(group_id)))


class OrdersMemberships:
    """Current roles for authorization, read from orders' own members table (the source)."""

    def __init__(self, db: Database) -> None:
        self.database = db

    async def known_roles(self, user_id: UUID) -> dict[UUID, Role | None]:
        async with self.database.sessionmaker() as session:
            return await store.known_roles(session, user_id)


# ------------------------------------------------------------------ catalogs and products


FeeRate = Annotated[AsciiDecimal, Field(ge=0, le=domain.MAX_FEE_RATE, max_digits=6, decimal_places=4)]


class ProductIn(RequestBody):
    name: Name
    unit_price: MinorUnits = Field(description="Price of one unit in minor units (cents)")
    unit: domain.Unit = domain.Unit.PIECE
    fee_rate: FeeRate = Field(default=Decimal(0), description="Optional fee added to the price, e.g. 0.02 for 2%")


class CatalogIn(RequestBody):
    name: Name
    kind: domain.CatalogKind = Field(
        default=domain.CatalogKind.VARIABLE,
        description="variable: products ordered per distribution; subscription: an AMAP contract",
    )
    products: list[ProductIn] = Field(default=[], max_length=500)


class CatalogOut(BaseModel):
    catalog_id: UUID
    group_id: UUID
    name: str
    kind: domain.CatalogKind
    products: list[ProductOut]


async def _insert_products(
    session: AsyncSession, group: GroupOut, catalog_id: UUID, items: list[ProductIn]
) -> list[ProductOut]:
    out = []
    for item in items:
        price = Money(amount=item.unit_price, currency=group.currency)
        domain.check_product(item.name, price, item.fee_rate)
        out.append(
            ProductOut(
                product_id=uuid.uuid4(),
                catalog_id=catalog_id,
                name=item.name.strip(),
                unit=item.unit,
                unit_price=price,
                fee_rate=item.fee_rate,
            )
        )
    if out:
        await session.execute(
            products.insert(),
            [
                {
                    "product_id": p.product_id,
                    "catalog_id": catalog_id,
                    "group_id": group.group_id,
                    "name": p.name,
                    "unit": p.unit.value,
                    "unit_price": p.unit_price.amount,
                    "fee_rate": p.fee_rate,
                }
                for p in out
            ],
        )
    return out


async def load_catalog(session: AsyncSession, group_id: UUID, catalog_id: UUID) -> CatalogOut:
    row = (
        await session.execute(
            select(catalogs).where(catalogs.c.catalog_id == catalog_id, catalogs.c.group_id == group_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"no catalog {catalog_id} in group {group_id}")
    items = (
        await session.execute(
            store.products_with_currency()
            .where(products.c.catalog_id == catalog_id)
            .order_by(products.c.created_at, products.c.name)
        )
    ).all()
    return CatalogOut(
        catalog_id=row.catalog_id,
        group_id=row.group_id,
        name=row.name,
        kind=domain.CatalogKind(row.kind),
        products=[product_out(item) for item in items],
    )


@router.post(
    "/groups/{group_id}/catalogs", status_code=status.HTTP_201_CREATED, response_model=CatalogOut, tags=["catalogs"]
)
async def create_catalog(
    group_id: UUID, body: CatalogIn, principal: CurrentPrincipal, database: DatabaseDep
) -> CatalogOut:
    """Create a variable catalog or a subscription contract with its products (coordinators).
    Publishes CatalogCreated (with the products)."""
    principal.require_coordinator(group_id)
    catalog = CatalogRef(catalog_id=uuid.uuid4(), name=body.name.strip(), kind=body.kind)
    async with database.transaction() as session:
        group = await load_group(session, group_id)
        await session.execute(
            catalogs.insert().values(
                catalog_id=catalog.catalog_id, group_id=group_id, name=catalog.name, kind=catalog.kind.value
            )
        )
        created = await _insert_products(session, group, catalog.catalog_id, body.products)
        await usecases.publish_catalog_created(session, group_id, catalog, created)
    return CatalogOut(**catalog.model_dump(), group_id=group_id, products=created)


@router.get("/groups/{group_id}/catalogs", response_model=list[CatalogOut], tags=["catalogs"], responses=PAGINATED)
async def list_catalogs(
    group_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    page: Page,
    response: Response,
    kind: domain.CatalogKind | None = None,
) -> list[CatalogOut]:
    """The group's catalogs with their products, by name (`kind=subscription`: the contracts),
    one page at a time."""
    principal.require_group_member(group_id)
    async with database.transaction() as session:
        await load_group(session, group_id)
        query = select(catalogs.c.catalog_id).where(catalogs.c.group_id == group_id)
        if kind is not None:
            query = query.where(catalogs.c.kind == kind.value)
        ids = (await session.scalars(page.apply(query, catalogs.c.name, catalogs.c.catalog_id))).all()
        found = [await load_catalog(session, group_id, catalog_id) for catalog_id in ids]
    return page.finish(found, lambda catalog: (catalog.name, catalog.catalog_id), response)


@router.get("/groups/{group_id}/catalogs/{catalog_id}", response_model=CatalogOut, tags=["catalogs"])
async def get_catalog(
    group_id: UUID, catalog_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> CatalogOut:
    principal.require_group_member(group_id)
    async with database.transaction() as session:
        return await load_catalog(session, group_id, catalog_id)


@router.post(
    "/groups/{group_id}/catalogs/{catalog_id}/products",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductOut,
    tags=["catalogs"],
)
async def add_product(
    group_id: UUID, catalog_id: UUID, body: ProductIn, principal: CurrentPrincipal, database: DatabaseDep
) -> ProductOut:
    """Add a product to a catalog (coordinators). Products of a contract with subscribers are fixed.
    Publishes ProductCreated."""
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        group = await load_group(session, group_id)
        catalog = await load_catalog(session, group_id, catalog_id)
        (created,) = await _insert_products(session, group, catalog_id, [body])
        ref = CatalogRef(catalog_id=catalog.catalog_id, name=catalog.name, kind=catalog.kind)
        await usecases.publish_product_created(session, group_id, ref, created)
    return created


# ------------------------------------------------------------------ distributions


class DistributionIn(RequestBody):
    starts_at: AwareUtcDatetime
    place: Place
    catalog_ids: list[UUID] = Field(min_length=1, max_length=50)
    orders_open_at: AwareUtcDatetime | None = Field(default=None, description="Default: now")
    orders_close_at: AwareUtcDatetime | None = Field(default=None, description="Default: when the distribution starts")


@router.post(
    "/groups/{group_id}/distributions",
    status_code=status.HTTP_201_CREATED,
    response_model=DistributionOut,
    tags=["distributions"],
)
async def create_distribution(
    group_id: UUID, body: DistributionIn, principal: CurrentPrincipal, database: DatabaseDep
) -> DistributionOut:
    """Plan a distribution: date, place, the catalogs delivered, when orders open and close
    (coordinators). Publishes DistributionCreated."""
    principal.require_coordinator(group_id)
    open_at = body.orders_open_at or now()
    close_at = body.orders_close_at or body.starts_at
    domain.check_distribution_times(body.starts_at, open_at, close_at)
    if len(set(body.catalog_ids)) != len(body.catalog_ids):
        raise Invalid("a catalog is listed twice")
    async with database.transaction() as session:
        group = await load_group(session, group_id)
        known = {
            row.catalog_id: CatalogRef(catalog_id=row.catalog_id, name=row.name, kind=row.kind)
            for row in await session.execute(
                select(catalogs.c.catalog_id, catalogs.c.name, catalogs.c.kind).where(
                    catalogs.c.group_id == group_id, catalogs.c.catalog_id.in_(body.catalog_ids)
                )
            )
        }
        missing = [str(c) for c in body.catalog_ids if c not in known]
        if missing:
            raise Invalid(f"no catalog {', '.join(missing)} in group {group_id}")
        distribution_id = uuid.uuid4()
        await session.execute(
            distributions.insert().values(
                distribution_id=distribution_id,
                group_id=group_id,
                starts_at=body.starts_at,
                place=body.place.strip(),
                orders_open_at=open_at,
                orders_close_at=close_at,
            )
        )
        await session.execute(
            distribution_catalogs.insert(),
            [{"distribution_id": distribution_id, "catalog_id": c} for c in body.catalog_ids],
        )
        created = await load_distribution(session, group, distribution_id)
        await usecases.publish_distribution_created(session, created, [known[c] for c in body.catalog_ids])
        return created


@router.get(
    "/groups/{group_id}/distributions",
    response_model=list[DistributionOut],
    tags=["distributions"],
    responses=PAGINATED,
)
async def list_distributions(
    group_id: UUID, principal: CurrentPrincipal, database: DatabaseDep, page: Page, response: Response
) -> list[DistributionOut]:
    """The group's distributions, earliest first, one page at a time."""
    principal.require_group_member(group_id)
    async with database.transaction() as session:
        group = await load_group(session, group_id)
        query = select(distributions).where(distributions.c.group_id == group_id)
        by_date = (distributions.c.starts_at, distributions.c.distribution_id)
        rows = (await session.execute(page.apply(query, *by_date))).all()
        links = (
            await session.execute(
                select(distribution_catalogs).where(
                    distribution_catalogs.c.distribution_id.in_([r.distribution_id for r in rows])
                )
            )
        ).all()
        by_distribution: dict[UUID, list[UUID]] = {}
        for link in links:
            by_distribution.setdefault(link.distribution_id, []).append(link.catalog_id)
    found = [distribution_out(group, row, by_distribution.get(row.distribution_id, [])) for row in rows]
    return page.finish(found, lambda d: (d.starts_at, d.distribution_id), response)


@router.get(
    "/groups/{group_id}/distributions/{distribution_id}", response_model=DistributionOut, tags=["distributions"]
)
async def get_distribution(
    group_id: UUID, distribution_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> DistributionOut:
    principal.require_group_member(group_id)
    async with database.transaction() as session:
        return await load_distribution(session, await load_group(session, group_id), distribution_id)
