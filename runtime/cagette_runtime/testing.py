"""Test support shared by every test suite: isolated broker vhosts and databases on the real
servers, a spy that sees what is published on `cagette.events`, and a real SMTP server that
keeps what it receives (aiosmtpd, a test dependency).

Servers come from the environment (CAGETTE_AMQP_URL, CAGETTE_POSTGRES_URL); when they do not
answer and a Docker daemon is reachable, testcontainers starts them; otherwise the tests fail
with a message that says what to start. Nothing is ever skipped for a missing server.
"""

from __future__ import annotations

import asyncio
import email
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx
import jsonschema
import uvicorn
from faststream.rabbit import RabbitBroker
from sqlalchemy import select
from yarl import URL

from cagette_contracts import Event
from cagette_contracts.__main__ import DEFAULT_DIR as SCHEMAS_DIR
from cagette_contracts.envelope import ENVELOPE_FIELDS
from cagette_contracts.routing import EVENTS_EXCHANGE

from .db import Database, drop_database, ensure_database
from .devstack import START_POSTGRES, START_RABBITMQ, ServerUnreachable, check_servers
from .settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES_SERVER_URL
from .tables import inbox_messages
from .topology import events_exchange


@dataclass
class IsolatedServers:
    """The real servers for one test run, isolated under `run_id`."""

    amqp_url: str  # a vhost of this run only
    postgres_url: str  # server URL; databases are named after run_id
    run_id: str
    base_amqp_url: str
    databases: list[str] = field(default_factory=list)
    vhosts: list[str] = field(default_factory=list)

    def database_url(self, name: str) -> str:
        return f"{self.postgres_url}/{self.run_id}_{name}"

    async def create_vhost(self, name: str) -> str:
        """Another vhost of this run (removed at the end), for a part of the tests that must not
        share queues with the rest, e.g. services running as processes. Returns its URL."""
        vhost = f"cagette-test-{self.run_id}-{name}"
        url = await create_vhost(self.base_amqp_url, vhost)
        self.vhosts.append(vhost)
        return url

    async def create_database(self, name: str) -> str:
        url = self.database_url(name)
        await drop_database(url)
        await ensure_database(url)
        self.databases.append(url)
        return url


def _docker_reachable() -> bool:
    return os.path.exists("/var/run/docker.sock") or bool(os.environ.get("DOCKER_HOST"))


async def _start_containers() -> tuple[str, str, object]:  # pragma: no cover - needs a Docker daemon
    """PostgreSQL and RabbitMQ (with its management API, for test vhosts) in containers."""
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.rabbitmq import RabbitMqContainer

    postgres = PostgresContainer("postgres:16", driver="asyncpg").start()
    rabbit = RabbitMqContainer("rabbitmq:3.13-management").with_exposed_ports(15672).start()
    pg_url = postgres.get_connection_url().rsplit("/", 1)[0]
    host = rabbit.get_container_host_ip()
    amqp = f"amqp://{rabbit.username}:{rabbit.password}@{host}:{rabbit.get_exposed_port(rabbit.port)}/"
    os.environ["CAGETTE_RABBITMQ_MANAGEMENT_URL"] = f"http://{host}:{rabbit.get_exposed_port(15672)}"
    return amqp, pg_url, (postgres, rabbit)


async def locate_servers() -> tuple[str, str, object | None]:
    amqp_url = os.environ.get("CAGETTE_AMQP_URL", DEFAULT_AMQP_URL)
    postgres_url = os.environ.get("CAGETTE_POSTGRES_URL", DEFAULT_POSTGRES_SERVER_URL)
    try:
        await check_servers(amqp_url, postgres_url)
        return amqp_url, postgres_url, None
    except ServerUnreachable as exc:
        if _docker_reachable():
            return await _start_containers()
        raise ServerUnreachable(
            f"{exc}\nThe tests need a real PostgreSQL and RabbitMQ: start them as above, or point "
            "CAGETTE_POSTGRES_URL / CAGETTE_AMQP_URL at running servers (or run a Docker daemon "
            "for testcontainers)."
        ) from None


def _management_url(amqp_url: str) -> str:
    parsed = URL(amqp_url)
    return os.environ.get("CAGETTE_RABBITMQ_MANAGEMENT_URL", f"http://{parsed.host}:15672")


