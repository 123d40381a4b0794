"""Notifications keeps its own copy of groups and members from the orders events."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Event, GroupSettingsChanged, MemberJoined, routing
from cagette_runtime.consumer import Consumer
from cagette_runtime.errors import Invalid
from cagette_runtime.topology import ConsumerQueue

from .tables import group_directory, member_directory


async def on_directory_event(session: AsyncSession, event: Event) -> None:
    match event:
        case GroupSettingsChanged():
            values = {
                "name": event.name, "currency": event.currency, "language": event.language.value,
                "cheque_payee": event.cheque_payee, "transfer_iban": event.transfer_iban,
                "transfer_bic": event.transfer_bic, "updated_at": event.occurred_at,
            }
            statement = pg_insert(group_directory).values(group_id=event.group_id, **values)
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[group_directory.c.group_id], set_=values,
                    where=group_directory.c.updated_at < statement.excluded.updated_at,
                )
            )
        case MemberJoined():
            values = {"name": event.name, "email": str(event.email), "language": event.language.value, "updated_at": event.occurred_at}
            statement = pg_insert(member_directory).values(group_id=event.group_id, member_id=event.member_id, **values)
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[member_directory.c.group_id, member_directory.c.member_id], set_=values,
                    where=member_directory.c.updated_at < statement.excluded.updated_at,
                )
            )
        case _:
            raise Invalid(f"notifications does not handle {event.routing_key()}")


def consumers(service) -> list[Consumer]:  # type: ignore[no-untyped-def]
    return [
        Consumer(
            queue=ConsumerQueue(
                "notifications.directory",
                (routing.GROUP_SETTINGS_CHANGED, routing.MEMBER_JOINED),
                service.settings.delivery_limit,
            ),
            handler=on_directory_event,
            accepts=(GroupSettingsChanged, MemberJoined),
        )
    ]
