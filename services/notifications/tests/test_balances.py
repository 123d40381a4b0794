"""Negative balances: one reminder per crossing, digests while it lasts, members may opt out of
reminders (not of receipts), through the HTTP API with the runtime's auth."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from cagette_contracts import (
    BalanceBackToNonNegative,
    BalanceChanged,
    BalanceWentNegative,
    Money,
    PaymentReceived,
    Role,
)


def ledger(facts, member, account_id):
    """Builders for the ledger's balance events of one member account."""

    def posted(event_class, balance: int, **fields):
        """The ledger's event of a new transaction on the account, leaving it at `balance`."""
        return event_class(
            group_id=facts.group_id,
            member_id=member.member_id,
            account_id=account_id,
            transaction_id=uuid.uuid4(),
            balance=Money.of(balance, "EUR"),
            **fields,
        )

    def changed(previous: int, balance: int) -> BalanceChanged:
        return posted(BalanceChanged, balance, previous_balance=Money.of(previous, "EUR"))

    def negative(balance: int) -> BalanceWentNegative:
        return posted(BalanceWentNegative, balance)

    def back(balance: int) -> BalanceBackToNonNegative:
        return posted(BalanceBackToNonNegative, balance)

    return changed, negative, back


async def test_one_reminder_per_crossing_not_per_posting(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        dora = facts.member("Dora", "en")
        await running.publish(facts.group, dora)
        changed, negative, back = ledger(facts, dora, uuid.uuid4())

        await running.publish(changed(500, -755), negative(-755))
        [reminder] = await mailbox.wait_for(str(dora.email))
        assert reminder["Subject"] == "Your balance is negative: €7.55 to settle - AMAP des Lilas"
        text = mailbox.body(reminder, "plain")
        assert "is negative: -€7.55" in text and "You owe the group €7.55" in text
        assert f"IBAN {facts.IBAN}" in text and f"payable to {facts.PAYEE}" in text

        # More postings while negative, and even a second "went negative" for the same episode.
        await running.publish(changed(-755, -2010), changed(-2010, -3265), negative(-3265))
        await running.processed_all_before(facts.member("Sentinel"))
        await asyncio.sleep(0.8)
        assert len(mailbox.to(str(dora.email))) == 1

        # Settled, then negative again: a new crossing, a new reminder with the new amount.
        await running.publish(changed(-3265, 0), back(0), changed(0, -100), negative(-100))
        _, second = await mailbox.wait_for(str(dora.email), 2)
        assert "€1.00 to settle" in second["Subject"]
        await running.wait_rows(
            "SELECT kind, status FROM email_deliveries",
            lambda rows: sorted(tuple(r) for r in rows) == [("balance_reminder", "sent")] * 2,
        )


async def test_opted_out_member_gets_receipts_but_no_reminders(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        emma, coordinator, other = (
            facts.member("Emma", "fr"),
            facts.member("Coord", "fr", Role.COORDINATOR),
            facts.member("Other"),
        )
        await running.publish(facts.group, emma, coordinator, other)
        url = f"/groups/{facts.group_id}/members/{emma.member_id}/email-preferences"
        as_emma = running.token(emma.member_id, {facts.group_id: Role.MEMBER})

        assert (await running.http.get(url, headers=as_emma)).json() == {"reminders": True}
        # Another member may not touch Emma's preferences; nobody may without a token.
        as_other = running.token(other.member_id, {facts.group_id: Role.MEMBER})
        assert (await running.http.put(url, json={"reminders": False}, headers=as_other)).status_code == 403
        assert (await running.http.put(url, json={"reminders": False})).status_code == 401
        # Emma opts out herself; a coordinator of the group may set it too.
        response = await running.http.put(url, json={"reminders": False}, headers=as_emma)
        assert response.status_code == 200 and response.json() == {"reminders": False}
        as_coordinator = running.token(coordinator.member_id, {facts.group_id: Role.COORDINATOR})
        assert (await running.http.put(url, json={"reminders": False}, headers=as_coordinator)).status_code == 200
        assert (await running.http.get(url, headers=as_emma)).json() == {"reminders": False}

        changed, negative, back = ledger(facts, emma, uuid.uuid4())
        await running.publish(changed(0, -1255), negative(-1255))
        await running.publish(facts.payment(PaymentReceived, emma, Money.of(1255, "EUR"), method="cash"))
        [receipt] = await mailbox.wait_for(str(emma.email))
        assert receipt["Subject"].startswith("Reçu : 12,55")
        await running.processed_all_before(facts.member("Sentinel"))
        await asyncio.sleep(0.8)
        assert len(mailbox.to(str(emma.email))) == 1  # the receipt only

        # The delivery log shows what she was sent (the member or a coordinator may read it).
        emails = await running.http.get(
            f"/groups/{facts.group_id}/members/{emma.member_id}/emails", headers=as_coordinator
        )
        assert [e["kind"] for e in emails.json()] == ["payment_received"]


async def test_digest_while_negative_then_stops(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port, reminder_interval=timedelta(seconds=1)) as running:
        fred, gina = facts.member("Fred", "fr"), facts.member("Gina", "en")
        await running.publish(facts.group, fred, gina)
        url = f"/groups/{facts.group_id}/members/{gina.member_id}/email-preferences"
        as_gina = running.token(gina.member_id, {facts.group_id: Role.MEMBER})
        assert (await running.http.put(url, json={"reminders": False}, headers=as_gina)).status_code == 200

        changed, negative, back = ledger(facts, fred, uuid.uuid4())
        g_changed, g_negative, _ = ledger(facts, gina, uuid.uuid4())
        await running.publish(changed(0, -2000), negative(-2000), g_changed(0, -500), g_negative(-500))
        reminder, digest = await mailbox.wait_for(str(fred.email), 2, timeout=10)
        assert reminder["Subject"].startswith("Votre solde est négatif")
        assert digest["Subject"] == "Rappel : votre solde est toujours négatif (-20,00\xa0€) - AMAP des Lilas"
        assert "Vous devez 20,00\xa0€ au groupe" in mailbox.body(digest, "plain")

        await running.publish(changed(-2000, 0), back(0))
        await running.processed_all_before(facts.member("Sentinel"))
        count = len(mailbox.to(str(fred.email)))
        await asyncio.sleep(2.0)  # two intervals: no digest once the balance is back to zero
        assert len(mailbox.to(str(fred.email))) == count
        assert mailbox.to(str(gina.email)) == []  # opted out: neither reminder nor digests
        state = await running.rows(
            "SELECT last_reminder_at > negative_since FROM member_balances WHERE member_id = :m", m=gina.member_id
        )
        assert state == [(True,)]  # her digests were due and skipped, not stuck
        # No event caused them: each scheduler run gives its emails an id of its own (per group).
        ids = await running.rows("SELECT correlation_id FROM email_deliveries WHERE member_id = :m", m=fred.member_id)
        assert len(ids) == count and len({row[0] for row in ids}) == count


async def test_pending_cheque_holds_the_reminder_back_until_it_is_cancelled(start_service, mailbox, facts) -> None:
    from cagette_contracts import PaymentCancelled

    # The grace counts from the crossing's own time: long enough for the declaration published
    # right after it to be consumed on a busy machine (at 0.5 s it was not, once).
    async with start_service(smtp_port=mailbox.port, reminder_grace=timedelta(seconds=2)) as running:
        nina = facts.member("Nina", "en")
        await running.publish(facts.group, nina)
        order = facts.order(nina, "cheque")
        declared = facts.declared(order, "RF18 5390 0754 7034")
        changed, negative, back = ledger(facts, nina, uuid.uuid4())
        # R16: the ledger posts the order's debit at once; the cheque counts only once received.
        # The ledger's crossing may even arrive before the payments service's declaration.
        went_negative = negative(-1255)
        await running.publish(order, changed(0, -1255), went_negative, declared)
        [instructions] = await mailbox.wait_for(str(nina.email))
        assert "Payable to" in mailbox.body(instructions, "plain")
        await asyncio.sleep(2.5)  # grace passed, several scans: the pending cheque covers the debt
        assert len(mailbox.to(str(nina.email))) == 1

        await running.publish(facts.outcome(PaymentCancelled, declared, reason="no cheque at the distribution"))
        cancelled, reminder = (await mailbox.wait_for(str(nina.email), 3))[1:]
        assert cancelled["Subject"].startswith("Payment cancelled")
        assert reminder["Subject"] == "Your balance is negative: €12.55 to settle - AMAP des Lilas"
        assert reminder["X-Cagette-Event-Id"] == str(went_negative.event_id)  # keyed by the crossing
