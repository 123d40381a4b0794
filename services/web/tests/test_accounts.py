"""Accounts and sign-in on the web service: invitations from orders' members, single-use
links, passwords, sessions and CSRF, rate limits without account enumeration, sign-out."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from cagette_contracts import Language, MemberLeft, MemberUpdated, Role
from cagette_runtime.auth import TokenVerifier
from cagette_web import usecases
from cagette_web.api import SESSION_COOKIE
from cagette_web.tables import account_links, accounts, sessions

from .conftest import PASSWORD, browser, csrf_of, deliver, invited, set_password_and_sign_in


async def test_an_invited_member_sets_a_password_once_and_is_signed_in(service, servers, app) -> None:
    person = await invited(service, servers)
    assert person.link.startswith("http://web.test/set-password?token=")
    async with browser(app) as client:
        await set_password_and_sign_in(client, person)
        home = await client.get("/")
        assert home.status_code == 200
        assert "Hello Ana" in home.text and "member" in home.text
        assert "unavailable right now" in home.text  # no ledger in this test
        # The link was single-use.
        again = await client.get(person.link.removeprefix("http://web.test"))
        assert again.status_code == 400 and "already used" in again.text
    async with service.database.sessionmaker() as session:
        stored = await session.scalar(select(accounts.c.password_hash).where(accounts.c.account_id == person.member_id))
    assert stored is not None and stored.startswith("$argon2id$")


async def test_sign_in_refusals_say_the_same_whatever_the_account_and_are_rate_limited(service, servers, app) -> None:
    person = await invited(service, servers)
    async with browser(app) as first:
        await set_password_and_sign_in(first, person)
    async with browser(app) as client:
        csrf = csrf_of((await client.get("/sign-in")).text)
        wrong = await client.post("/sign-in", data={"email": person.email, "password": "nope", "csrf_token": csrf})
        unknown = await client.post(
            "/sign-in", data={"email": "nobody@example.org", "password": "nope", "csrf_token": csrf}
        )
        assert wrong.status_code == unknown.status_code == 401
        assert "Wrong e-mail address or password." in wrong.text
        assert "Wrong e-mail address or password." in unknown.text
        for _ in range(service.settings.sign_in_failures_per_account - 1):
            await client.post("/sign-in", data={"email": person.email, "password": "nope", "csrf_token": csrf})
        # Now even the right password waits: the account had too many failures.
        limited = await client.post("/sign-in", data={"email": person.email, "password": PASSWORD, "csrf_token": csrf})
        assert limited.status_code == 429 and "Too many sign-in attempts" in limited.text
        assert SESSION_COOKIE not in limited.cookies


async def test_forms_without_their_csrf_token_change_nothing(service, servers, app) -> None:
    person = await invited(service, servers)
    async with browser(app) as client:
        token = person.link.split("token=")[1]
        await client.get("/sign-in")
        refused = await client.post(
            "/set-password", data={"token": token, "password": PASSWORD, "confirmation": PASSWORD}
        )
        assert refused.status_code == 400 and "The form has expired" in refused.text
        forged = await client.post(
            "/set-password",
            data={"token": token, "password": PASSWORD, "confirmation": PASSWORD, "csrf_token": "guess"},
        )
        assert forged.status_code == 400
    async with service.database.sessionmaker() as session:
        assert (
            await session.scalar(select(accounts.c.password_hash).where(accounts.c.account_id == person.member_id))
            is None
        )


async def test_bad_passwords_and_expired_links_are_refused(service, servers, app) -> None:
    person = await invited(service, servers, language=Language.FR)
    token = person.link.split("token=")[1]
    async with browser(app) as client:
        csrf = csrf_of((await client.get("/set-password", params={"token": token})).text)
        short = await client.post(
            "/set-password", data={"token": token, "password": "short", "confirmation": "short", "csrf_token": csrf}
        )
        assert short.status_code == 400 and "10 characters" in short.text
        async with service.database.transaction() as session:
            await session.execute(
                update(account_links)
                .where(account_links.c.account_id == person.member_id)
                .values(expires_at=usecases.now() - timedelta(seconds=1))
            )
        expired = await client.post(
            "/set-password", data={"token": token, "password": PASSWORD, "confirmation": PASSWORD, "csrf_token": csrf}
        )
        assert expired.status_code == 400 and "expired" in expired.text
        unknown = await client.get("/set-password", params={"token": "made-up"})
        assert unknown.status_code == 400 and "not valid" in unknown.text


async def test_a_tampered_session_cookie_is_signed_out(app) -> None:
    async with browser(app) as client:
        client.cookies.set(SESSION_COOKIE, "forged-value")
        answer = await client.get("/")
        assert answer.status_code == 303 and "session_ended" in answer.headers["location"]


async def test_sign_out_ends_the_session_on_the_server(service, servers, app) -> None:
    person = await invited(service, servers)
    async with browser(app) as client:
        await set_password_and_sign_in(client, person)
        cookie = client.cookies[SESSION_COOKIE]
        home = await client.get("/")
        out = await client.post("/sign-out", data={"csrf_token": csrf_of(home.text)})
        assert out.status_code == 303
        client.cookies.set(SESSION_COOKIE, cookie)  # a copy of the old cookie no longer works
        assert (await client.get("/")).status_code == 303


async def test_password_reset_sends_a_link_only_for_an_account_and_says_the_same(service, servers, app) -> None:
    from cagette_runtime.testing import EventSpy

    person = await invited(service, servers)
    async with EventSpy(servers.amqp_url, "web.password_reset.requested") as spy, browser(app) as client:
        csrf = csrf_of((await client.get("/reset-password")).text)
        known = await client.post("/reset-password", data={"email": person.email.upper(), "csrf_token": csrf})
        unknown = await client.post("/reset-password", data={"email": "nobody@example.org", "csrf_token": csrf})
        assert known.status_code == unknown.status_code == 200
        assert "If an account exists" in known.text and "If an account exists" in unknown.text
        [message] = await spy.wait_for("web.password_reset.requested", account_id=str(person.member_id))
        assert message.body["group_id"] == str(person.group_id)
        assert len(spy.matching("web.password_reset.requested")) == 1


async def test_tokens_carry_current_roles_and_removal_ends_sessions(service, servers, app) -> None:
    person = await invited(service, servers, role=Role.COORDINATOR)
    verifier = TokenVerifier(service.settings)
    verifier.issuers[service.settings.jwt_issuer].static_keys = {
        key.key_id: __import__("jwt").PyJWK(key.public_jwk()) for key in service.keys.keys
    }
    async with browser(app) as client:
        await set_password_and_sign_in(client, person)
        home = await client.get("/")
        csrf = csrf_of(home.text)
        assert (await client.post("/token")).status_code == 403  # no CSRF header
        issued = (await client.post("/token", headers={"X-CSRF-Token": csrf})).json()
        assert issued["expires_in"] == service.settings.access_token_minutes * 60
        principal = await verifier.verify(issued["access_token"])
        assert principal.roles == {person.group_id: Role.COORDINATOR}

        await deliver(
            service,
            MemberUpdated(
                group_id=person.group_id, member_id=person.member_id, role=Role.MEMBER, name="Ana", email=person.email
            ),
        )
        demoted = (await client.post("/token", headers={"X-CSRF-Token": csrf})).json()
        assert (await verifier.verify(demoted["access_token"])).roles == {person.group_id: Role.MEMBER}

        await deliver(service, MemberLeft(group_id=person.group_id, member_id=person.member_id, removed=True))
        assert (await client.get("/")).status_code == 303  # signed out at once
        async with service.database.sessionmaker() as session:
            left = await session.scalar(
                select(sessions.c.session_hash).where(sessions.c.account_id == person.member_id)
            )
        assert left is None


async def test_jwks_publishes_every_key_and_the_newest_signs(service, app) -> None:
    from cagette_web.keys import write_new_key

    async with browser(app) as client:
        before = (await client.get("/.well-known/jwks.json")).json()["keys"]
        write_new_key(service.settings.web_signing_keys_dir)
        service.keys.reload()
        after = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert len(after) == len(before) + 1
    assert {key["kid"] for key in before} < {key["kid"] for key in after}
    assert all(key["alg"] == "EdDSA" and key["use"] == "sig" and "d" not in key for key in after)
    assert service.keys.active.key_id == after[-1]["kid"]


async def test_machine_clients_get_scoped_tokens_until_revoked(service, app) -> None:
    group = uuid.uuid4()
    created = await usecases.create_client(service.database, "treasurer script", [f"coordinator:{group}"], days=1)
    verifier = TokenVerifier(service.settings)
    verifier.issuers[service.settings.jwt_issuer].static_keys = {
        key.key_id: __import__("jwt").PyJWK(key.public_jwk()) for key in service.keys.keys
    }
    async with browser(app) as client:
        form = {
            "grant_type": "client_credentials",
            "client_id": str(created.client_id),
            "client_secret": created.secret,
        }
        answer = await client.post("/oauth/token", data=form)
        assert answer.status_code == 200, answer.text
        principal = await verifier.verify(answer.json()["access_token"])
        assert principal.kind == "client" and principal.roles == {group: Role.COORDINATOR}
        wrong = await client.post("/oauth/token", data=form | {"client_secret": "guess"})
        assert wrong.status_code == 401 and "wrong" in wrong.json()["detail"]
        assert await usecases.revoke_client(service.database, created.client_id)
        revoked = await client.post("/oauth/token", data=form)
        assert revoked.status_code == 401


async def test_the_first_platform_administrator_comes_from_the_cli_use_case(service, app) -> None:
    link = await usecases.create_admin(service.database, service.settings, "Admin@Example.org", "Root", Language.EN)
    async with browser(app) as client:
        path = link.removeprefix("http://web.test")
        csrf = csrf_of((await client.get(path)).text)
        token = path.split("token=")[1]
        done = await client.post(
            "/set-password", data={"token": token, "password": PASSWORD, "confirmation": PASSWORD, "csrf_token": csrf}
        )
        assert done.status_code == 303
        assert "Platform administrator" in (await client.get("/")).text
