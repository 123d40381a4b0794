"""The group's Stripe account stops taking card payments, then takes them again
(`payments.card_settings.changed` with `account_change`): one email to each coordinator, in their
language, on the real broker and a real SMTP server; announcements that are not such a change,
and redeliveries, send nothing."""

from __future__ import annotations

import asyncio

from cagette_contracts import CardAccountChange, CardAccountProblem, CardSettingsChanged

SETTINGS_URL = "https://cagette.example.org/groups/g/settings"


def announcement(facts, **fields) -> CardSettingsChanged:
    return CardSettingsChanged(
        group_id=facts.group_id,
        enabled=True,
        provider_configured=True,
        uses_connected_account=True,
        settings_url=SETTINGS_URL,
        **fields,
    )


async def test_coordinators_are_told_once_when_card_payments_stop_and_once_when_they_work_again(
    start_service, mailbox, facts
) -> None:
    async with start_service(smtp_port=mailbox.port) as running:
        cora, carl = facts.coordinators()
        paul = facts.member("Paul", "fr")
        await running.publish(facts.group, cora, carl, paul)

        # A first onboarding not finished yet: announced, nothing to tell.
        await running.publish(announcement(facts, card_payments_ready=False, account_problem="charges_disabled"))
        stopped = announcement(
            facts,
            card_payments_ready=False,
            account_problem=CardAccountProblem.DEAUTHORIZED,
            account_change=CardAccountChange.BECAME_UNUSABLE,
        )
        await running.publish(stopped)
        [fr] = await mailbox.wait_for(str(cora.email))
        [en] = await mailbox.wait_for(str(carl.email))
        assert fr["Subject"] == "Paiements par carte arrêtés - AMAP des Lilas"
        assert en["Subject"] == "Card payments stopped - AMAP des Lilas"
        text = mailbox.body(fr, "plain")
        assert (
            text.startswith("Bonjour Cora,") and "les membres d'AMAP des Lilas ne peuvent plus payer par carte" in text
        )
        assert "retiré à la plateforme son accès" in text and f"({SETTINGS_URL})" in text
        assert "revoked this platform's access" in mailbox.body(en, "plain")
        assert f'href="{SETTINGS_URL}"' in mailbox.body(en, "html")

        # The same announcement again (a redelivery): nothing more.
        await running.publish(stopped)
        await running.processed_all_before(facts.member("Sentinel"))
        await asyncio.sleep(1.0)  # the sender polls every 0.2 s
        assert len(mailbox.to(str(cora.email))) == 1 and len(mailbox.to(str(carl.email))) == 1

        await running.publish(announcement(facts, card_payments_ready=True, account_change="became_usable"))
        [_, again] = await mailbox.wait_for(str(carl.email), 2)
        assert again["Subject"] == "Card payments open - AMAP des Lilas"
        [_, encore] = await mailbox.wait_for(str(cora.email), 2)
        assert encore["Subject"] == "Paiements par carte ouverts - AMAP des Lilas"
        assert mailbox.to(str(paul.email)) == []
        kinds = await running.rows("SELECT kind, count(*) FROM email_deliveries GROUP BY kind ORDER BY kind")
        assert [tuple(row) for row in kinds] == [("card_payments_resumed", 2), ("card_payments_stopped", 2)]
