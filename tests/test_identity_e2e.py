"""The identity issue's "done when", on the five services running as processes, a real SMTP
server (the local mail catcher) and a real browser (Debian's headless Chromium driven by
Playwright): people sign in on web and call the other services with its short-lived tokens;
a demotion counts on every service as soon as it consumed the event; old HS256 tokens are
refused everywhere; production mode refuses the development secret.

Screenshots of each step go to var/screenshots/ (not versioned)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from cagette_runtime.devstack import SERVICES, Stack
from cagette_runtime.settings import DEV_JWT_SECRET
from cagette_runtime.testing import IsolatedServers, Mailbox, smtp_server

from .browser import launch_chromium
from .conftest import bearer, client, eventually, running_stack

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
PASSWORD = "une phrase de passe longue"
OTHER_SERVICES = ("orders", "ledger", "payments", "notifications")


@pytest.fixture(scope="module")
async def system(servers: IsolatedServers) -> AsyncIterator[tuple[Stack, Mailbox]]:
    async with smtp_server() as (mailbox, smtp_port):
        async with running_stack(
            servers,
            "identity",
            extra_env={"CAGETTE_SMTP_PORT": str(smtp_port), "CAGETTE_SMTP_POLL_INTERVAL": "0.2"},
        ) as stack:
            yield stack, mailbox


def link_in(mailbox: Mailbox, message: Any) -> str:
    found = re.search(r"http://\S+/set-password\?token=[\w-]+", mailbox.body(message, "plain"))
    assert found, "the email has no set-password link"
    return found.group(0)


async def accept_invitation(page: Any, link: str, shot: str) -> None:
    await page.goto(link)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirmation]", PASSWORD)
    await page.screenshot(path=str(SCREENSHOTS / f"{shot}-set-password.png"))
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*/$"))


async def web_token(page: Any, web_url: str) -> str:
    """A short-lived token for the person signed in on this page (session cookie + CSRF)."""
    csrf = await page.get_attribute("input[name=csrf_token]", "value")
    answer = await page.context.request.post(f"{web_url}/token", headers={"X-CSRF-Token": csrf})
    assert answer.status == 200, await answer.text()
    return str((await answer.json())["access_token"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_people_sign_in_and_roles_are_current_on_every_service(system) -> None:
    from playwright.async_api import async_playwright

    stack, mailbox = system
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    web_url = stack.services["web"].url
    admin = bearer(uuid.uuid4(), admin=True)  # the platform's setup, with a development token
    coordinator_id, other_coordinator_id, member_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    coordinator_email, member_email = (
        f"coord-{coordinator_id.hex[:6]}@example.org",
        f"m-{member_id.hex[:6]}@example.org",
    )

    async with client(stack, "orders") as orders:
        created = await orders.post(
            "/groups",
            json={"name": "AMAP des Lilas", "payment_methods": ["cheque"], "cheque_payee": "AMAP des Lilas"},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        group_id = created.json()["group_id"]
        for who, email in ((coordinator_id, coordinator_email), (other_coordinator_id, "other@example.org")):
            added = await orders.post(
                f"/groups/{group_id}/members",
                json={"member_id": str(who), "role": "coordinator", "name": "Camille", "email": email},
                headers=admin,
            )
            assert added.status_code == 201, added.text

    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            # The coordinator accepts their invitation and signs in.
            [invitation] = await mailbox.wait_for(coordinator_email, timeout=30)
            coordinator_page = await (await browser.new_context(locale="fr-FR")).new_page()
            await accept_invitation(coordinator_page, link_in(mailbox, invitation), "1-coordinator")
            coordinator_token = await web_token(coordinator_page, web_url)

            # The coordinator adds a member, with the token web issued.
            async with client(stack, "orders") as orders:
                added = await orders.post(
                    f"/groups/{group_id}/members",
                    json={"member_id": str(member_id), "name": "Dominique", "email": member_email, "language": "en"},
                    headers=auth(coordinator_token),
                )
                assert added.status_code == 201, added.text

            # The member receives the invitation (English), sets a password and lands signed in on
            # the home page, whose balance web read from the ledger with a short-lived token.
            [member_invitation] = await mailbox.wait_for(member_email, timeout=30)
            assert "You are invited to AMAP des Lilas" in member_invitation["Subject"]
            member_context = await browser.new_context(locale="en-GB")
            member_page = await member_context.new_page()
            await accept_invitation(member_page, link_in(mailbox, member_invitation), "2-member")

            async def balance_shown() -> str | None:
                await member_page.reload()
                text = await member_page.inner_text("td.balance")
                return text if "€" in text else None

            # In the member's language and locale (English: "€0.00").
            assert await eventually(balance_shown) == "€0.00"
            await member_page.screenshot(path=str(SCREENSHOTS / "3-member-home.png"))

            # Signing out and in again on the sign-in page; a wrong password is refused plainly.
            await member_page.click("nav button[type=submit]")
            await member_page.wait_for_url(re.compile(r".*/sign-in.*"))
            await member_page.fill("input[name=email]", member_email)
            await member_page.fill("input[name=password]", "wrong password")
            await member_page.click("form[action='/sign-in'] button")
            assert "Wrong e-mail address or password." in await member_page.inner_text("body")
            await member_page.screenshot(path=str(SCREENSHOTS / "4-wrong-password.png"))
            await member_page.fill("input[name=email]", member_email)
            await member_page.fill("input[name=password]", PASSWORD)
            await member_page.click("form[action='/sign-in'] button")
            await member_page.wait_for_url(re.compile(r".*/$"))
            member_token = await web_token(member_page, web_url)
            async with client(stack, "ledger") as ledger:
                own = await ledger.get(f"/groups/{group_id}/members/{member_id}/balance", headers=auth(member_token))
                assert own.status_code == 200, own.text

            # Each service's coordinator action, allowed with the coordinator's token...
            member_path = f"/groups/{group_id}/members/{member_id}"
            actions = {
                "orders": ("GET", f"/groups/{group_id}/members", None),
                "ledger": ("GET", f"{member_path}/balance", None),
                "payments": ("GET", f"/groups/{group_id}/distributions/{uuid.uuid4()}/baskets", None),
                "notifications": ("GET", f"/groups/{group_id}/emails", None),
            }

            async def attempt(service: str, token: str) -> httpx.Response:
                method, path, body = actions[service]
                async with client(stack, service) as http:
                    return await http.request(method, path, json=body, headers=auth(token))

            for service in OTHER_SERVICES:
                allowed = await attempt(service, coordinator_token)
                assert allowed.status_code != 403, (service, allowed.text)

            # ...until the other coordinator demotes them in orders: the same token, still valid,
            # is refused on every service once it consumed the event.
            async with client(stack, "orders") as orders:
                demoted_at = time.monotonic()
                demoted = await orders.patch(
                    f"/groups/{group_id}/members/{coordinator_id}",
                    json={"role": "member"},
                    headers=bearer(other_coordinator_id, coordinator_of=uuid.UUID(group_id)),
                )
                assert demoted.status_code == 200, demoted.text
            delays = {}
            for service in OTHER_SERVICES:

                async def refused(service: str = service) -> bool:
                    answer = await attempt(service, coordinator_token)
                    return answer.status_code == 403 and "coordinator" in answer.json()["detail"]

                await eventually(refused, timeout=15)
                delays[service] = time.monotonic() - demoted_at
            print(f"\ndemotion effective after (s): { {k: round(v, 3) for k, v in delays.items()} }", file=sys.stderr)

            async with client(stack, "orders") as orders:
                back = await orders.patch(
                    f"/groups/{group_id}/members/{coordinator_id}",
                    json={"role": "coordinator"},
                    headers=auth(coordinator_token),
                )
                assert back.status_code == 403, back.text
                fresh = await web_token(coordinator_page, web_url)
                assert jwt.decode(fresh, options={"verify_signature": False})["roles"] == {group_id: "member"}
                again = await orders.patch(
                    f"/groups/{group_id}/members/{coordinator_id}", json={"role": "coordinator"}, headers=auth(fresh)
                )
                assert again.status_code == 403, again.text

                # A removed member's web session stops at once; their ledger account stays.
                removed = await orders.delete(
                    member_path, headers=bearer(other_coordinator_id, coordinator_of=uuid.UUID(group_id))
                )
                assert removed.status_code == 204, removed.text

            async def signed_out() -> bool:
                await member_page.goto(web_url + "/")
                return "/sign-in" in member_page.url

            await eventually(signed_out)
            await member_page.screenshot(path=str(SCREENSHOTS / "5-removed-member-signed-out.png"))
            async with client(stack, "ledger") as ledger:
                kept = await ledger.get(
                    f"{member_path}/balance", headers=bearer(other_coordinator_id, coordinator_of=uuid.UUID(group_id))
                )
                assert kept.status_code == 200, kept.text
        finally:
            await browser.close()


async def test_tokens_signed_with_the_old_shared_secret_are_refused_by_every_service(system) -> None:
    stack, _ = system
    group_id = uuid.uuid4()
    now = int(time.time())
    legacy = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "iss": "cagette",
            "aud": "cagette",
            "iat": now,
            "exp": now + 600,
            "jti": "legacy",
            "roles": {str(group_id): "coordinator"},
            "admin": True,
        },
        DEV_JWT_SECRET,
        algorithm="HS256",
    )
    paths = {
        "orders": f"/groups/{group_id}",
        "ledger": f"/groups/{group_id}/members/{uuid.uuid4()}/balance",
        "payments": f"/groups/{group_id}/payments?reference=RF18539007547034",
        "notifications": f"/groups/{group_id}/emails",
    }
    for service, path in paths.items():
        async with client(stack, service) as http:
            answer = await http.get(path, headers=auth(legacy))
            assert answer.status_code == 401, (service, answer.status_code, answer.text)
            assert "HS256" in answer.json()["detail"], answer.text


@pytest.mark.parametrize("service", SERVICES)
async def test_production_mode_refuses_to_start_with_the_development_secret(service: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"cagette_{service}",
        "serve",
        env={**os.environ, "CAGETTE_ENV": "production", "CAGETTE_JWT_SECRET": DEV_JWT_SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    message = stderr.decode()
    assert "refuses to start in production mode" in message
    for setting in ("CAGETTE_JWT_SECRET", "CAGETTE_DATABASE_URL", "CAGETTE_AMQP_URL"):
        assert setting in message, message
