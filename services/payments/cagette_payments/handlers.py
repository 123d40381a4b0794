"""What payments does with the events it consumes."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event, OrderConfirmed, routing
from cagette_runtime.consumer import Consumer
from cagette_runtime.topology import ConsumerQueue

from .tables import amounts_owed


async def on_order_confirmed(session: AsyncSession, event: Event) -> None:
    assert isinstance(event, OrderConfirmed)
    await session.execute(
        pg_insert(amounts_owed)
        .values(
            order_id=event.order_id, group_id=event.group_id, member_id=event.member_id,
            distribution_id=event.distribution_id, payment_method=event.payment_method.value,
            amount=event.total.amount, currency=event.total.currency,
        )
        .on_conflict_do_nothing()
    )


def consumers(service) -> list[Consumer]:  # type: ignore[no-untyped-def]
    return [
        Consumer(
            queue=ConsumerQueue("payments.orders", (routing.ORDER_CONFIRMED,), service.settings.delivery_limit),
            handler=on_order_confirmed,
            accepts=(OrderConfirmed,),
        )
    ]
