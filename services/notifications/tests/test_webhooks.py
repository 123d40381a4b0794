"""Outbound webhooks on the real broker and database, to a local HTTP receiver: registration
and its refusals, signed deliveries (Standard Webhooks, verified with the library), retries while
the receiver is down, the delivery log, replay, and an endpoint disabled after the documented
period with its owners emailed: the group's coordinators, or a platform endpoint's contact."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from cagette_contracts import BalanceChanged, Money, Role
from cagette_notifications.webhooks import WEBHOOKS_QUEUE
from cagette_runtime.testing import WebhookReceiver, wait_consumed


@asynccontextmanager
async def delivering(start_service, mailbox, facts, *members, disable_after: int):
    """`(receiver, running)`: a webhook receiver, and the service delivering to it over plain
    HTTP, retrying quickly, disabling an endpoint failing for `disable_after` seconds; the group
    and `members` known to it."""
    async with (
        WebhookReceiver() as receiver,
        start_service(
            smtp_port=mailbox.port,
            webhook_allow_http=True,
            webhook_poll_interval=0.1,
            webhook_retry_base=0.2,
            webhook_retry_max=0.5,
            webhook_disable_after=timedelta(seconds=disable_after),
        ) as running,
    ):
        await running.publish(facts.group, *members)
        yield receiver, running


def balance_changed(facts, member, balance: int) -> BalanceChanged:
    return BalanceChanged(
        group_id=facts.group_id,
        member_id=member.member_id,
        account_id=uuid.uuid4(),
        transaction_id=uuid.uuid4(),
        previous_balance=Money.of(0, "EUR"),
        balance=Money.of(balance, "EUR"),
        correlation_id="cause-of-the-balance",
    )


async def eventually(probe, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (answer := probe()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met")
        await asyncio.sleep(0.05)
    return answer


async def test_registration_is_checked(start_service, facts) -> None:
    async with start_service(webhook_allow_http=False) as running:
        coordinator = running.token(uuid.uuid4(), {facts.group_id: Role.COORDINATOR})
        member = running.token(uuid.uuid4(), {facts.group_id: Role.MEMBER})
        good = {"group_id": str(facts.group_id), "url": "https://example.org/hook", "event_types": ["ledger.#"]}
        for body, status, reason in [
            (good | {"url": "http://example.org/hook"}, 422, "https://"),
            (good | {"url": "https://user:pw@example.org/hook"}, 422, "credentials"),
            (good | {"url": "https://example.org/a b"}, 422, "control"),
            (good | {"event_types": []}, 422, "event_types"),
            (good | {"event_types": ["Ledger.#!"]}, 422, "event_types"),
        ]:
            answer = await running.http.post("/webhooks/endpoints", json=body, headers=coordinator)
            assert answer.status_code == status and reason in answer.text, answer.text
        assert (await running.http.post("/webhooks/endpoints", json=good, headers=member)).status_code == 403
        platform = good | {"group_id": None}
        assert (await running.http.post("/webhooks/endpoints", json=platform, headers=coordinator)).status_code == 403
        created = await running.http.post("/webhooks/endpoints", json=good, headers=coordinator)
        assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
        listed = await running.http.get(f"/webhooks/endpoints?group_id={facts.group_id}", headers=coordinator)
        assert [e["url"] for e in listed.json()] == ["https://example.org/hook"] and "secret" not in listed.json()[0]


async def test_signed_deliveries_retried_while_down_logged_replayed_then_disabled(
    start_service, mailbox, facts
) -> None:
    camille, alice = facts.member("Camille", "en", Role.COORDINATOR), facts.member("Alice")
    async with delivering(start_service, mailbox, facts, camille, alice, disable_after=4) as (receiver, running):
        coordinator = running.token(camille.member_id, {facts.group_id: Role.COORDINATOR})
        created = (
            await running.http.post(
                "/webhooks/endpoints",
                json={"group_id": str(facts.group_id), "url": receiver.url, "event_types": ["ledger.balance.*"]},
                headers=coordinator,
            )
        ).json()
        endpoint, secret = created["endpoint_id"], created["secret"]

        # Delivered, signed: the receiver verifies it with the Standard Webhooks library.
        first = balance_changed(facts, alice, -500)
        await running.publish(first)
        [received] = await eventually(lambda: receiver.accepted)
        assert received.headers["webhook-id"] == str(first.event_id)
        verified = Webhook(secret).verify(received.body, received.headers)
        assert verified["event_id"] == str(first.event_id) and verified["correlation_id"] == "cause-of-the-balance"
        forged = dict(received.headers, **{"webhook-signature": "v1,AAAA"})
        try:
            Webhook(secret).verify(received.body, forged)
            raise AssertionError("a forged signature verified")
        except Exception as exc:
            assert "signature" in str(exc).lower()
        # Not wanted: a member joining is not a ledger.balance.* event.
        await running.publish(facts.member("Bob"))

        # Down for a while: retried with backoff, visible in the log, delivered once it is back.
        receiver.up = False
        second = balance_changed(facts, alice, -700)
        await running.publish(second)
        await eventually(lambda: receiver.refused >= 2)
        log = (await running.http.get(f"/webhooks/endpoints/{endpoint}/deliveries", headers=coordinator)).json()
        pending = next(d for d in log if d["event_id"] == str(second.event_id))
        assert pending["status"] == "pending" and pending["attempts"] >= 2
        assert pending["last_status_code"] == 503 and "HTTP 503" in pending["last_error"]
        receiver.up = True
        await eventually(lambda: any(r.headers["webhook-id"] == str(second.event_id) for r in receiver.accepted))
        assert {json.loads(r.body)["event_type"] for r in receiver.accepted} == {"ledger.balance.changed"}

        # Replayed on request: everything since a time, sent (and signed) again.
        before = len(receiver.accepted)
        since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        replayed = await running.http.post(
            f"/webhooks/endpoints/{endpoint}/replay", json={"since": since}, headers=coordinator
        )
        assert replayed.status_code == 200 and replayed.json() == {"replayed": 2}
        await eventually(lambda: len(receiver.accepted) == before + 2)
        for again in receiver.accepted[before:]:
            Webhook(secret).verify(again.body, again.headers)

        # Down past the disable period: disabled, and the coordinator is told by email.
        receiver.up = False
        await running.publish(balance_changed(facts, alice, -900))
        [told] = await mailbox.wait_for(str(camille.email), timeout=20)
        assert " ".join(str(told["Subject"]).split()) == f"Webhook disabled: {receiver.url} - AMAP des Lilas"
        assert "HTTP 503" in mailbox.body(told, "plain")
        [shown] = (await running.http.get(f"/webhooks/endpoints?group_id={facts.group_id}", headers=coordinator)).json()
        assert shown["enabled"] is False and shown["disabled_reason"]
        assert await running.rows("SELECT pattern FROM webhook_bindings") == []  # nobody wants them now
        refused = receiver.refused
        await running.publish(balance_changed(facts, alice, -950))
        await asyncio.sleep(1.0)
        assert receiver.refused == refused  # nothing is sent to a disabled endpoint

        # Enabled again once fixed: what waited is delivered.
        receiver.up = True
        enabled = await running.http.post(f"/webhooks/endpoints/{endpoint}/enable", headers=coordinator)
        assert enabled.status_code == 200 and enabled.json()["enabled"] is True
        await eventually(lambda: len({r.headers["webhook-id"] for r in receiver.accepted}) == 3, timeout=20)


async def test_a_platform_endpoint_needs_an_owner_checked_like_any_input(start_service, facts) -> None:
    async with start_service(webhook_allow_http=False) as running:
        admin = running.token(uuid.uuid4(), {}, admin=True)
        platform = {"url": "https://example.org/all", "event_types": ["#"]}
        group = platform | {"group_id": str(facts.group_id)}
        for body, reason in [
            (platform, "owner_email"),
            (platform | {"owner_email": "not an address"}, "owner_email"),
            (platform | {"owner_email": "ops@example.org\nBcc: x@example.org"}, "owner_email"),
            (platform | {"owner_email": "ops@example.org", "owner_language": "de"}, "owner_language"),
            (group | {"owner_email": "ops@example.org"}, "platform endpoints"),
            (group | {"owner_language": "en"}, "platform endpoints"),
        ]:
            answer = await running.http.post("/webhooks/endpoints", json=body, headers=admin)
            assert answer.status_code == 422 and reason in answer.text, (body, answer.text)
        assert await running.rows("SELECT 1 FROM webhook_endpoints WHERE url = 'https://example.org/all'") == []
        created = await running.http.post(
            "/webhooks/endpoints", json=platform | {"owner_email": "ops@example.org"}, headers=admin
        )
        assert created.status_code == 201, created.text
        assert (created.json()["owner_email"], created.json()["owner_language"]) == ("ops@example.org", "fr")
        in_english = platform | {"owner_email": "ops@example.org", "owner_language": "en"}
        english = await running.http.post("/webhooks/endpoints", json=in_english, headers=admin)
        assert english.json()["owner_language"] == "en"
        listed = (await running.http.get("/webhooks/endpoints", headers=admin)).json()
        shown = {e["endpoint_id"]: e for e in listed}
        assert shown[created.json()["endpoint_id"]]["owner_email"] == "ops@example.org"
        assert shown[english.json()["endpoint_id"]]["owner_language"] == "en"
        assert all("secret" not in e for e in listed)


async def test_a_disabled_platform_endpoint_emails_its_owner_each_time_in_their_language(
    start_service, mailbox, facts
) -> None:
    camille, alice = facts.member("Camille", "fr", Role.COORDINATOR), facts.member("Alice")
    async with delivering(start_service, mailbox, facts, camille, alice, disable_after=3) as (receiver, running):
        admin = running.token(uuid.uuid4(), {}, admin=True)
        created = await running.http.post(
            "/webhooks/endpoints",
            json={
                "url": receiver.url,
                "event_types": ["ledger.balance.*"],
                "owner_email": "ops@example.org",
                "owner_language": "en",
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()["endpoint_id"]

        receiver.up = False
        await running.publish(balance_changed(facts, alice, -500))
        [told] = await mailbox.wait_for("ops@example.org", timeout=20)
        assert " ".join(str(told["Subject"]).split()) == f"Webhook disabled: {receiver.url} - Cagette"
        text = mailbox.body(told, "plain")
        assert text.startswith("Hello,") and "every group of the platform" in text and "HTTP 503" in text
        assert endpoint in text and "coordinator" not in text
        assert "every group of the platform" in mailbox.body(told, "html")
        assert mailbox.to(str(camille.email)) == []  # a platform endpoint is not the group's
        [shown] = [
            e
            for e in (await running.http.get("/webhooks/endpoints", headers=admin)).json()
            if e["endpoint_id"] == endpoint
        ]
        assert shown["enabled"] is False and shown["disabled_reason"]

        # Enabled, failing again past the period: disabled again, and told again.
        enabled = await running.http.post(f"/webhooks/endpoints/{endpoint}/enable", headers=admin)
        assert enabled.status_code == 200 and enabled.json()["enabled"] is True
        await running.publish(balance_changed(facts, alice, -600))
        await mailbox.wait_for("ops@example.org", count=2, timeout=20)
        assert mailbox.to(str(camille.email)) == []


async def test_the_webhooks_queue_takes_only_what_an_enabled_endpoint_wants(start_service, mailbox, facts) -> None:
    """Bound with the enabled endpoints' patterns (none at first: the `#` of earlier versions is
    removed at start), so an event nobody wants is never queued, consumed and dropped."""
    camille, alice = facts.member("Camille", "en", Role.COORDINATOR), facts.member("Alice")
    async with delivering(start_service, mailbox, facts, camille, alice, disable_after=60) as (receiver, running):
        assert await running.rows("SELECT pattern FROM webhook_bindings") == []
        unwanted = balance_changed(facts, alice, -100)
        await running.processed_all_before(unwanted)
        assert await running.rows("SELECT 1 FROM inbox_messages WHERE consumer = :q", q=WEBHOOKS_QUEUE) == []

        coordinator = running.token(camille.member_id, {facts.group_id: Role.COORDINATOR})
        body = {"group_id": str(facts.group_id), "url": receiver.url, "event_types": ["ledger.balance.*"]}
        assert (await running.http.post("/webhooks/endpoints", json=body, headers=coordinator)).status_code == 201
        assert await running.rows("SELECT pattern FROM webhook_bindings") == [("ledger.balance.*",)]
        joined, wanted = facts.member("Bob"), balance_changed(facts, alice, -200)
        await running.publish(joined, wanted)  # one queue, in order: Bob would be consumed first
        await wait_consumed(running.service.database, WEBHOOKS_QUEUE, wanted, timeout=15)
        consumed = await running.rows("SELECT event_id FROM inbox_messages WHERE consumer = :q", q=WEBHOOKS_QUEUE)
        assert consumed == [(wanted.event_id,)]
        [received] = await eventually(lambda: receiver.accepted)
        assert received.headers["webhook-id"] == str(wanted.event_id)
