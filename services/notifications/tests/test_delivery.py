"""The delivery log against a real SMTP server: outages are retried and delivered once,
permanent refusals are marked failed, and operators hear of both through events."""

from __future__ import annotations

import asyncio
import uuid

from cagette_contracts import Money, PaymentReceived, Role
from cagette_contracts.routing import EMAIL_FAILED, EMAIL_SENT
from cagette_runtime.testing import EventSpy


def receipt_for(facts, member) -> PaymentReceived:
    return facts.payment(
        PaymentReceived, member, Money.of(1255, "EUR"), method="transfer", reference="RF18 5390 0754 7034"
    )


async def test_smtp_outage_then_recovery_delivers_exactly_once(start_service, facts, smtp_server, free_port) -> None:
    port = free_port()  # nothing listens there yet: the SMTP server is down
    async with start_service(smtp_port=port) as running, EventSpy(running.amqp_url, "notifications.#") as spy:
        hugo = facts.member("Hugo", "en")
        await running.publish(facts.group, hugo)
        receipt = receipt_for(facts, hugo)
        await running.publish(receipt)
        failing = await running.wait_rows(
            "SELECT status, attempts, last_error FROM email_deliveries",
            lambda rows: len(rows) == 1 and rows[0].attempts >= 2 and rows[0].status == "pending",
        )
        assert failing[0].status == "pending" and "Connect" in failing[0].last_error
        assert spy.matching(EMAIL_SENT) == [] and spy.matching(EMAIL_FAILED) == []

        async with smtp_server(port=port) as (mailbox, _):
            [message] = await mailbox.wait_for(str(hugo.email), timeout=10)
            assert message["Subject"] == "Receipt: €12.55 received - AMAP des Lilas"
            [sent] = await spy.wait_for(EMAIL_SENT)
            await asyncio.sleep(1.0)  # retries are due every 0.5 s at most: none may follow
            assert len(mailbox.messages) == 1
        row = (
            await running.rows("SELECT delivery_id, status, attempts, last_error, message_id FROM email_deliveries")
        )[0]
        assert row.status == "sent" and row.last_error is None and row.attempts >= 3
        assert sent.body["delivery_id"] == str(row.delivery_id)
        assert sent.body["source_event_id"] == str(receipt.event_id)
        assert sent.body["kind"] == "payment_received" and sent.body["recipient"] == str(hugo.email)
        assert (
            sent.body["attempts"] == row.attempts and sent.body["message_id"] == row.message_id == message["Message-ID"]
        )
        assert sent.body["correlation_id"] == receipt.correlation_id


async def test_permanent_refusal_is_failed_and_reported(start_service, facts, smtp_server) -> None:
    async with smtp_server() as (mailbox, port):
        async with start_service(smtp_port=port) as running, EventSpy(running.amqp_url, "notifications.#") as spy:
            ines, jules = facts.member("Ines", "fr"), facts.member("Jules", "fr")
            mailbox.refuse.add(str(ines.email))
            await running.publish(facts.group, ines, jules, receipt_for(facts, ines), receipt_for(facts, jules))
            [failed] = await spy.wait_for(EMAIL_FAILED)
            assert failed.body["recipient"] == str(ines.email) and failed.body["permanent"] is True
            assert "550" in failed.body["reason"] and failed.body["attempts"] == 1
            await mailbox.wait_for(str(jules.email))  # the others keep flowing
            await asyncio.sleep(1.0)
            assert mailbox.to(str(ines.email)) == []
            rows = await running.rows("SELECT recipient, status, attempts FROM email_deliveries ORDER BY recipient")
            assert [tuple(r) for r in rows] == [(str(ines.email), "failed", 1), (str(jules.email), "sent", 1)]

            # A coordinator sees it among the group's failed emails; Ines gives a working address;
            # the coordinator sends it again: it goes to the new address, once.
            coordinator = running.token(uuid.uuid4(), {facts.group_id: Role.COORDINATOR})
            failed_list = await running.http.get(f"/groups/{facts.group_id}/emails?status=failed", headers=coordinator)
            assert [e["delivery_id"] for e in failed_list.json()] == [failed.body["delivery_id"]]
            retry = f"/groups/{facts.group_id}/emails/{failed.body['delivery_id']}/retry"
            as_member = running.token(ines.member_id, {facts.group_id: Role.MEMBER})
            assert (await running.http.post(retry, headers=as_member)).status_code == 403
            await running.publish(facts.updated(ines, email="ines.fixed@example.org"))
            await running.wait_rows(
                "SELECT 1 FROM member_directory WHERE email = 'ines.fixed@example.org'", lambda rows: len(rows) == 1
            )
            resent = await running.http.post(retry, headers=coordinator)
            assert resent.status_code == 200, resent.text
            assert resent.json()["recipient"] == "ines.fixed@example.org" and resent.json()["status"] == "pending"
            [message] = await mailbox.wait_for("ines.fixed@example.org")
            assert message["Subject"].startswith("Reçu : 12,55")
            await spy.wait_for(EMAIL_SENT, delivery_id=failed.body["delivery_id"])
            again = await running.http.post(retry, headers=coordinator)
            assert again.status_code == 409 and "is sent" in again.json()["detail"]


