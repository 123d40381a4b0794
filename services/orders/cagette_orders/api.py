"""Orders HTTP API: groups and their payment settings, members, orders."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    CurrencyCode, GroupSettingsChanged, Language, MemberJoined, Money, OrderConfirmed, OrderLine, PaymentMethod, Role,
)
from cagette_contracts.money import MinorUnits
from cagette_runtime import outbox
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.db import Database
from cagette_runtime.errors import Conflict, Forbidden, NotFound

from . import domain
from .tables import groups, members, order_lines, orders

router = APIRouter()


def _database(request: Request) -> Database:
    return request.app.state.service.database


# ------------------------------------------------------------------ groups


class GroupSettingsIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    currency: CurrencyCode = "EUR"
    language: Language = Language.FR
    payments_enabled: bool = True
    payment_methods: list[PaymentMethod] = []
    allow_negative_money_pot: bool = False
    cheque_payee: str | None = None
    transfer_iban: str | None = None
    transfer_bic: str | None = None


class GroupOut(GroupSettingsIn):
    group_id: UUID


def _settings(body: GroupSettingsIn) -> domain.PaymentSettings:
    return domain.PaymentSettings(
        payments_enabled=body.payments_enabled,
        payment_methods=tuple(body.payment_methods),
        allow_negative_money_pot=body.allow_negative_money_pot,
        cheque_payee=body.cheque_payee,
        transfer_iban=body.transfer_iban,
        transfer_bic=body.transfer_bic,
    ).validated()


@router.post("/groups", status_code=status.HTTP_201_CREATED, response_model=GroupOut, tags=["groups"])
async def create_group(body: GroupSettingsIn, principal: CurrentPrincipal, request: Request) -> GroupOut:
    """Create a buying group (platform administrators)."""
    principal.require_platform_admin()
    settings = _settings(body)
    group = GroupOut(
        group_id=uuid.uuid4(),
        **body.model_dump(exclude={"payment_methods", "transfer_iban", "transfer_bic"}),
        payment_methods=list(settings.payment_methods),
        transfer_iban=settings.transfer_iban,
        transfer_bic=settings.transfer_bic,
    )
    async with _database(request).transaction() as session:
        values = group.model_dump(mode="json")
        await session.execute(groups.insert().values(**values))
        await outbox.add(session, GroupSettingsChanged(**outbox.event_context(**values)))
    return group


async def _group(session: AsyncSession, group_id: UUID) -> GroupOut:
    row = (await session.execute(select(groups).where(groups.c.group_id == group_id))).mappings().first()
    if row is None:
        raise NotFound(f"no group {group_id}")
    return GroupOut.model_validate(dict(row))


# ------------------------------------------------------------------ members


class MemberIn(BaseModel):
    member_id: UUID = Field(description="The member's user id (the `sub` of their bearer token)")
    role: Role = Role.MEMBER
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    language: Language | None = None


class MemberOut(MemberIn):
    group_id: UUID
    language: Language


@router.post("/groups/{group_id}/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut, tags=["members"])
async def add_member(group_id: UUID, body: MemberIn, principal: CurrentPrincipal, request: Request) -> MemberOut:
    """Add a member to the group (coordinators)."""
    principal.require_coordinator(group_id)
    async with _database(request).transaction() as session:
        group = await _group(session, group_id)
        member = MemberOut(group_id=group_id, **body.model_dump(exclude={"language"}), language=body.language or group.language)
        exists = await session.scalar(
            select(members.c.member_id).where(members.c.group_id == group_id, members.c.member_id == body.member_id)
        )
        if exists:
            raise Conflict(f"{body.member_id} is already a member of group {group_id}")
        values = member.model_dump(mode="json")
        await session.execute(members.insert().values(**values))
        await outbox.add(session, MemberJoined(**outbox.event_context(**values)))
    return member


# ------------------------------------------------------------------ orders


class OrderLineIn(BaseModel):
    product_id: UUID | None = None
    product_name: str = Field(min_length=1, max_length=200)
    quantity: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=3)]
    unit_price: MinorUnits = Field(description="Unit price in minor units (cents)")


class OrderIn(BaseModel):
    payment_method: PaymentMethod | None = None
    distribution_id: UUID | None = None
    lines: list[OrderLineIn] = Field(min_length=1, max_length=500)


class OrderOut(BaseModel):
    order_id: UUID
    group_id: UUID
    member_id: UUID
    status: str
    payment_method: PaymentMethod | None
    total: Money
    lines: list[OrderLine]


@router.post("/groups/{group_id}/orders", status_code=status.HTTP_201_CREATED, response_model=OrderOut, tags=["orders"])
async def place_order(group_id: UUID, body: OrderIn, principal: CurrentPrincipal, request: Request) -> OrderOut:
    """Place an order for yourself in a group you belong to; it is confirmed at once."""
    principal.require_group_member(group_id)
    async with _database(request).transaction() as session:
        group = await _group(session, group_id)
        is_member = await session.scalar(
            select(members.c.member_id).where(members.c.group_id == group_id, members.c.member_id == principal.user_id)
        )
        if not is_member:
            raise Forbidden(f"you are not a registered member of group {group_id}")
        settings = domain.PaymentSettings(group.payments_enabled, tuple(group.payment_methods))
        settings.check_method(body.payment_method)
        priced, order_total = domain.price(
            [
                domain.LineRequest(line.product_name, line.quantity, Money(amount=line.unit_price, currency=group.currency), line.product_id)
                for line in body.lines
            ],
            group.currency,
        )
        order_id = uuid.uuid4()
        lines = [
            OrderLine(
                product_id=line.request.product_id, product_name=line.request.product_name, quantity=line.request.quantity,
                unit_price=line.request.unit_price, fee_rate=line.request.fee_rate, line_total=line.line_total,
            )
            for line in priced
        ]
        await session.execute(
            orders.insert().values(
                order_id=order_id, group_id=group_id, member_id=principal.user_id, distribution_id=body.distribution_id,
                payment_method=body.payment_method, status="confirmed", total_amount=order_total.amount, currency=group.currency,
            )
        )
        await session.execute(
            order_lines.insert(),
            [
                {"order_id": order_id, "line_number": number, "product_id": line.product_id, "product_name": line.product_name,
                 "quantity": line.quantity, "unit_price": line.unit_price.amount, "fee_rate": line.fee_rate,
                 "line_total": line.line_total.amount}
                for number, line in enumerate(lines, start=1)
            ],
        )
        if group.payments_enabled:
            # R1: with payments off, orders carry no money tracking at all.
            await outbox.add(
                session,
                OrderConfirmed(
                    **outbox.event_context(group_id=group_id),
                    order_id=order_id, member_id=principal.user_id, distribution_id=body.distribution_id,
                    payment_method=body.payment_method, lines=lines, total=order_total,
                ),
            )
    return OrderOut(
        order_id=order_id, group_id=group_id, member_id=principal.user_id, status="confirmed",
        payment_method=body.payment_method, total=order_total, lines=lines,
    )
