"""Idempotency-Key on a small app with the real database: required keys (428), replays, another
body (409), a key in progress (409), scopes per principal, released keys, lapsed leases, an
effect that took over nobody's key, retention."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import func, select, update

from cagette_contracts.inputs import RequestBody
from cagette_runtime import idempotency, outbox
from cagette_runtime.auth import CurrentPrincipal, Principal, encode_token
from cagette_runtime.db import Database
from cagette_runtime.errors import Conflict
from cagette_runtime.http import DatabaseDep, install_common
from cagette_runtime.idempotency import IdempotencyRetention, IdempotentRoute
from cagette_runtime.openapi import document_errors
from cagette_runtime.settings import ServiceSettings
from cagette_runtime.tables import idempotency_keys, idempotency_keys_table, outbox_messages

from .conftest import widget_event, widgets

ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def bearer(user_id: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {encode_token(Principal(user_id=user_id))}"}


class WidgetIn(RequestBody):
    name: str


class Outage:
    """The app's database, made unreachable on demand (PostgreSQL restarting)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.down = False
        self.happened = False

    def transaction(self):  # type: ignore[no-untyped-def]
        if self.down:
            raise ConnectionRefusedError("the database is restarting")
        return self.database.transaction()

    @property
    def engine(self) -> object:  # the key's own autocommitted statements connect through it
        if self.down:
            raise ConnectionRefusedError("the database is restarting")
        return self.database.engine

    def __getattr__(self, name: str) -> object:
        return getattr(self.database, name)


