"""Ledger HTTP API (reading balances)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import select

from cagette_contracts import AccountType, Money
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.errors import NotFound

from .tables import accounts, groups

router = APIRouter(tags=["balances"])


class MemberBalance(BaseModel):
    group_id: UUID
    member_id: UUID
    balance: Money
    pending: Money
    available: Money


@router.get("/groups/{group_id}/members/{member_id}/balance", response_model=MemberBalance)
async def member_balance(group_id: UUID, member_id: UUID, principal: CurrentPrincipal, request: Request) -> MemberBalance:
    """The member's balance: positive = credit with the group, negative = owes the group."""
    principal.require_self_or_coordinator(group_id, member_id)
    database = request.app.state.service.database
    async with database.sessionmaker() as session:
        row = (
            await session.execute(
                select(accounts.c.balance, accounts.c.currency).where(
                    accounts.c.group_id == group_id,
                    accounts.c.type == AccountType.MEMBER.value,
                    accounts.c.member_id == member_id,
                )
            )
        ).first()
        if row is None:
            currency = await session.scalar(select(groups.c.currency).where(groups.c.group_id == group_id))
            if currency is None:
                raise NotFound(f"the ledger knows no account of member {member_id} in group {group_id}")
            balance = Money.zero(currency)
        else:
            balance = Money(amount=row.balance, currency=row.currency)
    zero = Money.zero(balance.currency)
    return MemberBalance(group_id=group_id, member_id=member_id, balance=balance, pending=zero, available=balance)