async def create_vhost(amqp_url: str, vhost: str) -> str:
    """Create `vhost` with full rights for the URL's user; return the URL pointing at it."""
    parsed = URL(amqp_url)
    user, password = parsed.user or "guest", parsed.password or "guest"
    api = _management_url(amqp_url)
    try:
        async with httpx.AsyncClient(auth=(user, password), timeout=5) as client:
            (await client.put(f"{api}/api/vhosts/{quote(vhost, safe='')}")).raise_for_status()
            (
                await client.put(
                    f"{api}/api/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                    json={"configure": ".*", "write": ".*", "read": ".*"},
                )
            ).raise_for_status()
    except httpx.HTTPError:
        ctl = shutil.which("rabbitmqctl")
        if ctl is None:
            raise ServerUnreachable(
                "cannot create a test vhost: enable the RabbitMQ management plugin "
                "(rabbitmq-plugins enable rabbitmq_management) or run the tests where rabbitmqctl works"
            ) from None
        for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"]):
            await asyncio.to_thread(subprocess.run, [ctl, "-q", *args], check=True, capture_output=True, timeout=60)
    return str(parsed.with_path("/" + quote(vhost, safe="")))


async def delete_vhost(amqp_url: str, vhost: str) -> None:
    parsed = URL(amqp_url)
    try:
        async with httpx.AsyncClient(auth=(parsed.user or "guest", parsed.password or "guest"), timeout=5) as client:
            (await client.delete(f"{_management_url(amqp_url)}/api/vhosts/{quote(vhost, safe='')}")).raise_for_status()
    except httpx.HTTPError:
        if ctl := shutil.which("rabbitmqctl"):
            await asyncio.to_thread(subprocess.run, [ctl, "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


@asynccontextmanager
async def isolated_servers() -> AsyncIterator[IsolatedServers]:
    base_amqp, postgres_url, containers = await locate_servers()
    run_id = f"t{uuid.uuid4().hex[:10]}"
    vhost = f"cagette-test-{run_id}"
    servers = IsolatedServers(await create_vhost(base_amqp, vhost), postgres_url, run_id, base_amqp)
    try:
        yield servers
    finally:
        for url in servers.databases:
            await drop_database(url)
        for name in [vhost, *servers.vhosts]:
            await delete_vhost(base_amqp, name)
        for container in containers if isinstance(containers, tuple) else ():
            container.stop()


@dataclass
class SeenMessage:
    routing_key: str
    body: dict
    raw: aio_pika.abc.AbstractIncomingMessage


class EventSpy:
    """An exclusive queue bound to `cagette.events`, like an external subscriber's."""

    def __init__(self, amqp_url: str, *binding_keys: str) -> None:
        self.amqp_url = amqp_url
        self.binding_keys = binding_keys or ("#",)
        self.messages: list[SeenMessage] = []
        self._arrived = asyncio.Condition()

    async def __aenter__(self) -> EventSpy:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        self.queue = await channel.declare_queue(exclusive=True)
        for key in self.binding_keys:
            await self.queue.bind(exchange, key)
        await self.queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with self._arrived:
            try:
                body = json.loads(message.body)
            except ValueError:
                body = {"_raw": message.body.decode(errors="replace")}
            self.messages.append(SeenMessage(message.routing_key or "", body, message))
            self._arrived.notify_all()

    def matching(self, routing_key: str, **fields: object) -> list[SeenMessage]:
        return [
            m
            for m in self.messages
            if m.routing_key == routing_key and all(m.body.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self, routing_key: str, count: int = 1, timeout: float = 15.0, **fields: object
    ) -> list[SeenMessage]:
        async def enough() -> list[SeenMessage]:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.matching(routing_key, **fields)) >= count)
            return self.matching(routing_key, **fields)

        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            seen = [m.routing_key for m in self.messages]
            raise AssertionError(
                f"expected {count} x {routing_key} {fields or ''} within {timeout}s; saw {seen}"
            ) from None


async def drain_queue(
    amqp_url: str, queue_name: str, expected: int = 1, timeout: float = 15.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take messages from a (parking) queue until `expected` arrived or the timeout passes."""
    connection = await aio_pika.connect_robust(amqp_url)
    taken: list[aio_pika.abc.AbstractIncomingMessage] = []
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=True)
        deadline = asyncio.get_running_loop().time() + timeout
        while len(taken) < expected and asyncio.get_running_loop().time() < deadline:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.1)
            else:
                taken.append(message)
    finally:
        await connection.close()
    return taken


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: str


class WebhookReceiver:
    """A local HTTP endpoint standing for an outside system's webhook receiver: answers 503
    while `up` is False (a receiver that is down), 204 otherwise, and keeps what it accepted."""

    def __init__(self) -> None:
        self.up = True
        self.accepted: list[ReceivedWebhook] = []
        self.refused = 0
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/cagette"

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.up:
            headers = {key.decode(): value.decode() for key, value in scope["headers"]}
            self.accepted.append(ReceivedWebhook(headers, body.decode()))
            status = 204
        else:
            self.refused += 1
            status = 503
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def __aenter__(self) -> WebhookReceiver:
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", interface="asgi3"
        )
        self.server = uvicorn.Server(config)
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self._task


class PublishedSchemas:
    """The exported JSON Schemas (`contracts/schemas`) as an outside subscriber would use them:
    checked with jsonschema (not Pydantic), formats included."""

    def __init__(self, directory: Path = SCHEMAS_DIR) -> None:
        validator_class = jsonschema.Draft202012Validator
        self.validators: dict[tuple[str, int], Any] = {}
        for path in sorted(directory.glob("*.json")):
            schema = json.loads(path.read_text(encoding="utf-8"))
            validator_class.check_schema(schema)
            version = schema["properties"]["schema_version"]["const"]
            self.validators[(schema["x-routing-key"], version)] = validator_class(
                schema, format_checker=validator_class.FORMAT_CHECKER
            )

    def errors(self, body: object) -> list[str]:
        """Why `body` does not match its event's schema (empty when it does)."""
        if not isinstance(body, dict):
            return ["not a JSON object"]
        validator = self.validators.get((str(body.get("event_type")), body.get("schema_version", 0)))
        if validator is None:
            return [f"no schema for {body.get('event_type')!r} version {body.get('schema_version')!r}"]
        return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(body)]


def _money_paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(value, dict):
        if set(value) == {"amount", "currency"}:
            return [path]
        return [found for key, item in value.items() for found in _money_paths(item, (*path, key))]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _money_paths(item, (*path, index))]
    return []


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