class Gate:
    """Holds a request inside its handler until the test lets it go."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


@pytest.fixture
async def keyed(database: Database) -> Database:
    from sqlalchemy import MetaData

    metadata = MetaData()
    idempotency_keys_table(metadata)
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    return database


@pytest.fixture
async def app(keyed: Database) -> FastAPI:
    app = FastAPI()
    app.state.settings = ServiceSettings(service_name="test", jwt_jwks_url="")
    app.state.outage = Outage(keyed)
    app.state.service = SimpleNamespace(database=app.state.outage)
    app.state.gate = None
    install_common(app)
    router = APIRouter(route_class=IdempotentRoute)

    @router.post("/widgets", status_code=201, dependencies=[idempotency.REQUIRED])
    async def create_widget(body: WidgetIn, principal: CurrentPrincipal, database: DatabaseDep) -> dict[str, str]:
        if body.name == "taken":
            raise Conflict("that name is taken")
        outage: Outage = app.state.outage
        if body.name == "outage" and not outage.happened:  # the database goes down mid-request
            outage.happened = outage.down = True
            raise ConnectionRefusedError("the database is restarting")
        gate: Gate | None = app.state.gate
        if gate is not None:
            gate.entered.set()
            await gate.release.wait()
        event = widget_event(body.name)
        async with database.transaction() as session:
            await session.execute(widgets.insert().values(widget_id=event.widget_id, name=body.name))
            await outbox.add(session, event)
        if body.name == "answer-lost":  # the database goes down between the commit and the answer
            raise ConnectionRefusedError("the database is restarting")
        return {"widget_id": str(event.widget_id), "name": body.name}

    @router.put("/notes")
    async def put_note(body: WidgetIn, principal: CurrentPrincipal) -> dict[str, str]:
        return {"note": body.name, "nonce": uuid.uuid4().hex}

    app.include_router(router)
    document_errors(app)
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


def body(name: str) -> bytes:
    return f'{{"name":"{name}"}}'.encode()


async def post(client: httpx.AsyncClient, name: str, key: str | None, user: uuid.UUID = ALICE) -> httpx.Response:
    headers = {**bearer(user), "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/widgets", content=body(name), headers=headers)


async def count(database: Database, table: object) -> int:
    async with database.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_a_route_that_moves_money_refuses_a_request_without_key(client, keyed) -> None:
    missing = await post(client, "a", None)
    assert missing.status_code == 428, missing.text
    assert missing.json()["error"] == "idempotency_key_required"
    assert "Idempotency-Key" in missing.json()["detail"]
    assert await count(keyed, widgets) == 0 and await count(keyed, outbox_messages) == 0
    assert await count(keyed, idempotency_keys) == 0


async def test_the_same_key_and_body_replay_the_first_answer_and_the_effect_is_once(client, keyed) -> None:
    first = await post(client, "a", "key-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = await post(client, "a", "key-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content and again.headers["content-type"] == "application/json"
    assert await count(keyed, widgets) == 1 and await count(keyed, outbox_messages) == 1
    async with keyed.transaction() as session:
        [row] = (await session.execute(select(idempotency_keys))).all()
    assert (row.state, row.status_code, row.method, row.path) == ("done", 201, "POST", "/widgets")
    assert row.principal == f"person:{ALICE}"


async def test_the_same_key_with_another_body_is_a_conflict(client, keyed) -> None:
    assert (await post(client, "a", "key-2")).status_code == 201
    other = await post(client, "b", "key-2")
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_key_reused"
    assert "different request" in other.json()["detail"]
    assert await count(keyed, widgets) == 1


async def test_keys_are_scoped_per_principal_and_route(client, keyed) -> None:
    assert (await post(client, "a", "shared")).status_code == 201
    bobs = await post(client, "a", "shared", user=BOB)
    assert bobs.status_code == 201 and "Idempotent-Replayed" not in bobs.headers
    headers = {**bearer(ALICE), "Content-Type": "application/json", "Idempotency-Key": "shared"}
    note = await client.put("/notes", content=body("a"), headers=headers)
    assert note.status_code == 200 and "Idempotent-Replayed" not in note.headers
    assert await count(keyed, widgets) == 2


async def test_an_optional_key_replays_too_and_no_key_runs_each_time(client) -> None:
    headers = {**bearer(ALICE), "Content-Type": "application/json"}
    first = await client.put("/notes", content=body("n"), headers={**headers, "Idempotency-Key": "note-1"})
    again = await client.put("/notes", content=body("n"), headers={**headers, "Idempotency-Key": "note-1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["nonce"] == first.json()["nonce"] and again.headers["Idempotent-Replayed"] == "true"
    plain = [await client.put("/notes", content=body("n"), headers=headers) for _ in range(2)]
    assert plain[0].json()["nonce"] != plain[1].json()["nonce"]


@pytest.mark.parametrize(
    "raw", [b"", b"x" * 256, "clé".encode(), b"tab\there"], ids=["empty", "too long", "not ascii", "control"]
)
async def test_a_malformed_key_is_refused_with_a_reason(client, keyed, raw: bytes) -> None:
    headers = [
        (b"Authorization", bearer(ALICE)["Authorization"].encode()),
        (b"Content-Type", b"application/json"),
        (b"Idempotency-Key", raw),
    ]
    response = await client.post("/widgets", content=body("a"), headers=headers)
    assert response.status_code == 422, response.text
    assert "Idempotency-Key" in response.json()["detail"]
    assert await count(keyed, widgets) == 0


async def test_a_key_of_255_printable_characters_is_taken(client) -> None:
    assert (await post(client, "a", "~ " + "k" * 253)).status_code == 201


async def test_concurrent_requests_with_one_key_make_one_effect(app, client, keyed) -> None:
    app.state.gate = gate = Gate()
    first = asyncio.create_task(post(client, "a", "together"))
    await asyncio.wait_for(gate.entered.wait(), 10)
    during = await asyncio.gather(*(post(client, "a", "together") for _ in range(5)))
    assert {r.status_code for r in during} == {409}
    assert all(r.json()["error"] == "idempotency_key_in_progress" for r in during)
    gate.release.set()
    assert (await first).status_code == 201
    assert (await post(client, "a", "together")).headers["Idempotent-Replayed"] == "true"
    assert await count(keyed, widgets) == 1


async def test_a_refused_request_releases_its_key(client, keyed) -> None:
    refused = await post(client, "taken", "retry-me")
    assert refused.status_code == 409 and refused.json()["detail"] == "that name is taken"
    assert await count(keyed, idempotency_keys) == 0
    assert (await post(client, "free", "retry-me")).status_code == 201  # the key is free again


async def test_a_key_released_while_the_database_was_down_is_free_once_it_is_back(app, client, keyed) -> None:
    """The release of a request the outage failed is retried: the client's retry with the same key
    runs once the database is back, not 409 "in progress" for the whole lease (found by bench/chaos)."""
    failed = await post(client, "outage", "during-outage")
    assert failed.status_code == 503 and await count(keyed, idempotency_keys) == 1  # not released yet
    app.state.outage.down = False
    for _ in range(50):
        if await count(keyed, idempotency_keys) == 0:
            break
        await asyncio.sleep(0.1)
    retried = await post(client, "outage", "during-outage")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert await count(keyed, widgets) == 1


async def test_an_effect_whose_answer_failed_is_not_answered_503_for_ever(client, keyed) -> None:
    """A 503 after the effect committed is not kept as the key's answer: its Retry-After would
    send the client back for the same 503 until the key expires (found by bench/chaos)."""
    failed = await post(client, "answer-lost", "after-commit")
    assert failed.status_code == 503
    retried = await post(client, "answer-lost", "after-commit")
    assert retried.status_code == 409 and "took effect" in retried.json()["detail"]
    assert "Idempotent-Replayed" not in retried.headers and "Retry-After" not in retried.headers
    assert await count(keyed, widgets) == 1


def fingerprint(name: str) -> str:
    return hashlib.sha256(b"\n" + body(name)).hexdigest()


async def stale_row(
    database: Database, state: str, name: str, key: str, lease_left: timedelta = timedelta(seconds=-1)
) -> uuid.UUID:
    attempt = uuid.uuid4()
    async with database.transaction() as session:
        await session.execute(
            idempotency_keys.insert().values(
                principal=f"person:{ALICE}",
                method="POST",
                path="/widgets",
                key=key,
                fingerprint=fingerprint(name),
                state=state,
                attempt=attempt,
                leased_until=datetime.now(UTC) + lease_left,
            )
        )
    return attempt


async def test_a_started_request_that_died_is_taken_over_once_its_lease_lapsed(client, keyed) -> None:
    await stale_row(keyed, "started", "a", "died")
    taken = await post(client, "a", "died")
    assert taken.status_code == 201 and "Idempotent-Replayed" not in taken.headers
    assert await count(keyed, widgets) == 1


async def test_an_effect_committed_without_its_answer_is_never_run_again(client, keyed) -> None:
    await stale_row(keyed, "committed", "a", "half")
    response = await post(client, "a", "half")
    assert response.status_code == 409 and "took effect" in response.json()["detail"]
    assert await count(keyed, widgets) == 0


async def test_an_attempt_that_lost_its_key_cannot_commit_its_effect(app, client, keyed) -> None:
    """The first attempt's lease lapses while it runs and another takes the key over: the effect
    of whichever binds second is rolled back (bind checks the attempt in the effect's transaction)."""
    app.state.gate = gate = Gate()
    first = asyncio.create_task(post(client, "a", "slow"))
    await asyncio.wait_for(gate.entered.wait(), 10)
    async with keyed.transaction() as session:  # its lease lapses
        await session.execute(update(idempotency_keys).values(leased_until=func.now() - timedelta(seconds=1)))
    app.state.gate = None
    second = await post(client, "a", "slow")
    assert second.status_code == 201
    gate.release.set()
    lost = await first
    assert lost.status_code == 409 and "took it over" in lost.json()["detail"]
    assert await count(keyed, widgets) == 1
    replay = await post(client, "a", "slow")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.content == second.content


async def test_openapi_documents_the_required_key_and_its_428(app) -> None:
    operation = app.openapi()["paths"]["/widgets"]["post"]
    [header] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["required"] is True and "428" in operation["responses"]
    note = app.openapi()["paths"]["/notes"]["put"]
    [optional] = [p for p in note["parameters"] if p["name"] == "Idempotency-Key"]
    assert not optional.get("required") and "428" not in note["responses"]


async def test_retention_deletes_old_keys_only(client, keyed) -> None:
    assert (await post(client, "a", "old")).status_code == 201
    assert (await post(client, "b", "new")).status_code == 201
    async with keyed.transaction() as session:
        await session.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.key == "old")
            .values(created_at=func.now() - timedelta(hours=25))
        )
    assert await IdempotencyRetention(keyed, hours=24).purge() == 1
    async with keyed.transaction() as session:
        assert list(await session.scalars(select(idempotency_keys.c.key))) == ["new"]
    assert (await post(client, "a", "old")).status_code == 201  # a new key again, past retention


