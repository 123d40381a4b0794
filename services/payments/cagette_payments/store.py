"""Database adapter: reading and writing the payments tables. No business rules here beyond
what the schema enforces; the use cases (usecases.py) decide, the domain computes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Row, Table, and_, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from cagette_contracts import Money
from cagette_runtime import clock, outbox
from cagette_runtime.pagination import PageRequest

from .domain import references
from .domain.baskets import BasketState, Owed, PaymentLine
from .domain.methods import Method
from .domain.states import Kind, Payment, State, Transition
from .tables import (
    basket_history,
    baskets,
    groups,
    members,
    owed_items,
    payment_batches,
    payment_transitions,
    payments,
)

REFERENCE_ATTEMPTS = 8


def _of_group(table: Table, group_id: UUID, **equal: Any) -> ColumnElement[bool]:
    """A row of the group whose columns have the values `equal` gives."""
    return and_(table.c.group_id == group_id, *(table.c[name] == value for name, value in equal.items()))


async def _first(
    session: AsyncSession, table: Table, group_id: UUID, *, lock: bool = False, **equal: Any
) -> Row | None:
    """The group's row of `table` with the values `equal` gives; `lock`: locked until the
    transaction ends."""
    query = select(table).where(_of_group(table, group_id, **equal))
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def _inserted(session: AsyncSession, insert_once: ReturningInsert[Any]) -> bool:
    """Whether an INSERT ... ON CONFLICT DO NOTHING RETURNING wrote its row (False: it was there)."""
    return (await session.execute(insert_once)).first() is not None


# -- groups and members ---------------------------------------------------------------------


class PaymentEventFields(outbox.EventContext):
    """What every payment event repeats from its payment row (contracts: _PaymentEvent)."""

    payment_id: UUID
    member_id: UUID
    order_id: UUID | None
    amendment_id: UUID | None
    subscription_id: UUID | None
    distribution_id: UUID | None


def payment_event_fields(payment: Row[Any] | Mapping[str, Any]) -> PaymentEventFields:
    """The envelope and payment fields of an event about `payment` (a payments row or its values)."""
    values: Mapping[Any, Any] = payment._mapping if isinstance(payment, Row) else payment
    return PaymentEventFields(
        **outbox.event_context(values["group_id"]),
        payment_id=values["payment_id"],
        member_id=values["member_id"],
        order_id=values.get("order_id"),
        amendment_id=values.get("amendment_id"),
        subscription_id=values.get("subscription_id"),
        distribution_id=values.get("distribution_id"),
    )


async def upsert_group(session: AsyncSession, values: dict[str, Any]) -> None:
    """Apply a group's settings unless newer ones were already applied (events may arrive late)."""
    stmt = pg_insert(groups).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[groups.c.group_id],
        set_={key: stmt.excluded[key] for key in values if key != "group_id"},
        where=groups.c.settings_at <= stmt.excluded.settings_at,
    )
    await session.execute(stmt)


async def get_group(session: AsyncSession, group_id: UUID) -> Row | None:
    return (await session.execute(select(groups).where(groups.c.group_id == group_id))).first()


async def upsert_member(session: AsyncSession, group_id: UUID, member_id: UUID, name: str, role: str) -> None:
    stmt = pg_insert(members).values(group_id=group_id, member_id=member_id, name=name, role=role)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[members.c.group_id, members.c.member_id],
            set_={"name": stmt.excluded.name, "role": stmt.excluded.role},
        )
    )


async def ensure_member(session: AsyncSession, group_id: UUID, member_id: UUID) -> None:
    """A member seen through their order (its MemberJoined may come later)."""
    await session.execute(pg_insert(members).values(group_id=group_id, member_id=member_id).on_conflict_do_nothing())


async def get_member(session: AsyncSession, group_id: UUID, member_id: UUID) -> Row | None:
    return await _first(session, members, group_id, member_id=member_id)


async def member_names(session: AsyncSession, group_id: UUID, member_ids: Sequence[UUID]) -> dict[UUID, str]:
    if not member_ids:
        return {}
    rows = await session.execute(
        select(members.c.member_id, members.c.name).where(
            members.c.group_id == group_id, members.c.member_id.in_(member_ids)
        )
    )
    return {row.member_id: row.name for row in rows}


# -- what is owed ---------------------------------------------------------------------------


