"""Reading and writing the local copy of the facts (directory, orders, payments, balances)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from sqlalchemy import Table, and_, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event, Money
from cagette_runtime.db import AnyRow
from cagette_runtime.errors import NotYet
from cagette_runtime.rows import record
from cagette_runtime.upserts import newest_wins

from .domain import BalanceState, Group, Member
from .tables import declared_payments, group_directory, member_balances, member_directory, member_preferences


class NotYetKnown(NotYet):
    """A fact this event needs has not arrived yet (e.g. MemberJoined is still on its way): the
    consumer retries the message a little later, up to the delivery limit."""


async def lock(session: AsyncSession, key: str) -> None:
    """Serialise the transactions about one thing (e.g. an order) until this one ends."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


def columns_of(table: Table, event: Event, **computed: Any) -> dict[str, Any]:
    """A row of `table` from `event`: each column the event has a field of the same name for
    (an enum as its value), and the `computed` ones (named otherwise, or derived)."""
    row: dict[str, Any] = {}
    for column in table.columns:
        if column.name in computed:
            row[column.name] = computed[column.name]
        elif column.name in type(event).model_fields:
            value = getattr(event, column.name)
            row[column.name] = value.value if isinstance(value, Enum) else value
    return row


async def keep_newest(session: AsyncSession, table: Table, row: dict[str, Any], *, key: tuple[str, ...]) -> None:
    """Insert the row, or update the one of the same `key` unless it is newer: events may arrive
    out of order, and an older one must not undo a newer one (`updated_at` tells)."""
    keyed = {name: row[name] for name in key}
    changed = {name: value for name, value in row.items() if name not in key}
    await session.execute(newest_wins(table, keyed, changed, "updated_at"))


async def load_group(session: AsyncSession, group_id: UUID) -> Group:
    row = (await session.execute(select(group_directory).where(group_directory.c.group_id == group_id))).first()
    if row is None:
        raise NotYetKnown(f"group {group_id} is not in the directory yet")
    return record(Group, row)


async def load_member(session: AsyncSession, group_id: UUID, member_id: UUID) -> Member:
    row = (
        await session.execute(
            select(member_directory, func.coalesce(member_preferences.c.reminders_opt_out, False).label("opt_out"))
            .select_from(
                member_directory.outerjoin(
                    member_preferences,
                    and_(
                        member_preferences.c.group_id == member_directory.c.group_id,
                        member_preferences.c.member_id == member_directory.c.member_id,
                    ),
                )
            )
            .where(and_(member_directory.c.group_id == group_id, member_directory.c.member_id == member_id))
        )
    ).first()
    if row is None:
        raise NotYetKnown(f"member {member_id} of group {group_id} is not in the directory yet")
    return record(Member, row, reminders_opt_out=bool(row.opt_out))


async def load_coordinators(session: AsyncSession, group_id: UUID) -> list[Member]:
    """The group's coordinators as last told by MemberJoined / MemberUpdated, by name."""
    rows = (
        await session.execute(
            select(member_directory)
            .where(and_(member_directory.c.group_id == group_id, member_directory.c.role == "coordinator"))
            .order_by(member_directory.c.name, member_directory.c.member_id)
        )
    ).all()
    return [record(Member, row) for row in rows]


async def members_without_role(session: AsyncSession, group_id: UUID) -> int:
    """How many of the group's members have no known role (directory rows kept before 0004)."""
    return (
        await session.execute(
            select(func.count())
            .select_from(member_directory)
            .where(and_(member_directory.c.group_id == group_id, member_directory.c.role.is_(None)))
        )
    ).scalar_one()


async def load_recipient(session: AsyncSession, group_id: UUID, member_id: UUID) -> tuple[Group, Member]:
    return await load_group(session, group_id), await load_member(session, group_id, member_id)


def state_from_row(row: AnyRow | None, currency: str) -> BalanceState:
    if row is None:
        return BalanceState(currency=currency)
    balance = None if row.balance is None else Money(amount=row.balance, currency=row.currency)
    return record(BalanceState, row, balance=balance)


async def load_balance(
    session: AsyncSession, group_id: UUID, member_id: UUID, currency: str, *, for_update: bool = False
) -> BalanceState:
    """The balance state (locked for update when asked; created empty if missing)."""
    if for_update:
        await session.execute(
            pg_insert(member_balances)
            .values(group_id=group_id, member_id=member_id, currency=currency)
            .on_conflict_do_nothing()
        )
    query = select(member_balances).where(
        and_(member_balances.c.group_id == group_id, member_balances.c.member_id == member_id)
    )
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return state_from_row(row, currency)


async def save_balance(session: AsyncSession, group_id: UUID, member_id: UUID, state: BalanceState) -> None:
    values = {
        "currency": state.balance.currency if state.balance is not None else state.currency,
        "balance": None if state.balance is None else state.balance.amount,
        "as_of": state.as_of,
        "negative_since": state.negative_since,
        "episode_event_id": state.episode_event_id,
        "episode_closed_at": state.episode_closed_at,
        "last_reminder_at": state.last_reminder_at,
    }
    await session.execute(
        pg_insert(member_balances)
        .values(group_id=group_id, member_id=member_id, **values)
        .on_conflict_do_update(index_elements=[member_balances.c.group_id, member_balances.c.member_id], set_=values)
    )


async def pending_payments(
    session: AsyncSession, group_id: UUID, member_id: UUID, currency: str, as_of: datetime | None
) -> Money:
    """Payments announced and not yet in the balance: declared ones not received or cancelled,
    and received ones the ledger had not posted yet when it last reported the balance."""
    not_in_balance = declared_payments.c.status == "declared"
    received_after = (
        and_(declared_payments.c.status == "received", declared_payments.c.settled_at > as_of)
        if as_of is not None
        else (declared_payments.c.status == "received")
    )
    total = (
        await session.execute(
            select(
                func.coalesce(
                    func.sum(func.coalesce(declared_payments.c.received_amount, declared_payments.c.amount)), 0
                )
            ).where(
                and_(
                    declared_payments.c.group_id == group_id,
                    declared_payments.c.member_id == member_id,
                    declared_payments.c.currency == currency,
                    or_(not_in_balance, received_after),
                )
            )
        )
    ).scalar_one()
    return Money(amount=int(total), currency=currency)