async def test_retries_run_out_into_a_reported_failure(start_service, facts, free_port) -> None:
    async with (
        start_service(smtp_port=free_port(), smtp_max_attempts=2) as running,
        EventSpy(running.amqp_url, "notifications.#") as spy,
    ):
        karim = facts.member("Karim", "en")
        await running.publish(facts.group, karim, receipt_for(facts, karim))
        [failed] = await spy.wait_for(EMAIL_FAILED)
        assert failed.body["permanent"] is False and failed.body["attempts"] == 2
        assert failed.body["reason"].startswith("gave up after 2 attempts")
        rows = await running.rows("SELECT status, attempts FROM email_deliveries")
        assert [tuple(r) for r in rows] == [("failed", 2)]


async def test_an_email_interrupted_mid_send_is_never_sent_again_by_itself(start_service, facts, smtp_server) -> None:
    """A sender that holds an email past its lease (it died, or hangs mid-send) may have reached the
    server: another replica marks it uncertain and reports it, and does not send it a second time.
    A coordinator may send it again, once."""
    from cagette_notifications.sender import EmailSender

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the connection, never greets: the send hangs

    silent = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    async with (
        silent,
        smtp_server() as (mailbox, port),
        start_service(smtp_port=silent_port, smtp_timeout=60.0, smtp_lease=0.5) as running,
        EventSpy(running.amqp_url, "notifications.#") as spy,
    ):
        lea = facts.member("Léa", "fr")
        await running.publish(facts.group, lea, receipt_for(facts, lea))
        await running.wait_rows(
            "SELECT status FROM email_deliveries", lambda rows: [r.status for r in rows] == ["sending"]
        )

        settings = running.service.settings.model_copy(update={"smtp_port": port})
        replica = EmailSender(running.service.database, settings)
        await asyncio.sleep(0.6)  # the hung sender's lease runs out
        await replica.run_once()
        [row] = await running.rows("SELECT delivery_id, status, attempts, last_error FROM email_deliveries")
        assert (row.status, row.attempts) == ("uncertain", 1)
        assert "not sent again" in row.last_error
        [failed] = await spy.wait_for(EMAIL_FAILED)
        assert failed.body["permanent"] is False and failed.body["delivery_id"] == str(row.delivery_id)
        await replica.run_once()
        assert mailbox.messages == [], "an uncertain email is not sent again by itself"

        coordinator = running.token(uuid.uuid4(), {facts.group_id: Role.COORDINATOR})
        uncertain = await running.http.get(f"/groups/{facts.group_id}/emails?status=uncertain", headers=coordinator)
        assert [e["delivery_id"] for e in uncertain.json()] == [str(row.delivery_id)]
        retry = await running.http.post(f"/groups/{facts.group_id}/emails/{row.delivery_id}/retry", headers=coordinator)
        assert retry.status_code == 200, retry.text
        await replica.run_once()
        [message] = await mailbox.wait_for(str(lea.email))
        assert message["Message-ID"].startswith(f"<{row.delivery_id}@")
        [sent] = await running.rows("SELECT status FROM email_deliveries")
        assert sent.status == "sent"