_DELETE = object()
# Money the contracts state is positive, by field name (payments' amounts, order totals).
POSITIVE_MONEY_FIELDS = ("amount", "total", "added_total", "new_total")


def broken_copies(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Copies of a valid event body, each broken in one way its schema must refuse."""
    broken = [(f"without {name}", _with(body, (name,), _DELETE)) for name in ENVELOPE_FIELDS]
    broken += [
        ("occurred_at with an offset", _with(body, ("occurred_at",), "2026-01-01T14:00:00+02:00")),
        ("occurred_at not a date", _with(body, ("occurred_at",), "yesterday")),
        ("event_id not a uuid", _with(body, ("event_id",), "not-a-uuid")),
        ("correlation_id with spaces", _with(body, ("correlation_id",), "has spaces")),
        ("another schema_version", _with(body, ("schema_version",), 99)),
    ]
    for path in _money_paths(body)[:3]:
        where = "/".join(map(str, path))
        broken += [
            (f"{where} currency lower case", _with(body, (*path, "currency"), "eur")),
            (f"{where} currency not ISO 4217", _with(body, (*path, "currency"), "EUX")),
            (f"{where} amount with a fraction", _with(body, (*path, "amount"), 1465.5)),
            (f"{where} amount as text", _with(body, (*path, "amount"), "1465")),
            (f"{where} amount out of range", _with(body, (*path, "amount"), 10**15)),
        ]
    for name in POSITIVE_MONEY_FIELDS:
        if isinstance(body.get(name), dict) and "currency" in body[name] and body[name].get("amount", 0) > 0:
            broken.append((f"{name} negative", _with(body, (name, "amount"), -body[name]["amount"])))
    closed_sets = [("method", "bitcoin"), ("payment_method", "bitcoin"), ("role", "boss"), ("language", "xx")]
    if body.get("event_type") == "ledger.transaction.posted":
        closed_sets.append(("kind", "gift"))  # (an email's kind is an open set: new emails come)
    for name, bad in closed_sets:
        if body.get(name) is not None:
            broken.append((f"{name} outside its set", _with(body, (name,), bad)))
    for key in ("lines", "added_lines"):
        if body.get(key):
            broken.append(("quantity negative", _with(body, (key, 0, "quantity"), "-1")))
            broken.append(("quantity with 4 decimals", _with(body, (key, 0, "quantity"), "0.3755")))
    broken += _broken_catalog_copies(body)
    return broken


def _at(body: dict[str, Any], path: tuple[str | int, ...]) -> object:
    """The value at `path` in the body, or None when there is none."""
    value: object = body
    for step in path:
        if isinstance(value, dict) and isinstance(step, str):
            value = value.get(step)
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            return None
    return value


def _broken_catalog_copies(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Catalogs, products and distributions: closed sets (kind, unit), a price that is not
    positive, a negative fee rate, a distribution time with an offset."""
    broken = []
    for product in (("products", 0), ("product",)):
        if isinstance(_at(body, product), dict):
            broken += [
                ("unit outside its set", _with(body, (*product, "unit"), "gram")),
                ("unit_price zero", _with(body, (*product, "unit_price", "amount"), 0)),
                ("fee_rate negative", _with(body, (*product, "fee_rate"), "-0.02")),
            ]
    kinds: list[tuple[str | int, ...]] = [("catalog", "kind"), ("catalogs", 0, "kind")]
    if body.get("event_type") == "orders.catalog.created":
        kinds.append(("kind",))  # (a ledger transaction's kind is broken above, an email's is open)
    for path in kinds:
        if _at(body, path) is not None:
            broken.append(("catalog kind outside its set", _with(body, path, "weekly")))
    for name in ("starts_at", "orders_open_at", "orders_close_at"):
        if isinstance(body.get(name), str):
            broken.append((f"{name} with an offset", _with(body, (name,), "2026-01-01T14:00:00+02:00")))
    return broken


__all__ = [
    "EventSpy",
    "START_POSTGRES",
    "START_RABBITMQ",
    "IsolatedServers",
    "PublishedSchemas",
    "ReceivedWebhook",
    "WebhookReceiver",
    "broken_copies",
    "drain_queue",
    "isolated_servers",
]
__all__ = ["EventSpy", "START_POSTGRES", "START_RABBITMQ", "IsolatedServers", "drain_queue", "isolated_servers"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mailbox:
    """What a real SMTP server received."""

    refuse: set[str] = field(default_factory=set)
    messages: list[EmailMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted"

    @staticmethod
    def body(message: EmailMessage, subtype: str) -> str:
        part = message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        return part.get_content()

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    async def wait_for(self, address: str, count: int = 1, timeout: float = 15.0) -> list[EmailMessage]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.to(address)) < count:
            if asyncio.get_running_loop().time() > deadline:
                got = [(m["To"], m["Subject"]) for m in self.messages]
                raise AssertionError(f"expected {count} email(s) to {address} within {timeout}s; got {got}")
            await asyncio.sleep(0.05)
        return self.to(address)


@asynccontextmanager
async def smtp_server(port: int | None = None, refuse: set[str] | None = None) -> AsyncIterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1 keeping what it receives (the local mail catcher)."""
    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO
    mailbox = Mailbox(refuse=refuse or set())
    port = port or free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


class Outage:
    """A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL, RabbitMQ), to take that
    server away from a service and give it back: `down()` cuts every connection and refuses new
    ones, as a crashed server would; `up()` accepts them again. Point the service at `url`."""

    def __init__(self, target_url: str) -> None:
        parsed = URL(target_url)
        self.target = (parsed.host or "127.0.0.1", parsed.port or 0)
        self.port = free_port()
        self.url = str(parsed.with_port(self.port))
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Outage:
        await self.up()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.down()

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                sink.transport.abort()
                self._pipes.discard(sink)

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


# ------------------------------------------------------------------ idempotency keys

WITHOUT_KEY = "cagette.without_idempotency_key"


async def _add_idempotency_key(request: httpx.Request) -> None:
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and "Idempotency-Key" not in request.headers:
        if not request.extensions.get(WITHOUT_KEY):
            request.headers["Idempotency-Key"] = str(uuid.uuid4())


# A test client sends a new Idempotency-Key with each state-changing request that names none,
# as a client library does (each request a new action): `httpx.AsyncClient(..., **KEYED)`. A
# test of a retry sends its own key twice; a test of the 428 passes
# `extensions={WITHOUT_KEY: True}` to send none.
KEYED: dict[str, Any] = {"event_hooks": {"request": [_add_idempotency_key]}}


async def publish_event(broker: RabbitBroker, event: Event) -> None:
    """Publish `event` on `cagette.events` as an outbox relay does (persistent, its ids set)."""
    await broker.publish(
        event.model_dump_json(),
        exchange=events_exchange,
        routing_key=event.routing_key(),
        persist=True,
        message_id=str(event.event_id),
        correlation_id=event.correlation_id,
        content_type="application/json",
    )


async def wait_consumed(database: Database, consumer: str, event: Event, timeout: float = 10.0) -> None:
    """Wait until `consumer` committed `event` (its inbox row exists), or fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    query = select(inbox_messages.c.event_id).where(
        inbox_messages.c.consumer == consumer, inbox_messages.c.event_id == event.event_id
    )
    while True:
        async with database.sessionmaker() as session:
            if await session.scalar(query) is not None:
                return
        if loop.time() > deadline:
            raise AssertionError(f"{consumer} did not process {event.routing_key()} {event.event_id} within {timeout}s")
        await asyncio.sleep(0.02)


async def eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """The probe's first truthy answer, asked again every `interval` seconds (the services work
    asynchronously, through the broker); fails after `timeout` seconds with the last answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answer = await probe()
        if answer:
            return answer
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last answer {answer!r})")
        await asyncio.sleep(interval)
