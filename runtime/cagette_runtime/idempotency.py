"""Idempotency keys on state-changing requests: the `Idempotency-Key` header (Stripe's convention).

A client sends one key per intended action (a uuid, made once per form or command) and the same
key again on every retry of it. The first request with a key runs; its answer (status, body and
the headers that matter) is stored, and any later request with the same key and the same request
(query string and body) gets that answer again with `Idempotent-Replayed: true`, without running
again. The same key with another request is a 409 (the reason says so), as is a request whose
key's first request is still running. Keys are printable ASCII, 1 to 255 characters (else 422),
scoped by who asks (the token's principal), the method and the path: two people never share a
key, and one key on two routes is two keys. Answers are kept `CAGETTE_IDEMPOTENCY_RETENTION_HOURS`
(24) and then deleted by `IdempotencyRetention`.

Where a retry could move money the key is required: a route declares `dependencies=[REQUIRED]`
(or takes `key: RequiredKey`) and a request without a key is refused 428 Precondition Required.
Every other POST, PUT, PATCH and DELETE of a router made with `route_class=IdempotentRoute`
accepts a key (the route class adds the optional dependency by itself).

Why a committed effect is never done twice, even across a crash
-----------------------------------------------------------------
The answer a route gives is rendered after its use case returns, often from a read in a later
transaction, and several use cases run more than one transaction (a money-pot hold asked of the
ledger between two), so the answer itself cannot always be written in the effect's transaction.
What is written there is the *claim*: the three steps are

1. `begin` (its own statements, each committed alone): insert the key's row as `started`, with
   this attempt's id and a lease (LEASE, renewed every RENEW_EVERY seconds while the request
   runs). A concurrent request with the same key finds the row and is answered 409 (in progress);
   the INSERT ... ON CONFLICT makes exactly one of them the owner.
2. The effect's transaction: `outbox.add` (every effect that moves money publishes an event, in
   the transaction that makes it) calls `bind`, which turns the row `committed` *in that same
   transaction*, on the condition that this attempt still holds it. So the effect and the mark
   "this key took effect" commit together or not at all; an attempt that lost its row (its lease
   lapsed and another attempt took it over) fails there and its effect is rolled back. A route
   whose effect publishes nothing may call `bind(session)` itself.
3. `finish` (one statement, committed alone): store the answer, row `done`.

A crash before 2 commits leaves a `started` row and no effect: once its lease lapses the next
retry takes the row over and runs the request (safe: nothing was done). A crash between 2 and 3
leaves a `committed` row without an answer: a retry is never run again; it is answered 409 saying
the request took effect and its answer was lost (read the resource). An error answer (4xx, 5xx)
of a request that committed nothing releases the key (the row is deleted), so the same key can be
tried again once the cause is fixed; a 4xx after an effect committed is stored like any answer, but
a 5xx is not (it would be replayed to a client told to retry): the row stays `committed` and its
lease ends, so a retry learns at once that the request took effect.
When the database is away at step 3 (the request failed because it went down), the write is
retried in the background until the lease would lapse, so a retry is not answered "in progress"
for the whole lease once the database is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Annotated, Any, cast

from fastapi import Depends, Header, Request
from fastapi.routing import APIRoute
from sqlalchemy import CursorResult, and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from starlette.responses import Response, StreamingResponse

from .auth import CurrentPrincipal, Principal
from .background import BackgroundLoop
from .db import AFTER_COMMIT, Database
from .errors import Conflict, Refused
from .http import DatabaseDep
from .tables import idempotency_keys

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# How long a request holds its key before another attempt may take it over, and how often a
# running request renews that hold. Short, so that the key of a request whose process died
# (kill -9, a crashed node) is free again within seconds: with a 60 s lease every client retrying
# such a request was answered "in progress" for up to a minute (found by bench/chaos).
LEASE = timedelta(seconds=10)
RENEW_EVERY = 3.0
# The headers of an answer that are stored and replayed with its status and body.
KEPT_HEADERS = ("content-type", "location", "retry-after", "link", "x-next-cursor", "x-total-count", "etag")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BOUND = "cagette.idempotency_bound"
OPENAPI_MARKER = "x-idempotency-key"


class PreconditionRequired(Refused):
    status_code = 428
    code = "idempotency_key_required"


class KeyInProgress(Conflict):
    code = "idempotency_key_in_progress"
    retry_after = 1


class KeyReused(Conflict):
    code = "idempotency_key_reused"


@dataclass
class Attempt:
    """This request's hold on its key's row."""

    database: Database
    principal: str
    method: str
    path: str
    key: str
    attempt: uuid.UUID
    committed: bool = False  # an effect bound to the key is committed

    def where(self) -> Any:
        c = idempotency_keys.c
        return and_(c.principal == self.principal, c.method == self.method, c.path == self.path, c.key == self.key)


class _Renewal:
    """Renews a running request's lease every RENEW_EVERY seconds until the request ends, so a
    slow request keeps its key and a dead one loses it within LEASE."""

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not await self._stopped_within(RENEW_EVERY):
            try:
                if not await _renew(self.attempt):
                    return  # taken over: nothing left to hold (its bind will fail)
            except Exception as exc:  # the database away: the next beat tries again
                log.info("could not renew an %s lease (%s)", HEADER, exc)

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def end(self) -> None:
        self.stop.set()
        await self.task


class _Slot:
    """Where the route class and the dependency meet for one request."""

    attempt: Attempt | None = None
    renewal: _Renewal | None = None


_current: ContextVar[_Slot | None] = ContextVar("cagette_idempotency", default=None)


class Replayed(Exception):
    """The key's stored answer: sent as it is (IdempotentRoute catches it before any handler)."""

    def __init__(self, response: Response) -> None:
        super().__init__("replayed")
        self.response = response


