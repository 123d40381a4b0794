"""Card disputes (issue 6: "recorded and flagged to coordinators"): `payments.card_payment.disputed`
in on the real broker, one email per coordinator out on a real SMTP server."""

from __future__ import annotations

import asyncio
import logging
import uuid

from cagette_contracts import CardPaymentDisputed, Money, Role
from cagette_runtime.testing import drain_queue

DISPUTE_SUBJECT_FR = "Paiement par carte contesté : 12,55\xa0€ payés par Paul - AMAP des Lilas"
DISPUTE_SUBJECT_EN = "Card payment disputed: €12.55 paid by Paul - AMAP des Lilas"


def dispute(facts, payer, order=None, **overrides) -> CardPaymentDisputed:
    fields = {
        "group_id": facts.group_id,
        "payment_id": uuid.uuid4(),
        "member_id": payer.member_id,
        "amount": Money.of(1255, "EUR"),
        "order_id": order.order_id if order is not None else None,
        "provider_payment_id": "pi_3QxY",
        "dispute_id": "dp_1Qz",
        "reason": "fraudulent",
        "status": "needs_response",
    }
    return CardPaymentDisputed(**{**fields, **overrides})


def both_parts(mailbox, message) -> tuple[str, str]:
    return mailbox.body(message, "plain"), mailbox.body(message, "html")


async def dispute_rows(running) -> list[tuple]:
    rows = await running.rows(
        "SELECT recipient, language, status, attempts FROM email_deliveries WHERE kind = 'card_payment_disputed' "
        "ORDER BY recipient"
    )
    return [tuple(row) for row in rows]


async def test_each_coordinator_gets_one_email_in_their_language_members_none_redeliveries_nothing_more(
    start_service, mailbox, facts
) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        cora, carl = facts.coordinators()
        paul, max_ = facts.member("Paul", "fr"), facts.member("Max", "en")
        await running.publish(facts.group, cora, carl, paul, max_)
        order = facts.order(paul, "card")
        await running.publish(order)
        [confirmation] = await mailbox.wait_for(str(paul.email))  # his card order, paid

        disputed = dispute(facts, paul, order)
        await running.publish(disputed)
        [fr] = await mailbox.wait_for(str(cora.email))
        [en] = await mailbox.wait_for(str(carl.email))

        assert fr["Subject"] == DISPUTE_SUBJECT_FR
        for part in both_parts(mailbox, fr):
            assert "Paul" in part and str(paul.email) in part and "12,55\xa0€" in part
            assert str(order.order_id) in part and str(disputed.payment_id) in part and "pi_3QxY" in part
            assert "dp_1Qz" in part and "needs_response" in part and "fraudulent" in part
            assert "tableau de bord du prestataire de paiement par carte" in part
        text = mailbox.body(fr, "plain")
        assert text.startswith("Bonjour Cora,")
        assert f"- Commande : {order.order_id}, confirmée le " in text and ", total 12,55\xa0€" in text
        assert "- Motif indiqué : fraudulent" in text
        assert en["Subject"] == DISPUTE_SUBJECT_EN
        for part in both_parts(mailbox, en):
            assert "€12.55" in part and str(order.order_id) in part and "fraudulent" in part
            assert "card provider's dashboard" in part
        assert mailbox.body(en, "plain").startswith("Hello Carl,") and "12,55" not in mailbox.body(en, "plain")

        # The same event again (broker redelivery, relay retry): a duplicate for the inbox...
        await running.publish(disputed)
        await running.processed_all_before(facts.member("Sentinel"))
        # ...and even past the inbox (its row gone), the delivery log's key holds.
        assert (
            len(
                await running.rows(
                    "DELETE FROM inbox_messages WHERE consumer = 'notifications.events' AND event_id = :id RETURNING 1",
                    id=disputed.event_id,
                )
            )
            == 1
        )
        await running.publish(disputed)
        await running.wait_rows(
            "SELECT 1 FROM inbox_messages WHERE consumer = 'notifications.events' AND event_id = :id",
            lambda rows: len(rows) == 1,
            id=disputed.event_id,
        )
        await asyncio.sleep(1.0)  # the sender polls every 0.2 s
        assert len(mailbox.to(str(cora.email))) == 1 and len(mailbox.to(str(carl.email))) == 1
        assert mailbox.to(str(max_.email)) == []
        assert mailbox.to(str(paul.email)) == [confirmation]
        assert await dispute_rows(running) == sorted(
            [(str(cora.email), "fr", "sent", 1), (str(carl.email), "en", "sent", 1)]
        )


