"""The running system for end-to-end tests: the four services as real processes, on this run's
own databases and broker vhost."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cagette_contracts import Role
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.devstack import SERVICES, Stack
from cagette_runtime.testing import IsolatedServers

JWT_SECRET = "end-to-end-test-secret-" + "0" * 24
LOG_DIR = Path(__file__).resolve().parent.parent / "var" / "e2e-logs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
async def stack(servers: IsolatedServers) -> AsyncIterator[Stack]:
    # Its own vhost: the service test suites declare the same queues with other settings.
    running = Stack(
        amqp_url=await servers.create_vhost("e2e"),
        postgres_url=servers.postgres_url,
        database_prefix=f"{servers.run_id}_e2e",
        ports={name: free_port() for name in SERVICES},
        extra_env={"CAGETTE_JWT_SECRET": JWT_SECRET, "CAGETTE_OUTBOX_POLL_INTERVAL": "0.2"},
        log_dir=LOG_DIR / servers.run_id,
    )
    servers.databases.extend(running.database_url(name) for name in SERVICES)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def bearer(user_id: uuid.UUID, *, coordinator_of: uuid.UUID | None = None, member_of: uuid.UUID | None = None,
           admin: bool = False) -> dict[str, str]:
    roles = {}
    if member_of:
        roles[member_of] = Role.MEMBER
    if coordinator_of:
        roles[coordinator_of] = Role.COORDINATOR
    token = encode_token(Principal(user_id=user_id, roles=roles, platform_admin=admin), JWT_SECRET)
    return {"Authorization": f"Bearer {token}"}


def client(stack: Stack, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.services[service].url, timeout=10)