def _principal(principal: Principal) -> str:
    return f"{principal.kind}:{principal.user_id}"


async def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256(request.url.query.encode())
    digest.update(b"\n")
    digest.update(await request.body())
    return digest.hexdigest()


def _stored_answer(row: Any) -> Response:
    headers = {**(row.headers or {}), REPLAYED_HEADER: "true"}
    return Response(content=row.body or b"", status_code=row.status_code, headers=headers)


@asynccontextmanager
async def _autocommit(database: Database) -> AsyncIterator[AsyncConnection]:
    """A connection whose statements each commit alone: the key's own writes are one statement
    each (or, in `begin`, statements each atomic on its own under READ COMMITTED anyway), so no
    BEGIN and COMMIT round trips around them."""
    async with database.engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


async def begin(request: Request, principal: Principal, database: Database, key: str) -> Attempt:
    """Take the key for this request (step 1), or raise: its stored answer (Replayed), or 409."""
    attempt = Attempt(database, _principal(principal), request.method, request.url.path, key, uuid.uuid4())
    fingerprint = await _fingerprint(request)
    c = idempotency_keys.c
    async with _autocommit(database) as session:
        taken = await session.scalar(
            insert(idempotency_keys)
            .values(
                principal=attempt.principal,
                method=attempt.method,
                path=attempt.path,
                key=key,
                fingerprint=fingerprint,
                state="started",
                attempt=attempt.attempt,
                leased_until=func.now() + LEASE,
            )
            .on_conflict_do_nothing()
            .returning(c.attempt)
        )
        if taken is None:
            # A started row whose lease lapsed: its request died before its effect committed.
            taken = await session.scalar(
                update(idempotency_keys)
                .where(
                    attempt.where(),
                    c.state == "started",
                    c.fingerprint == fingerprint,
                    c.leased_until < func.now(),
                )
                .values(attempt=attempt.attempt, leased_until=func.now() + LEASE)
                .returning(c.attempt)
            )
        if taken is not None:
            return attempt
        row = (
            await session.execute(
                select(idempotency_keys, (c.leased_until > func.now()).label("lease_running")).where(attempt.where())
            )
        ).first()
    if row is None:  # released or expired in between: try once more
        return await begin(request, principal, database, key)
    if row.fingerprint != fingerprint:
        raise KeyReused(
            f"this {HEADER} was already used for a different request ({request.method} {request.url.path} "
            "with another body or query); use a new key for a new request"
        )
    if row.state == "done":
        raise Replayed(_stored_answer(row))
    if row.state == "started" or row.lease_running:
        raise KeyInProgress(f"a request with this {HEADER} is still in progress; try again shortly for its answer")
    raise KeyReused(
        f"the request with this {HEADER} took effect but its answer was not recorded; "
        "read the resource to see the result, and do not send it again"
    )


_KEY_FORMAT = "printable ASCII (space to ~), 1 to 255 characters"
KeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description=f"One key per intended action, the same on each retry of it ({_KEY_FORMAT}): the first "
        f"answer is replayed with `{REPLAYED_HEADER}: true`; the same key with another request is a 409",
    ),
]
_REQUIRED_NOTE = "Required here (428 without): a retry of this request could move money. "


async def accept_key(
    request: Request, principal: CurrentPrincipal, database: DatabaseDep, key: KeyHeader = None
) -> str | None:
    """The optional key: with it, the request is idempotent; without it, it runs as it is."""
    if key is None:
        return None
    return await _take(request, principal, database, key)