async def test_role_changes_are_followed(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        cora, carl = facts.coordinators()
        paul, max_ = facts.member("Paul", "fr"), facts.member("Max", "en")
        await running.publish(facts.group, cora, carl, paul, max_)

        # Carl steps down, Max becomes a coordinator (and writes in French now). An older update
        # arriving late (Carl still a coordinator, earlier occurred_at) changes nothing.
        demoted = facts.updated(carl, role=Role.MEMBER)
        stale = facts.updated(carl, occurred_at=demoted.occurred_at.replace(year=demoted.occurred_at.year - 1))
        await running.publish(demoted, facts.updated(max_, role=Role.COORDINATOR, language="fr"), stale)
        await running.publish(dispute(facts, paul))

        [to_cora] = await mailbox.wait_for(str(cora.email))
        [to_max] = await mailbox.wait_for(str(max_.email))
        assert to_cora["Subject"] == to_max["Subject"] == DISPUTE_SUBJECT_FR
        assert mailbox.body(to_max, "plain").startswith("Bonjour Max,")
        await running.processed_all_before(facts.member("Sentinel"))
        await asyncio.sleep(1.0)
        assert mailbox.to(str(carl.email)) == [] and mailbox.to(str(paul.email)) == []
        assert [row[0] for row in await dispute_rows(running)] == sorted([str(cora.email), str(max_.email)])
        roles = await running.rows(
            "SELECT member_id, role FROM member_directory WHERE member_id IN (:carl, :max)",
            carl=carl.member_id,
            max=max_.member_id,
        )
        assert dict(roles) == {carl.member_id: "member", max_.member_id: "coordinator"}


class Records(logging.Handler):
    """Keeps the records of one logger (the service replaces the root handlers when it starts,
    pytest's caplog with them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_known_group_without_coordinator_is_warned_about_not_retried(start_service, mailbox, facts) -> None:
    records = Records()
    logger = logging.getLogger("cagette_notifications.handlers")
    logger.addHandler(records)
    try:
        async with start_service(smtp_port=mailbox.port) as running:
            paul = facts.member("Paul", "fr")
            await running.publish(facts.group, paul)
            disputed = dispute(facts, paul)
            await running.publish(disputed)
            # Handled at once, not retried (a retry rolls the inbox row back), and nothing recorded.
            await running.wait_rows(
                "SELECT 1 FROM inbox_messages WHERE consumer = 'notifications.events' AND event_id = :id",
                lambda rows: len(rows) == 1,
                id=disputed.event_id,
            )
            assert await running.rows("SELECT * FROM email_deliveries") == []
    finally:
        logger.removeHandler(records)
    [warning] = [record for record in records.records if "has no coordinator" in record.getMessage()]
    assert warning.levelno == logging.WARNING
    assert str(disputed.payment_id) in warning.getMessage() and str(facts.group_id) in warning.getMessage()


async def test_no_known_coordinator_yet_is_retried_then_parked(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port, delivery_limit=2) as running:
        # The group is not known yet: retried, and past the delivery limit parked with the reason.
        stranger = facts.member("Paul", "fr")
        early = dispute(facts, stranger)
        await running.publish(early)
        [parked] = await drain_queue(running.amqp_url, "notifications.events.parking", 1, timeout=20)
        assert parked.message_id == str(early.event_id)
        assert (
            await running.rows(
                "SELECT 1 FROM inbox_messages WHERE consumer = 'notifications.events' AND event_id = :id",
                id=early.event_id,
            )
            == []
        )

        # The group is known but its coordinator's role is not (a directory row kept before
        # migration 0004 stores roles): it may be a coordinator, so retried too, not dropped.
        cora = facts.member("Cora", "fr", role=Role.COORDINATOR)
        await running.publish(facts.group, cora, stranger)
        await running.processed_all_before(facts.member("Sentinel"))
        assert await running.rows(
            "UPDATE member_directory SET role = NULL WHERE member_id = :id RETURNING role", id=cora.member_id
        ) == [(None,)]
        unknown_role = dispute(facts, stranger)
        await running.publish(unknown_role)
        [parked] = await drain_queue(running.amqp_url, "notifications.events.parking", 1, timeout=20)
        assert parked.message_id == str(unknown_role.event_id)
        assert await running.rows("SELECT * FROM email_deliveries") == []

        # Once her role is known (her next MemberUpdated), a dispute reaches her.
        await running.publish(facts.updated(cora))
        await running.publish(dispute(facts, stranger))
        [email] = await mailbox.wait_for(str(cora.email))
        assert email["Subject"] == DISPUTE_SUBJECT_FR
