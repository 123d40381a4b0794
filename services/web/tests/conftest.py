"""Web test fixtures: one migrated database and one running web service (real PostgreSQL and
RabbitMQ, isolated per run by the root `servers` fixture), called in-process over ASGI."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cagette_contracts import Event, Language, MemberJoined, Role
from cagette_runtime.migrations import upgrade_async
from cagette_runtime.testing import EventSpy, IsolatedServers, publish_event, wait_consumed
from cagette_web.app import MIGRATIONS, WebService
from cagette_web.handlers import MEMBERS_QUEUE
from cagette_web.settings import WebSettings

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
async def web_settings(servers: IsolatedServers, tmp_path_factory: pytest.TempPathFactory) -> WebSettings:
    url = await servers.create_database("web")
    await upgrade_async(url, MIGRATIONS)
    keys: Path = tmp_path_factory.mktemp("web-keys")
    return WebSettings(
        database_url=url,
        amqp_url=servers.amqp_url,
        migrate_on_start=False,
        outbox_poll_interval=0.1,
        web_signing_keys_dir=str(keys),
        web_cookie_secure=False,
        web_public_url="http://web.test",
        web_ledger_url="http://127.0.0.1:9",  # nothing there: balances show as unavailable
    )


@pytest.fixture(scope="session")
async def service(web_settings: WebSettings) -> AsyncIterator[WebService]:
    web = WebService(web_settings)
    await web.start()
    yield web
    await web.stop()


@pytest.fixture(scope="session")
def app(service: WebService) -> FastAPI:
    return service.create_app()


def browser(app: FastAPI) -> httpx.AsyncClient:
    """A client that keeps cookies like a browser (one per person in a test)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://web.test", headers={"Accept-Language": "en"}
    )


async def deliver(service: WebService, event: Event, timeout: float = 10.0) -> None:
    """Publish and wait until the web service's consumer has committed it."""
    await publish_event(service.broker, event)
    await wait_consumed(service.database, MEMBERS_QUEUE, event, timeout)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@dataclass
class Person:
    member_id: uuid.UUID
    group_id: uuid.UUID
    email: str
    link: str


async def invited(
    service: WebService, servers: IsolatedServers, role: Role = Role.MEMBER, language: Language = Language.EN
) -> Person:
    """A member orders announced, and the invitation link web published for them."""
    member_id, group_id = uuid.uuid4(), uuid.uuid4()
    email = f"{member_id.hex[:8]}@example.org"
    async with EventSpy(servers.amqp_url, "web.invitation.created") as spy:
        await deliver(
            service,
            MemberJoined(group_id=group_id, member_id=member_id, role=role, name="Ana", email=email, language=language),
        )
        [message] = await spy.wait_for("web.invitation.created", account_id=str(member_id))
    return Person(member_id, group_id, email, message.body["link"])


async def set_password_and_sign_in(client: httpx.AsyncClient, person: Person, password: str = PASSWORD) -> None:
    path = person.link.removeprefix("http://web.test")
    form = await client.get(path)
    assert form.status_code == 200, form.text
    token = path.split("token=")[1]
    done = await client.post(
        "/set-password",
        data={"token": token, "password": password, "confirmation": password, "csrf_token": csrf_of(form.text)},
    )
    assert done.status_code == 303, done.text
