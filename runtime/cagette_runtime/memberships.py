"""Each service's copy of who belongs to which group with which role, kept from orders'
`orders.member.*` events, so every service authorizes against the memberships it knows now.

A service declares the table in its own tables.py (`memberships_table(metadata)`, so its
migrations create it), gets the consumer from `membership_consumer`, and hands the directory to
its Service: `authenticate` then reads the caller's current roles from it on every request.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Column, DateTime, Index, MetaData, PrimaryKeyConstraint, Table, Text, Uuid, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import MemberJoined, MemberLeft, MemberUpdated, Role

from .consumer import Consumer
from .db import Database

MEMBER_EVENTS = (MemberJoined, MemberUpdated, MemberLeft)


def memberships_table(metadata: MetaData) -> Table:
    return Table(
        "memberships",
        metadata,
        Column("group_id", Uuid, nullable=False),
        Column("member_id", Uuid, nullable=False),
        # NULL once the member left or was removed (the row stays so a stale token cannot
        # bring the role back).
        Column("role", Text),
        # occurred_at of the event applied last: an older event never overwrites a newer one.
        Column("as_of", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("group_id", "member_id"),
        Index("memberships_by_member", "member_id"),
    )


def role_after(event: MemberJoined | MemberUpdated | MemberLeft) -> Role | None:
    return None if isinstance(event, MemberLeft) else event.role


async def apply_member_event(
    session: AsyncSession, table: Table, event: MemberJoined | MemberUpdated | MemberLeft
) -> None:
    role = role_after(event)
    statement = pg_insert(table).values(
        group_id=event.group_id,
        member_id=event.member_id,
        role=role.value if role else None,
        as_of=event.occurred_at,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.group_id, table.c.member_id],
            set_={"role": statement.excluded.role, "as_of": statement.excluded.as_of, "updated_at": func.now()},
            where=table.c.as_of <= statement.excluded.as_of,
        )
    )


def membership_consumer(service_name: str, table: Table, delivery_limit: int = 5) -> Consumer:
    """A consumer of its own (queue `<service>.memberships`) so role changes are applied
    without waiting behind the service's other work."""

    async def handle(session: AsyncSession, event: MemberJoined | MemberUpdated | MemberLeft) -> None:
        await apply_member_event(session, table, event)

    return Consumer(f"{service_name}.memberships", dict.fromkeys(MEMBER_EVENTS, handle), delivery_limit=delivery_limit)


class TableMemberships:
    """The MembershipDirectory read from a service's `memberships` table."""

    def __init__(self, database: Database, table: Table) -> None:
        self.database = database
        self.table = table

    async def known_roles(self, user_id: UUID) -> dict[UUID, Role | None]:
        async with self.database.sessionmaker() as session:
            rows = await session.execute(
                select(self.table.c.group_id, self.table.c.role).where(self.table.c.member_id == user_id)
            )
            return {row.group_id: Role(row.role) if row.role else None for row in rows}