async def require_key(
    request: Request, principal: CurrentPrincipal, database: DatabaseDep, key: KeyHeader = None
) -> str:
    """The key a route that moves money needs (428 without)."""
    if key is None:
        raise PreconditionRequired(
            f"this request needs an {HEADER} header ({_KEY_FORMAT}, e.g. a new uuid for each action, "
            "the same on each retry): a retry without one could record it twice"
        )
    return await _take(request, principal, database, key)


async def _take(request: Request, principal: Principal, database: Database, key: str) -> str:
    slot = _current.get()
    if slot is None:
        raise RuntimeError("an Idempotency-Key dependency on a route that is not an IdempotentRoute")
    if slot.attempt is None:  # FastAPI calls each dependency once per request
        slot.attempt = await begin(request, principal, database, key)
        slot.renewal = _Renewal(slot.attempt)
    return key


OPTIONAL = Depends(accept_key)
REQUIRED = Depends(require_key)
# For a route that also needs the key's value (it is validated and taken already).
RequiredKey = Annotated[str, REQUIRED]


async def bind(session: AsyncSession) -> None:
    """Step 2, in the effect's transaction: mark the request's key as having taken effect, if this
    request still holds it (else Conflict, and the transaction with its effect is rolled back).
    Called by `outbox.add`; a no-op outside a request with a key, and once per transaction."""
    slot = _current.get()
    attempt = slot.attempt if slot is not None else None
    if attempt is None or session.info.get(_BOUND) is attempt:
        return
    c = idempotency_keys.c
    held = await session.scalar(
        update(idempotency_keys)
        .where(attempt.where(), c.attempt == attempt.attempt)
        .values(state="committed", leased_until=func.now() + LEASE)
        .returning(c.attempt)
    )
    if held is None:
        raise KeyInProgress(f"another request with this {HEADER} took it over; nothing was changed by this one")
    session.info[_BOUND] = attempt

    def committed() -> None:
        attempt.committed = True

    session.info.setdefault(AFTER_COMMIT, []).append(committed)


async def _renew(attempt: Attempt) -> bool:
    """Extend this attempt's lease; False when it no longer holds the key."""
    c = idempotency_keys.c
    async with _autocommit(attempt.database) as session:
        held = await session.scalar(
            update(idempotency_keys)
            .where(attempt.where(), c.attempt == attempt.attempt, c.state.in_(("started", "committed")))
            .values(leased_until=func.now() + LEASE)
            .returning(c.attempt)
        )
    return held is not None


async def _store(attempt: Attempt, response: Response) -> None:
    headers = {name: value for name, value in response.headers.items() if name in KEPT_HEADERS}
    c = idempotency_keys.c
    async with _autocommit(attempt.database) as session:
        await session.execute(
            update(idempotency_keys)
            .where(attempt.where(), c.attempt == attempt.attempt)
            .values(state="done", status_code=response.status_code, headers=headers, body=bytes(response.body))
        )


async def _end_lease(attempt: Attempt) -> None:
    c = idempotency_keys.c
    async with _autocommit(attempt.database) as session:
        await session.execute(
            update(idempotency_keys)
            .where(attempt.where(), c.attempt == attempt.attempt, c.state == "committed")
            .values(leased_until=func.now())
        )


async def _release(attempt: Attempt) -> None:
    c = idempotency_keys.c
    async with _autocommit(attempt.database) as session:
        await session.execute(delete(idempotency_keys).where(attempt.where(), c.attempt == attempt.attempt))


def _closing_step(attempt: Attempt, response: Response | None) -> Callable[[], Awaitable[None]] | None:
    """Step 3's write: keep the answer, or release the key of a request that changed nothing and
    was refused or failed (`response` None: an error with no answer to keep). A bound effect
    without an answer to keep leaves the row `committed`: never run again."""
    if response is None or isinstance(response, StreamingResponse):
        return None if attempt.committed else partial(_release, attempt)
    if response.status_code >= 400 and not attempt.committed:
        return partial(_release, attempt)
    if response.status_code >= 500:
        # The effect committed but its answer could not be made (the database went away right
        # after the commit): a stored 503 would be replayed, Retry-After and all, to a client
        # told to retry, for as long as the key is kept (found by bench/chaos). Keep no answer and
        # end the lease: a retry is told at once that the request took effect (read the resource).
        return partial(_end_lease, attempt)
    return partial(_store, attempt, response)


# Step 3 writes kept trying in the background (a reference keeps each task alive).
_closing: set[asyncio.Task[None]] = set()


