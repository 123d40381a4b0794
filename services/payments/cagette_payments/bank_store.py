"""SQL for bank statements: imports, lines, saved CSV mappings, standing references."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_runtime.pagination import PageRequest

from .domain import references
from .tables import bank_imports, bank_lines, bank_settings, member_references, payments

REFERENCE_ATTEMPTS = 8


async def lock_group_imports(session: AsyncSession, group_id: UUID) -> None:
    """One import (or review) of a group's bank lines at a time, until the transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"bank-lines:{group_id}"}
    )


async def get_settings(session: AsyncSession, group_id: UUID) -> Row | None:
    return (await session.execute(select(bank_settings).where(bank_settings.c.group_id == group_id))).first()


async def save_settings(
    session: AsyncSession, group_id: UUID, csv_mapping: dict[str, Any] | None, by: UUID, at: datetime
) -> None:
    values = {"csv_mapping": csv_mapping, "updated_by": by, "updated_at": at}
    await session.execute(
        pg_insert(bank_settings)
        .values(group_id=group_id, **values)
        .on_conflict_do_update(index_elements=[bank_settings.c.group_id], set_=values)
    )


async def insert_import(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pg_insert(bank_imports).values(**values))


async def finish_import(session: AsyncSession, import_id: UUID, report: dict[str, Any]) -> None:
    await session.execute(update(bank_imports).where(bank_imports.c.import_id == import_id).values(report=report))


async def get_import(session: AsyncSession, group_id: UUID, import_id: UUID) -> Row | None:
    return (
        await session.execute(
            select(bank_imports).where(bank_imports.c.group_id == group_id, bank_imports.c.import_id == import_id)
        )
    ).first()


async def list_imports(session: AsyncSession, group_id: UUID, page: PageRequest) -> list[Row]:
    """One page of the group's imports, newest first."""
    query = select(bank_imports).where(bank_imports.c.group_id == group_id)
    by_date = (bank_imports.c.imported_at, bank_imports.c.import_id)
    return list((await session.execute(page.apply(query, *by_date, newest_first=True))).all())


async def insert_line_once(session: AsyncSession, values: dict[str, Any]) -> str | None:
    """Insert a statement line under its key. When an earlier import has it already, nothing is
    written and the outcome of the line already there is returned (None: inserted now)."""
    inserted = await session.execute(
        pg_insert(bank_lines)
        .values(**values)
        .on_conflict_do_nothing(constraint="bank_lines_key")
        .returning(bank_lines.c.line_id)
    )
    if inserted.first() is not None:
        return None
    existing = await session.scalar(
        select(bank_lines.c.outcome).where(
            bank_lines.c.group_id == values["group_id"], bank_lines.c.line_key == values["line_key"]
        )
    )
    assert existing is not None
    return str(existing)


async def set_line_outcome(session: AsyncSession, line_id: UUID, **values: Any) -> None:
    await session.execute(update(bank_lines).where(bank_lines.c.line_id == line_id).values(**values))


async def get_line(session: AsyncSession, group_id: UUID, line_id: UUID, *, lock: bool = False) -> Row | None:
    query = select(bank_lines).where(bank_lines.c.group_id == group_id, bank_lines.c.line_id == line_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def list_lines(
    session: AsyncSession,
    group_id: UUID,
    *,
    outcome: str | None = None,
    import_id: UUID | None = None,
    limit: int = 500,
) -> list[Row]:
    query = select(bank_lines).where(bank_lines.c.group_id == group_id)
    if outcome is not None:
        query = query.where(bank_lines.c.outcome == outcome)
    if import_id is not None:
        query = query.where(bank_lines.c.import_id == import_id)
    order = (bank_lines.c.booking_date, bank_lines.c.line_number)
    return list((await session.execute(query.order_by(*order).limit(limit))).all())


async def count_lines(session: AsyncSession, group_id: UUID, outcome: str) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(bank_lines)
        .where(bank_lines.c.group_id == group_id, bank_lines.c.outcome == outcome)
    )
    return int(found or 0)


async def settle_payment(session: AsyncSession, payment_id: UUID, line_id: UUID, paid_on: date) -> None:
    """Record on the payment the bank line that settled it, and the bank's booking date."""
    await session.execute(
        update(payments).where(payments.c.payment_id == payment_id).values(bank_line_id=line_id, paid_on=paid_on)
    )


async def declared_references(session: AsyncSession, group_id: UUID) -> list[Row]:
    """The group's declared payments that carry a reference (candidates for a typo)."""
    return list(
        (
            await session.execute(
                select(payments.c.payment_id, payments.c.reference).where(
                    payments.c.group_id == group_id,
                    payments.c.state == "declared",
                    payments.c.reference.isnot(None),
                )
            )
        ).all()
    )


# -- standing references ---------------------------------------------------------------------


async def standing_reference(session: AsyncSession, group_id: UUID, member_id: UUID) -> str | None:
    return await session.scalar(
        select(member_references.c.reference).where(
            member_references.c.group_id == group_id, member_references.c.member_id == member_id
        )
    )


async def member_by_reference(session: AsyncSession, group_id: UUID, reference: str) -> UUID | None:
    return await session.scalar(
        select(member_references.c.member_id).where(
            member_references.c.group_id == group_id, member_references.c.reference == reference
        )
    )


async def ensure_standing_reference(session: AsyncSession, group_id: UUID, member_id: UUID, at: datetime) -> str:
    """The member's standing reference, drawn on first use (again on the rare collision with any
    reference, a payment's or another member's)."""
    existing = await standing_reference(session, group_id, member_id)
    if existing is not None:
        return existing
    for _ in range(REFERENCE_ATTEMPTS):
        reference = references.new_reference()
        if await session.scalar(select(payments.c.payment_id).where(payments.c.reference == reference)):
            continue
        try:
            async with session.begin_nested():
                inserted = await session.execute(
                    pg_insert(member_references)
                    .values(group_id=group_id, member_id=member_id, reference=reference, created_at=at)
                    .on_conflict_do_nothing(
                        index_elements=[member_references.c.group_id, member_references.c.member_id]
                    )
                    .returning(member_references.c.reference)
                )
                if inserted.first() is None:  # drawn concurrently for the same member
                    found = await standing_reference(session, group_id, member_id)
                    assert found is not None
                    return found
            return reference
        except IntegrityError as exc:
            if "member_references_reference" not in str(exc.orig):
                raise
    raise RuntimeError(f"no free reference after {REFERENCE_ATTEMPTS} attempts")