async def insert_owed(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Record a debt; False if it already was (a redelivered event)."""
    return await _inserted(
        session, pg_insert(owed_items).values(**values).on_conflict_do_nothing().returning(owed_items.c.item_id)
    )


async def get_owed(session: AsyncSession, group_id: UUID, item_id: UUID) -> Row | None:
    return await _first(session, owed_items, group_id, item_id=item_id)


async def basket_owed(
    session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID | None = None
) -> list[Row]:
    query = select(owed_items).where(owed_items.c.group_id == group_id, owed_items.c.distribution_id == distribution_id)
    if member_id is not None:
        query = query.where(owed_items.c.member_id == member_id)
    return list(await session.execute(query.order_by(owed_items.c.occurred_at, owed_items.c.item_id)))


async def contract_subscriptions(session: AsyncSession, group_id: UUID, contract_id: UUID) -> list[Row]:
    return list(
        await session.execute(
            select(owed_items)
            .where(_of_group(owed_items, group_id, contract_id=contract_id, kind="subscription"))
            .order_by(owed_items.c.occurred_at, owed_items.c.item_id)
        )
    )


async def subscription_amendments(session: AsyncSession, group_id: UUID, subscription_ids: Sequence[UUID]) -> list[Row]:
    if not subscription_ids:
        return []
    return list(
        await session.execute(
            select(owed_items).where(
                owed_items.c.group_id == group_id,
                owed_items.c.kind == "amendment",
                owed_items.c.subscription_id.in_(subscription_ids),
            )
        )
    )


async def subscriptions_delivered_at(
    session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID
) -> list[Row]:
    return list(
        await session.execute(
            select(owed_items).where(
                owed_items.c.group_id == group_id,
                owed_items.c.member_id == member_id,
                owed_items.c.kind == "subscription",
                owed_items.c.distribution_ids.contains([str(distribution_id)]),
            )
        )
    )


def owed_of(row: Row) -> Owed:
    return Owed(Money(amount=row.amount, currency=row.currency), Method(row.payment_method))


# -- baskets --------------------------------------------------------------------------------


async def ensure_basket(session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID) -> None:
    await session.execute(
        pg_insert(baskets)
        .values(group_id=group_id, distribution_id=distribution_id, member_id=member_id)
        .on_conflict_do_nothing()
    )


async def lock_basket(session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID) -> Row | None:
    """The basket row, locked until the transaction ends (serialises validation and new payments)."""
    return await _first(session, baskets, group_id, lock=True, distribution_id=distribution_id, member_id=member_id)


async def get_basket(session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID) -> Row | None:
    return await _first(session, baskets, group_id, distribution_id=distribution_id, member_id=member_id)


async def distribution_baskets(
    session: AsyncSession, group_id: UUID, distribution_id: UUID, *, lock: bool = False
) -> list[Row]:
    query = (
        select(baskets)
        .where(baskets.c.group_id == group_id, baskets.c.distribution_id == distribution_id)
        .order_by(baskets.c.member_id)
    )
    if lock:
        query = query.with_for_update()
    return list(await session.execute(query))


async def set_basket_state(
    session: AsyncSession,
    group_id: UUID,
    distribution_id: UUID,
    member_id: UUID,
    state: BasketState,
    by: UUID,
    at: datetime,
    difference: Money,
) -> None:
    validated = state is BasketState.VALIDATED
    await session.execute(
        update(baskets)
        .where(_of_group(baskets, group_id, distribution_id=distribution_id, member_id=member_id))
        .values(state=state.value, validated_at=at if validated else None, validated_by=by if validated else None)
    )
    await session.execute(
        insert(basket_history).values(
            group_id=group_id,
            distribution_id=distribution_id,
            member_id=member_id,
            action="validated" if validated else "unvalidated",
            by=by,
            at=at,
            difference=difference.amount,
            currency=difference.currency,
        )
    )


async def basket_history_of(session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID) -> list[Row]:
    return list(
        await session.execute(
            select(basket_history)
            .where(_of_group(basket_history, group_id, distribution_id=distribution_id, member_id=member_id))
            .order_by(basket_history.c.id)
        )
    )


# -- payments -------------------------------------------------------------------------------


async def insert_payment(session: AsyncSession, values: dict[str, Any], *, with_reference: bool = False) -> str | None:
    """Insert a payment. With `with_reference`, draw a fresh RF reference and draw again on the
    (rare) collision with an existing one; returns the reference."""
    if not with_reference:
        await session.execute(insert(payments).values(**values))
        return None
    for _ in range(REFERENCE_ATTEMPTS):
        reference = references.new_reference()
        try:
            async with session.begin_nested():
                await session.execute(insert(payments).values(**values, reference=reference))
            return reference
        except IntegrityError as exc:
            if "payments_reference" not in str(exc.orig):
                raise
    raise RuntimeError(f"no free payment reference after {REFERENCE_ATTEMPTS} attempts")


async def payment_by_source(session: AsyncSession, group_id: UUID, source_key: str) -> Row | None:
    return await _first(session, payments, group_id, source_key=source_key)


async def lock_payment(session: AsyncSession, group_id: UUID, payment_id: UUID) -> Row | None:
    return await _first(session, payments, group_id, lock=True, payment_id=payment_id)


async def get_payment(session: AsyncSession, group_id: UUID, payment_id: UUID) -> Row | None:
    return await _first(session, payments, group_id, payment_id=payment_id)


async def payment_by_reference(session: AsyncSession, group_id: UUID, reference: str) -> Row | None:
    return await _first(session, payments, group_id, reference=reference)


async def reversal_of(session: AsyncSession, payment_id: UUID) -> Row | None:
    return (await session.execute(select(payments).where(payments.c.reverses_payment_id == payment_id))).first()


async def save_state(session: AsyncSession, payment: Payment, at: datetime) -> None:
    await session.execute(
        update(payments)
        .where(payments.c.payment_id == payment.payment_id)
        .values(state=payment.state.value, amount=payment.amount.amount, method=payment.method.value, updated_at=at)
    )


async def set_label(session: AsyncSession, payment_id: UUID, label: str) -> None:
    await session.execute(update(payments).where(payments.c.payment_id == payment_id).values(label=label))


async def record_transition(session: AsyncSession, transition: Transition) -> None:
    await session.execute(
        insert(payment_transitions).values(
            payment_id=transition.payment_id,
            from_state=transition.from_state.value if transition.from_state else None,
            to_state=transition.to_state.value,
            amount_before=transition.amount_before.amount if transition.amount_before else None,
            amount_after=transition.amount_after.amount,
            method_before=transition.method_before.value if transition.method_before else None,
            method_after=transition.method_after.value,
            currency=transition.amount_after.currency,
            by=transition.by,
            at=transition.at,
            note=transition.note,
        )
    )


async def transitions_of(session: AsyncSession, payment_ids: Sequence[UUID]) -> dict[UUID, list[Row]]:
    found: dict[UUID, list[Row]] = {pid: [] for pid in payment_ids}
    if not payment_ids:
        return found
    rows = await session.execute(
        select(payment_transitions)
        .where(payment_transitions.c.payment_id.in_(payment_ids))
        .order_by(payment_transitions.c.id)
    )
    for row in rows:
        found[row.payment_id].append(row)
    return found


async def basket_payments(
    session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID | None = None, *, lock: bool = False
) -> list[Row]:
    query = select(payments).where(payments.c.group_id == group_id, payments.c.distribution_id == distribution_id)
    if member_id is not None:
        query = query.where(payments.c.member_id == member_id)
    query = query.order_by(payments.c.created_at, payments.c.payment_id)
    if lock:
        query = query.with_for_update()
    return list(await session.execute(query))


async def member_payments(session: AsyncSession, group_id: UUID, member_id: UUID, page: PageRequest) -> list[Row]:
    """One page of a member's payments, oldest first (one row more than the page: see PageRequest)."""
    query = select(payments).where(payments.c.group_id == group_id, payments.c.member_id == member_id)
    return list(await session.execute(page.apply(query, payments.c.created_at, payments.c.payment_id)))


async def subscription_payments(session: AsyncSession, group_id: UUID, subscription_ids: Sequence[UUID]) -> list[Row]:
    if not subscription_ids:
        return []
    return list(
        await session.execute(
            select(payments).where(payments.c.group_id == group_id, payments.c.subscription_id.in_(subscription_ids))
        )
    )


def payment_of(row: Row) -> Payment:
    return Payment(
        payment_id=row.payment_id,
        kind=Kind(row.kind),
        state=State(row.state),
        method=Method(row.method),
        amount=Money(amount=row.amount, currency=row.currency),
        declared_amount=Money(amount=row.declared_amount, currency=row.currency)
        if row.declared_amount is not None
        else None,
    )


def line_of(row: Row) -> PaymentLine:
    return PaymentLine(
        Kind(row.kind), State(row.state), Method(row.method), Money(amount=row.amount, currency=row.currency)
    )


# -- mass entries ---------------------------------------------------------------------------


async def claim_batch(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the batch row; False when the client key was already used (the other request's
    transaction is waited for by PostgreSQL, so its outcome is known here)."""
    return await _inserted(
        session,
        pg_insert(payment_batches).values(**values).on_conflict_do_nothing().returning(payment_batches.c.batch_id),
    )


async def batch_by_key(session: AsyncSession, group_id: UUID, client_key: str) -> Row | None:
    return await _first(session, payment_batches, group_id, client_key=client_key)


async def batch_payments(session: AsyncSession, batch_id: UUID) -> list[Row]:
    return list(
        await session.execute(
            select(payments)
            .where(payments.c.batch_id == batch_id)
            .order_by(payments.c.created_at, payments.c.source_key)
        )
    )


def today() -> date:
    """Today's date in UTC (never the server's local date)."""
    return clock.today()


async def insert_payment_once(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a client-keyed payment; False when its (group, source_key) already exists."""
    return await _inserted(
        session,
        pg_insert(payments)
        .values(**values)
        .on_conflict_do_nothing(constraint="payments_source_key")
        .returning(payments.c.payment_id),
    )