async def finish(attempt: Attempt, response: Response | None) -> None:
    """Step 3. When the database is away at the end of a request (a request refused because the
    database went down is the common case), the write is retried in the background until the
    key's lease would lapse: otherwise every retry of that request is answered 409 "in progress"
    for the whole lease after the database is back (found by bench/chaos). Both writes are
    conditional on this attempt still holding the row, so a late one changes nothing it should not."""
    step = _closing_step(attempt, response)
    if step is None:
        return
    try:
        await step()
    except Exception as exc:  # the answer is sent anyway
        log.warning("could not record the answer for an %s yet (%s); retrying in the background", HEADER, exc)
        task = asyncio.create_task(_keep_trying(step, deadline=time.monotonic() + LEASE.total_seconds()))
        _closing.add(task)
        task.add_done_callback(_closing.discard)


async def _keep_trying(step: Callable[[], Awaitable[None]], *, deadline: float) -> None:
    delay = 0.2
    while time.monotonic() + delay < deadline:
        await asyncio.sleep(delay)
        try:
            await step()
            return
        except Exception:
            delay = min(delay * 2, 2.0)
    log.warning("gave up recording the answer for an %s: the row waits for its lease or retention", HEADER)


def _error_response(request: Request, exc: Exception) -> Response | None:
    handlers: dict[Any, Callable[[Request, Exception], Response | Awaitable[Response]]] = request.app.exception_handlers
    for kind in type(exc).__mro__:
        if kind in handlers:
            answer = handlers[kind](request, exc)
            return answer if isinstance(answer, Response) else None
    return None


class IdempotentRoute(APIRoute):
    """A route that takes `Idempotency-Key`: a state-changing one without REQUIRED gets OPTIONAL."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if not (self.methods or set()) & STATE_CHANGING:
            return
        if not self.takes_key():
            kwargs["dependencies"] = [*(kwargs.get("dependencies") or ()), OPTIONAL]
        # Read by runtime/openapi.py: the header documented as required, with its 428.
        marker = {OPENAPI_MARKER: "required" if self.key_required() else "optional"}
        kwargs["openapi_extra"] = {**(kwargs.get("openapi_extra") or {}), **marker}
        super().__init__(path, endpoint, **kwargs)

    def takes_key(self) -> bool:
        pending = list(self.dependant.dependencies)
        while pending:
            dependency = pending.pop()
            if dependency.call in (accept_key, require_key):
                return True
            pending.extend(dependency.dependencies)
        return False

    def key_required(self) -> bool:
        pending = list(self.dependant.dependencies)
        while pending:
            dependency = pending.pop()
            if dependency.call is require_key:
                return True
            pending.extend(dependency.dependencies)
        return False

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def idempotent(request: Request) -> Response:
            slot = _Slot()
            token = _current.set(slot)
            try:
                try:
                    response = await handler(request)
                except Replayed as replayed:
                    return replayed.response
                except Exception as exc:
                    if slot.renewal is not None:
                        await slot.renewal.end()
                    if slot.attempt is not None:
                        await finish(slot.attempt, _error_response(request, exc) if slot.attempt.committed else None)
                    raise
                if slot.renewal is not None:
                    await slot.renewal.end()
                if slot.attempt is not None:
                    await finish(slot.attempt, response)
                return response
            finally:
                if slot.renewal is not None:  # also when the request was cancelled
                    slot.renewal.stop.set()
                _current.reset(token)

        return idempotent


def document_keys(operation: dict[str, Any]) -> bool:
    """OpenAPI: the key header required where it is. True when the operation requires it (428)."""
    if operation.get(OPENAPI_MARKER) != "required":
        return False
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter.get("name") == HEADER:
            parameter["required"] = True
            parameter["description"] = _REQUIRED_NOTE + str(parameter.get("description", ""))
    return True


class IdempotencyRetention(BackgroundLoop):
    """Deletes keys (and their answers) older than the retention: past it, a key is new again."""

    name = "idempotency-retention"

    def __init__(self, database: Database, *, hours: float, interval: float = 3600.0) -> None:
        super().__init__(interval)
        self.database = database
        self.age = timedelta(hours=hours)

    async def run_once(self) -> bool:
        await self.purge()
        return False

    async def purge(self) -> int:
        async with self.database.transaction() as session:
            result = cast(
                CursorResult[Any],
                await session.execute(
                    delete(idempotency_keys).where(idempotency_keys.c.created_at < func.now() - self.age)
                ),
            )
        if result.rowcount:
            log.info("retention: %d idempotency keys deleted", result.rowcount)
        return result.rowcount