async def test_a_running_request_keeps_its_key_past_one_lease(app, client, keyed, monkeypatch) -> None:
    """The lease is short (a dead request's key is free within seconds) and renewed while the
    request runs: a slow request is not taken over."""
    monkeypatch.setattr(idempotency, "LEASE", timedelta(seconds=1))
    monkeypatch.setattr(idempotency, "RENEW_EVERY", 0.2)
    app.state.gate = gate = Gate()
    first = asyncio.create_task(post(client, "a", "slow but alive"))
    await asyncio.wait_for(gate.entered.wait(), 10)
    await asyncio.sleep(2.5)  # two and a half leases
    async with keyed.transaction() as session:
        running = await session.scalar(select(idempotency_keys.c.leased_until > func.now()))
    assert running
    during = await post(client, "a", "slow but alive")
    assert during.status_code == 409 and during.json()["error"] == "idempotency_key_in_progress"
    gate.release.set()
    assert (await first).status_code == 201
    assert await count(keyed, widgets) == 1


async def test_the_key_of_a_request_that_died_is_free_within_a_lease(client, keyed, monkeypatch) -> None:
    monkeypatch.setattr(idempotency, "LEASE", timedelta(seconds=1))
    await stale_row(keyed, "started", "a", "orphaned", lease_left=idempotency.LEASE)  # its process died
    assert (await post(client, "a", "orphaned")).status_code == 409
    await asyncio.sleep(1.2)
    assert (await post(client, "a", "orphaned")).status_code == 201
