"""Corrections on a member's account, as emails: a product not delivered (R6) is one email naming
the product, the reason and the amount credited, once whatever the redeliveries; a payment
reversed because it was recorded by mistake (payments.payment.reversed) is no refund: no email."""

from __future__ import annotations

import uuid
from decimal import Decimal

from cagette_contracts import Money, OrderLineUndelivered, PaymentMethod, PaymentRefunded, PaymentReversed


async def test_an_undelivered_product_is_one_email_with_the_reason_and_the_credit(
    start_service, mailbox, facts
) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        claire = facts.member("Claire", "fr")
        await running.publish(facts.group, claire)
        removal = OrderLineUndelivered(
            group_id=facts.group_id,
            order_id=uuid.uuid4(),
            removal_id=uuid.uuid4(),
            member_id=claire.member_id,
            payment_method=PaymentMethod.CHEQUE,
            line_number=2,
            product_name="Comté",
            unit="kg",
            quantity=Decimal("0.375"),
            quantity_left=Decimal(0),
            unit_price=Money.of(1999, "EUR"),
            fee_rate=Decimal("0.02"),
            amount=Money.of(765, "EUR"),
            new_total=Money.of(700, "EUR"),
            reason="fromager malade",
            removed_by=uuid.uuid4(),
        )
        await running.publish(removal)
        await running.publish(removal)  # redelivered: the inbox drops it
        [mail] = await mailbox.wait_for(str(claire.email))
        assert mail["Subject"] == "Produit non livré : Comté, 7,65\xa0€ de moins à payer - AMAP des Lilas"
        text = mailbox.body(mail, "plain")
        assert "Comté : 0,375 kg non livré" in text and "Motif : fromager malade" in text
        assert "vous devez 7,65\xa0€ de moins" in text
        assert "<del>Comté : 0,375 kg</del>" in mailbox.body(mail, "html")
        await running.processed_all_before(facts.member("Sentinel", "fr"))
        assert len(mailbox.to(str(claire.email))) == 1


async def test_a_reversed_payment_sends_no_refund_email(start_service, mailbox, facts) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        paul = facts.member("Paul", "en")
        await running.publish(facts.group, paul)
        common = {"group_id": facts.group_id, "member_id": paul.member_id, "amount": Money.of(4500, "EUR")}
        await running.publish(
            PaymentReversed(
                payment_id=uuid.uuid4(),
                reversal_id=uuid.uuid4(),
                method=PaymentMethod.CHEQUE,
                reason="recorded on the wrong member",
                recorded_by=uuid.uuid4(),
                **common,
            )
        )
        # A real refund after it: the only email Paul gets.
        await running.publish(
            PaymentRefunded(payment_id=uuid.uuid4(), refund_id=uuid.uuid4(), method=PaymentMethod.CASH, **common)
        )
        [refund] = await mailbox.wait_for(str(paul.email))
        assert refund["Subject"].startswith("Refund: €45.00")
        await running.processed_all_before(facts.member("Sentinel", "en"))
        assert len(mailbox.to(str(paul.email))) == 1
        rows = await running.rows("SELECT kind FROM email_deliveries WHERE member_id = :m", m=paul.member_id)
        assert [row.kind for row in rows] == ["payment_refunded"]
