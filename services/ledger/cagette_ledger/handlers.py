"""What the ledger does with each event it consumes (one database transaction each)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event, GroupSettingsChanged, OrderConfirmed, routing
from cagette_runtime import outbox
from cagette_runtime.consumer import Consumer
from cagette_runtime.errors import Invalid
from cagette_runtime.topology import ConsumerQueue

from . import domain
from .posting import post
from .tables import groups


async def on_group_settings_changed(session: AsyncSession, event: GroupSettingsChanged) -> None:
    values = {
        "currency": event.currency,
        "payments_enabled": event.payments_enabled,
        "allow_negative_money_pot": event.allow_negative_money_pot,
        "settings_occurred_at": event.occurred_at,
    }
    statement = pg_insert(groups).values(group_id=event.group_id, **values)
    # Settings events carry full state: the newest wins, whatever the delivery order.
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[groups.c.group_id],
            set_=values,
            where=groups.c.settings_occurred_at < statement.excluded.settings_occurred_at,
        )
    )


async def check_group_currency(session: AsyncSession, event: Event, currency: str) -> None:
    known = await session.scalar(groups.select().with_only_columns(groups.c.currency).where(groups.c.group_id == event.group_id))
    if known is not None and known != currency:
        raise Invalid(f"group {event.group_id} keeps its accounts in {known}, not {currency}")


async def on_order_confirmed(session: AsyncSession, event: OrderConfirmed) -> None:
    await check_group_currency(session, event, event.total.currency)
    posted = await post(session, domain.order_confirmed(event))
    if not posted.replayed:
        await outbox.add(session, *posted.events())


async def dispatch(session: AsyncSession, event: Event) -> None:
    match event:
        case GroupSettingsChanged():
            await on_group_settings_changed(session, event)
        case OrderConfirmed():
            await on_order_confirmed(session, event)
        case _:
            raise Invalid(f"the ledger does not handle {event.routing_key()}")


def consumers(service) -> list[Consumer]:  # type: ignore[no-untyped-def]
    return [
        Consumer(
            queue=ConsumerQueue(
                "ledger.postings",
                routing_keys=(routing.GROUP_SETTINGS_CHANGED, routing.ORDER_CONFIRMED),
                delivery_limit=service.settings.delivery_limit,
            ),
            handler=dispatch,
            accepts=(GroupSettingsChanged, OrderConfirmed),
        )
    ]
