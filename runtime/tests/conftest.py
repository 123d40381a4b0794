"""Fixtures for the runtime's own tests: a database with the messaging tables and a broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Literal

import pytest
from faststream.rabbit import RabbitBroker
from faststream.rabbit.schemas import Channel
from sqlalchemy import Column, Integer, MetaData, Table, Text, Uuid

from cagette_contracts import Event
from cagette_runtime.db import Database
from cagette_runtime.tables import messaging_metadata
from cagette_runtime.testing import IsolatedServers
from cagette_runtime.topology import declare_exchanges

widgets_metadata = MetaData()
widgets = Table(
    "widgets",
    widgets_metadata,
    Column("widget_id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("effects", Integer, nullable=False, server_default="1"),
)


class WidgetCreated(Event):
    """A test-only event (not part of the published contracts)."""

    event_type: Literal["test.widget.created"] = "test.widget.created"
    schema_version: Literal[1] = 1
    widget_id: uuid.UUID
    name: str


class WidgetUnrouted(Event):
    event_type: Literal["test.nobody.listens"] = "test.nobody.listens"
    schema_version: Literal[1] = 1


def widget_event(name: str = "w", **kw: object) -> WidgetCreated:
    return WidgetCreated(group_id=uuid.uuid4(), widget_id=uuid.uuid4(), name=name, **kw)


@pytest.fixture
async def database(servers: IsolatedServers) -> AsyncIterator[Database]:
    url = await servers.create_database(f"rt{uuid.uuid4().hex[:8]}")
    db = Database(url, pool_size=4)
    async with db.engine.begin() as connection:
        await connection.run_sync(messaging_metadata.create_all)
        await connection.run_sync(widgets_metadata.create_all)
    yield db
    await db.dispose()


def make_broker(servers: IsolatedServers) -> RabbitBroker:
    return RabbitBroker(
        servers.amqp_url,
        default_channel=Channel(prefetch_count=16, publisher_confirms=True, on_return_raises=True),
        log_level=10,
    )


@pytest.fixture
async def broker(servers: IsolatedServers) -> AsyncIterator[RabbitBroker]:
    broker = make_broker(servers)
    await broker.connect()
    await declare_exchanges(broker)
    yield broker
    await broker.stop()
