"""Inside the service, end to end: events on the real broker in, emails on a real SMTP server out."""

from __future__ import annotations

import asyncio
import uuid

from cagette_contracts import (
    CardPaymentFailed,
    Money,
    OrderAmended,
    PaymentCancelled,
    PaymentDeclared,
    PaymentReceived,
    PaymentRefunded,
    SubscriptionAmended,
)

REFERENCE_FR = "RF18 5390 0754 7034"
REFERENCE_EN = "RF71 2348 2319 8820"


def both_parts(mailbox, message) -> tuple[str, str]:
    return mailbox.body(message, "plain"), mailbox.body(message, "html")


async def test_transfer_order_gives_iban_amount_and_reference_in_each_language(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        alice, bob = facts.member("Alice", "fr"), facts.member("Bob", "en")
        await running.publish(facts.group, alice, bob)
        alice_order, bob_order = facts.order(alice, "transfer"), facts.order(bob, "transfer")
        # Alice: the usual order (order first, then the payments service declares the payment).
        await running.publish(alice_order, facts.declared(alice_order, REFERENCE_FR))
        # Bob: the declaration overtakes the order; the email still waits for both.
        await running.publish(facts.declared(bob_order, REFERENCE_EN))
        await asyncio.sleep(0.5)
        assert mailbox.to(str(bob.email)) == []
        await running.publish(bob_order)

        [fr] = await mailbox.wait_for(str(alice.email))
        [en] = await mailbox.wait_for(str(bob.email))

        assert fr["Subject"] == "Commande confirmée : 12,55\xa0€ à régler par virement - AMAP des Lilas"
        for part in both_parts(mailbox, fr):
            assert facts.IBAN in part and facts.BIC in part and REFERENCE_FR in part
            assert "12,55\xa0€" in part and "libellé du virement" in part
            assert "Oeufs x6" in part and "6,40\xa0€" in part
        assert en["Subject"] == "Your order is confirmed: €12.55 by bank transfer - AMAP des Lilas"
        for part in both_parts(mailbox, en):
            assert facts.IBAN in part and REFERENCE_EN in part and "€12.55" in part and "transfer label" in part
        assert REFERENCE_FR not in mailbox.body(en, "plain")
        assert en["From"] == running.service.settings.smtp_sender
        assert en["Message-ID"].endswith("@cagette.localhost>")


async def test_cheque_order_then_receipt_and_redeliveries_send_nothing_more(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        alice = facts.member("Alice", "fr")
        await running.publish(facts.group, alice)
        order = facts.order(alice, "cheque")
        declared = facts.declared(order, REFERENCE_FR)
        await running.publish(order, declared)
        [instructions] = await mailbox.wait_for(str(alice.email))
        text = mailbox.body(instructions, "plain")
        assert "À l'ordre de : AMAP des Lilas" in text
        assert f"Référence à écrire au dos du chèque : {REFERENCE_FR}" in text
        assert "Remettez le chèque lors de la distribution" in text

        received = facts.outcome(PaymentReceived, declared, declared_amount=order.total, label="chèque n° 0012345")
        await running.publish(received)
        _, receipt = await mailbox.wait_for(str(alice.email), 2)
        assert receipt["Subject"] == "Reçu : 12,55\xa0€ reçus - AMAP des Lilas"
        for part in both_parts(mailbox, receipt):
            assert "12,55\xa0€" in part and REFERENCE_FR in part and "chèque n° 0012345" in part

        # Every event again, same ids (a broker redelivery or a relay retry): nothing more is sent.
        await running.publish(facts.group, alice, order, declared, received)
        await running.processed_all_before(facts.member("Sentinel"))
        await asyncio.sleep(1.0)  # the sender polls every 0.2 s and is woken by any new delivery
        assert len(mailbox.to(str(alice.email))) == 2
        deliveries = await running.rows("SELECT kind, status, attempts FROM email_deliveries ORDER BY created_at")
        assert [tuple(row) for row in deliveries] == [("order_confirmed", "sent", 1), ("payment_received", "sent", 1)]


async def test_money_pot_card_and_amendment_confirmations(start_service, mailbox, facts) -> None:
    from cagette_contracts import AccountType, BalanceChanged, PostingLine, TransactionPosted

    async with start_service(smtp_port=mailbox.port) as running:
        pot, card = facts.member("Pot", "en"), facts.member("Card", "fr")
        await running.publish(facts.group, pot, card)
        # An older balance report (20.00) is not what the email states: the ledger's balance right
        # after posting this order is (B7), and the email waits for that posting.
        await running.publish(
            BalanceChanged(
                group_id=facts.group_id,
                member_id=pot.member_id,
                account_id=uuid.uuid4(),
                transaction_id=uuid.uuid4(),
                previous_balance=Money.of(0, "EUR"),
                balance=Money.of(2000, "EUR"),
            )
        )
        await running.wait_rows("SELECT balance FROM member_balances", lambda rows: rows == [(2000,)])
        pot_order = facts.order(pot, "money_pot")
        await running.publish(pot_order, facts.order(card, "card"))
        [card_mail] = await mailbox.wait_for(str(card.email))
        await running.wait_rows("SELECT event_id FROM awaiting_posting", lambda rows: rows == [(pot_order.event_id,)])
        assert mailbox.to(str(pot.email)) == []
        posted = TransactionPosted(
            group_id=facts.group_id,
            transaction_id=uuid.uuid4(),
            kind="order",
            idempotency_key=f"order:{pot_order.order_id}:confirmed",
            source_event_id=pot_order.event_id,
            postings=[
                PostingLine(
                    account_id=uuid.uuid4(),
                    account_type=AccountType.MEMBER,
                    member_id=pot.member_id,
                    amount=Money.of(-1255, "EUR"),
                    balance_after=Money.of(545, "EUR"),  # another order was posted in between
                ),
                PostingLine(
                    account_id=uuid.uuid4(),
                    account_type=AccountType.SALES,
                    amount=Money.of(1255, "EUR"),
                    balance_after=Money.of(3255, "EUR"),
                ),
            ],
        )
        await running.publish(posted)

        [pot_mail] = await mailbox.wait_for(str(pot.email))
        assert pot_mail["Subject"] == "Your order is confirmed: €12.55 from your money pot - AMAP des Lilas"
        assert "Your balance after this order: €5.45" in mailbox.body(pot_mail, "plain")
        [card_mail] = await mailbox.wait_for(str(card.email))
        assert "12,55\xa0€ ont été payés par carte" in mailbox.body(card_mail, "plain")

        # Pot adds a loaf by cheque... no: the complement is paid like the order (money pot here);
        # a cheque order's complement waits for its declared payment and carries its reference.
        cheque_order = facts.order(pot, "cheque")
        await running.publish(cheque_order, facts.declared(cheque_order, REFERENCE_EN))
        await mailbox.wait_for(str(pot.email), 2)
        bread = facts.line("Pain", 410)
        amended = OrderAmended(
            group_id=facts.group_id,
            order_id=cheque_order.order_id,
            amendment_id=uuid.uuid4(),
            member_id=pot.member_id,
            payment_method="cheque",
            added_lines=[bread],
            added_total=bread.line_total,
            new_total=Money.of(1665, "EUR"),
        )
        await running.publish(amended, facts.declared(cheque_order, "RF97 0000 1111 2222", amendment=amended))
        *_, complement = await mailbox.wait_for(str(pot.email), 3)
        assert complement["Subject"] == "Products added to your order: €4.10 more to pay - AMAP des Lilas"
        text = mailbox.body(complement, "plain")
        assert (
            "New order total: €16.65" in text and "RF97 0000 1111 2222" in text and "Payable to: AMAP des Lilas" in text
        )


async def test_subscription_and_payment_outcomes(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        claire = facts.member("Claire", "fr")
        await running.publish(facts.group, claire)
        subscription = facts.subscription(claire, "Légumes d'hiver", "cheque", 10, Money.of(12550, "EUR"))
        await running.publish(subscription)
        [sub_mail] = await mailbox.wait_for(str(claire.email))
        assert sub_mail["Subject"] == "Votre contrat Légumes d'hiver : 125,50\xa0€ - AMAP des Lilas"
        assert "12,55\xa0€ par distribution x 10 distributions" in mailbox.body(sub_mail, "plain")

        # The payments service expects a payment for the subscription: instructions with its reference.
        await running.publish(
            facts.payment(
                PaymentDeclared,
                claire,
                Money.of(12550, "EUR"),
                subscription_id=subscription.subscription_id,
                method="cheque",
                reference="RF55 1234 5678 9",
            )
        )
        instructions = (await mailbox.wait_for(str(claire.email), 2))[-1]
        assert instructions["Subject"] == "Paiement attendu : 125,50\xa0€ - AMAP des Lilas"
        text = mailbox.body(instructions, "plain")
        assert (
            "attendu pour Légumes d'hiver" in text and "Référence à écrire au dos du chèque : RF55 1234 5678 9" in text
        )

        common = {"group_id": facts.group_id, "member_id": claire.member_id, "amount": Money.of(1255, "EUR")}
        await running.publish(
            PaymentCancelled(payment_id=uuid.uuid4(), method="transfer", reason="jamais arrivé", **common)
        )
        cancelled = (await mailbox.wait_for(str(claire.email), 3))[-1]
        assert cancelled["Subject"] == "Paiement annulé : 12,55\xa0€ - AMAP des Lilas"
        assert "Motif : jamais arrivé" in mailbox.body(cancelled, "plain")

        await running.publish(
            CardPaymentFailed(
                payment_id=uuid.uuid4(), reason="carte refusée", retry_url="https://pay.example.org/retry/42", **common
            )
        )
        failed = (await mailbox.wait_for(str(claire.email), 4))[-1]
        assert failed["Subject"] == "Échec du paiement par carte : 12,55\xa0€ - AMAP des Lilas"
        assert "https://pay.example.org/retry/42" in mailbox.body(failed, "plain")
        assert 'href="https://pay.example.org/retry/42"' in mailbox.body(failed, "html")

        # A correction (a payment recorded on the wrong member reversed) is no refund: no email.
        correction = PaymentRefunded(
            payment_id=uuid.uuid4(),
            refund_id=uuid.uuid4(),
            method="cheque",
            reverses_payment_id=uuid.uuid4(),
            reason="recorded on the wrong member",
            **common,
        )
        await running.publish(correction)
        await running.publish(PaymentRefunded(payment_id=uuid.uuid4(), refund_id=uuid.uuid4(), method="card", **common))
        *_, refunded = await mailbox.wait_for(str(claire.email), 5)
        assert len(mailbox.to(str(claire.email))) == 5  # the refund only, not the correction
        assert refunded["Subject"] == "Remboursement : 12,55\xa0€ - AMAP des Lilas"
        assert "L'argent revient sur la carte" in mailbox.body(refunded, "plain")


async def test_member_updates_and_subscription_amendments(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        lea = facts.member("Lea", "fr")
        await running.publish(facts.group, lea)
        # Lea changes her address and language: later emails follow.
        updated = facts.updated(lea, name="Léa", email="lea.new@example.org", language="en")
        subscription = facts.subscription(lea, "Fromages", "transfer", 4, Money.of(5020, "EUR"))
        await running.publish(updated, subscription)
        [confirmed] = await mailbox.wait_for("lea.new@example.org")
        assert confirmed["Subject"] == "Your subscription to Fromages: €50.20 - AMAP des Lilas"
        assert f"IBAN: {facts.IBAN}" in mailbox.body(confirmed, "plain")

        amended = SubscriptionAmended(
            group_id=facts.group_id,
            subscription_id=subscription.subscription_id,
            amendment_id=uuid.uuid4(),
            contract_id=subscription.contract_id,
            member_id=lea.member_id,
            payment_method="transfer",
            added_lines=[facts.line("Pain", 410)],
            distribution_count=3,
            added_total=Money.of(1230, "EUR"),
            new_total=Money.of(6250, "EUR"),
        )
        await running.publish(amended)
        _, complement = await mailbox.wait_for("lea.new@example.org", 2)
        assert (
            complement["Subject"] == "Products added to your subscription Fromages: €12.30 more to pay - AMAP des Lilas"
        )
        text = mailbox.body(complement, "plain")
        assert "€4.10 per distribution x 3 distributions = €12.30" in text and "New contract total: €62.50" in text
        assert mailbox.to(str(lea.email)) == []
