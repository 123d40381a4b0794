"""The running system for end-to-end tests: the services as real processes, on this run's
own databases and broker vhost. Tokens are signed with the development key, which the services
accept outside production mode (web-issued tokens are tested in test_identity_e2e.py)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cagette_contracts import Role
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.devstack import SERVICES, Stack
from cagette_runtime.testing import KEYED, IsolatedServers

LOG_DIR = Path(__file__).resolve().parent.parent / "var" / "e2e-logs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@asynccontextmanager
async def running_stack(
    servers: IsolatedServers, name: str, services: Iterable[str] = SERVICES, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Stack]:
    """Services as processes in a vhost and databases of their own (the service test suites
    declare the same queues with other settings; several stacks must not share a queue)."""
    running = Stack(
        amqp_url=await servers.create_vhost(name),
        postgres_url=servers.postgres_url,
        database_prefix=f"{servers.run_id}_{name}",
        ports={service: free_port() for service in services},
        extra_env={
            "CAGETTE_OUTBOX_POLL_INTERVAL": "0.2",
            "CAGETTE_WEB_SIGNING_KEYS_DIR": str(LOG_DIR / f"{servers.run_id}-{name}" / "web-keys"),
            **(extra_env or {}),
        },
        log_dir=LOG_DIR / f"{servers.run_id}-{name}",
    )
    servers.databases.extend(running.database_url(service) for service in running.ports)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="session")
async def stack(servers: IsolatedServers) -> AsyncIterator[Stack]:
    """The services, shared by the end-to-end tests that need no special settings (they sign
    their tokens with the development key: web, and its database connections, stay out)."""
    # Webhooks to a local http:// receiver, retried quickly (tests/test_events_e2e.py).
    webhooks = {
        "CAGETTE_WEBHOOK_ALLOW_HTTP": "true",
        "CAGETTE_WEBHOOK_POLL_INTERVAL": "0.2",
        "CAGETTE_WEBHOOK_RETRY_BASE": "0.2",
        "CAGETTE_WEBHOOK_RETRY_MAX": "1",
    }
    services = [name for name in SERVICES if name != "web"]
    async with running_stack(servers, "e2e", services=services, extra_env=webhooks) as running:
        yield running


@pytest.fixture(scope="session")
async def web_system(servers: IsolatedServers) -> AsyncIterator[Stack]:
    """The five services with web, for the pages' browser tests (tests/test_pages_*.py), with
    SMTP pointed at nothing (the emails wait in notifications' outbox; no test reads them)."""
    async with running_stack(servers, "pages", extra_env={"CAGETTE_SMTP_PORT": str(free_port())}) as running:
        yield running


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Any]:
    """One headless Chromium for the browser tests (each test opens its own contexts)."""
    from playwright.async_api import async_playwright

    from .browser import launch_chromium

    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        yield browser
        await browser.close()


async def eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """The probe's first truthy answer (the services work asynchronously, through the broker)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await probe()
        if answer:
            return answer
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: last answer {answer!r}")
        await asyncio.sleep(0.1)


def bearer(
    user_id: uuid.UUID,
    *,
    coordinator_of: uuid.UUID | None = None,
    member_of: uuid.UUID | None = None,
    admin: bool = False,
) -> dict[str, str]:
    roles = {}
    if member_of:
        roles[member_of] = Role.MEMBER
    if coordinator_of:
        roles[coordinator_of] = Role.COORDINATOR
    token = encode_token(Principal(user_id=user_id, roles=roles, platform_admin=admin))
    return {"Authorization": f"Bearer {token}"}


def client(stack: Stack, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.services[service].url, timeout=10, **KEYED)


@asynccontextmanager
async def clients(stack: Stack, *services: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A client for each of those services, in that order, closed together."""
    async with AsyncExitStack() as opened:
        yield [await opened.enter_async_context(client(stack, service)) for service in services]
