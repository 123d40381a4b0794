"""Card payments on the running services (issue 6, SPEC R21, B6): orders, ledger and payments as
real processes; the payments process talks to a local stand-in for the Stripe API (served from
this test process); Stripe's webhooks are real-shaped events signed with the library's helper
and posted over HTTP to the payments process.

- the group becomes card-ready through payments' PUT card-settings (payments.card_settings.changed
  sets orders' read-only card_payments_configured), and loses it the same way;
- a card order is confirmed and the member's balance is zero after the signed success webhook;
- a replay of that webhook changes nothing;
- a partial refund (asked by the coordinator, confirmed by webhook) debits exactly the refunded amount;
- a forged webhook is refused with nothing recorded;
- on a group's own Stripe account (Connect, onboarded through the platform): a refund that fails
  gives the money back once, a lost dispute debits the member and charges the group the dispute
  fee, a won dispute reinstates the payment, the account losing charges_enabled stops card orders
  on orders, and the ledger's audit passes.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
import types
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import stripe
from sqlalchemy.engine import make_url

from cagette_runtime.devstack import Stack
from cagette_runtime.testing import IsolatedServers, Mailbox, smtp_server

from .conftest import clients, eventually, running_stack
from .groups import Group, Product

# The payments tests' Stripe stand-in, imported as a package of its own (it imports its sibling
# stripe_declared.py relatively).
_package = types.ModuleType("payments_standin")
_package.__path__ = [str(Path(__file__).resolve().parent.parent / "services/payments/tests")]
sys.modules.setdefault(_package.__name__, _package)
standin_module = importlib.import_module("payments_standin.stripe_standin")

STRIPE_KEY = "sk_test_e2e_" + "0" * 24
COORDINATOR_EMAIL = "camille@canal.example.org"
WEBHOOK_SECRET = "whsec_e2e_" + "1" * 24


@pytest.fixture(scope="module")
async def card_stack(servers: IsolatedServers) -> AsyncIterator[tuple[Stack, Any, Mailbox]]:
    standin = standin_module.StripeStandIn(api_key=STRIPE_KEY)
    served = standin_module.Served(standin.app())
    await served.start()
    try:
        async with (
            smtp_server() as (mailbox, smtp_port),
            running_stack(
                servers,
                "card",
                ("orders", "ledger", "payments", "notifications"),
                {
                    "CAGETTE_STRIPE_API_KEY": STRIPE_KEY,
                    "CAGETTE_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "CAGETTE_STRIPE_API_BASE": served.url,
                    "CAGETTE_CARD_JOBS_INTERVAL": "0.2",
                    "CAGETTE_CARD_SETTINGS_URL": "https://cagette.example.org/groups/{group_id}/settings",
                    "CAGETTE_SMTP_PORT": str(smtp_port),
                    "CAGETTE_SMTP_POLL_INTERVAL": "0.2",
                },
            ) as running,
        ):
            yield running, standin, mailbox
    finally:
        await served.stop()


ACCOUNT_KINDS = ("card_payments_stopped", "card_payments_resumed")


async def account_emails(mailbox: Mailbox, count: int) -> list[Any]:
    """The coordinator's emails about the group's Stripe account (she gets dispute emails too),
    once there are `count` of them."""

    async def arrived() -> list[Any] | None:
        found = [m for m in mailbox.to(COORDINATOR_EMAIL) if m["X-Cagette-Kind"] in ACCOUNT_KINDS]
        return found if len(found) >= count else None

    return list(await eventually(arrived, timeout=30))


def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[str, dict[str, str]]:
    body = standin_module.body_of(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=int(time.time()))
    return body, {"Stripe-Signature": header, "Content-Type": "application/json"}


async def payments_db(stack: Stack, sql: str, *args: Any) -> Any:
    dsn = make_url(stack.database_url("payments")).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


async def card_checkout(payments: Any, group_id: uuid.UUID, order_id: str, member: dict[str, str]) -> dict[str, Any]:
    """The card payment the member opens for the order (its checkout session), once payments
    has heard of the order."""

    async def opened() -> dict[str, Any] | None:
        response = await payments.post(f"/groups/{group_id}/orders/{order_id}/card-payment", headers=member)
        assert response.status_code in (201, 404), response.text
        return response.json() if response.status_code == 201 else None

    return dict(await eventually(opened))


async def books_agree(
    ledger: Any,
    payments: Any,
    coord: dict[str, str],
    group_id: uuid.UUID,
    member: uuid.UUID,
    *,
    balance: int,
    card_takings: dict[str, int],
) -> None:
    """After a step, the three books say the same (the single member is the group's only payer):
    the member's ledger balance is `balance`; each distribution's takings (payments' JSON) took
    `card_takings[d]` net by card, and its basket figures match; the group's ledger accounts
    hold what the takings say: sales = what was ordered (due), card clearing net of the fees
    (which only move money between those two accounts) = minus what the card took, and the
    balance = taken - ordered."""
    seen: dict[str, Any] = {}

    async def agree() -> bool:
        seen.clear()
        answer = await ledger.get(f"/groups/{group_id}/members/{member}/balance", headers=coord)
        seen["balance"] = answer.json()["balance"]["amount"] if answer.status_code == 200 else None
        accounts = (await ledger.get(f"/groups/{group_id}/accounts", headers=coord)).json()
        seen["accounts"] = held = {a["type"]: a["balance"]["amount"] for a in accounts}
        due_total = 0
        for distribution_id, expected in card_takings.items():
            answer = await payments.get(f"/groups/{group_id}/distributions/{distribution_id}/takings", headers=coord)
            assert answer.status_code == 200, answer.text
            takings = seen[distribution_id] = answer.json()
            by_card = [
                line["amount"]["amount"]
                for bucket in ("received", "refunded")
                for line in takings[bucket]
                if line["method"] == "card"
            ]
            others = [
                line
                for bucket in ("received", "refunded")
                for line in takings[bucket]
                if line["method"] != "card" and line["count"]
            ]
            if others or sum(by_card) != expected or takings["net_received"]["amount"]["amount"] != expected:
                return False
            unsettled = [b for b in takings["not_settled"] if b["member_id"] == str(member)]
            if unsettled:
                [basket] = unsettled
                if basket["received"]["amount"] != expected:
                    return False
                due_total += basket["due"]["amount"]
            else:  # settled: what was received is what was due
                due_total += expected
        taken = sum(card_takings.values())
        return (
            seen["balance"] == balance
            and balance == taken - due_total
            and held.get("sales", 0) == due_total
            and held.get("card_clearing", 0) + held.get("card_fees", 0) == -taken
        )

    try:
        await eventually(agree)
    except AssertionError:
        raise AssertionError(
            f"the books disagree (expected balance {balance}, card takings {card_takings}): {seen}"
        ) from None


async def test_card_order_confirmed_by_signed_webhook_then_refunded_in_part(
    card_stack: tuple[Stack, Any, Mailbox],
) -> None:
    stack, standin, _mailbox = card_stack
    async with clients(stack, "orders", "ledger", "payments") as (orders, ledger, payments):
        coop = await Group.create(orders, "Coop du Marché", payment_methods=["on_the_spot"])
        group_id, coord = coop.group_id, coop.coordinator
        member = await coop.join("Alice")
        alice = coop.member(member)
        catalog = await coop.catalog("Fromagerie", [Product("Comté", 2390, unit="kg"), Product("Yaourt", 95)])
        comte, yoghurt = catalog.product_ids
        distribution_id = await coop.distribution([catalog], "Halle")

        # card cannot be offered yet, and the flag is not the coordinator's to set on orders
        refused = await orders.patch(f"/groups/{group_id}", headers=coord, json={"payment_methods": ["card"]})
        assert refused.status_code == 422 and "card payments are configured" in refused.json()["detail"], refused.text
        by_hand = await orders.patch(f"/groups/{group_id}", headers=coord, json={"card_payments_configured": True})
        assert by_hand.status_code == 422 and "read-only" in by_hand.json()["detail"], by_hand.text

        # the coordinator sets up card payments on payments (once it knows the group) ...
        async def set_up() -> bool:
            response = await payments.put(f"/groups/{group_id}/card-settings", headers=coord, json={"enabled": True})
            assert response.status_code in (200, 404), response.text
            return response.status_code == 200

        await eventually(set_up)

        # ... which tells orders (payments.card_settings.changed): card may now be offered
        async def card_configured(expected: bool) -> dict[str, Any] | None:
            group = (await orders.get(f"/groups/{group_id}", headers=coord)).json()
            return group if group["card_payments_configured"] is expected else None

        await eventually(lambda: card_configured(True))
        offered = await orders.patch(f"/groups/{group_id}", headers=coord, json={"payment_methods": ["card"]})
        assert offered.status_code == 200 and offered.json()["payment_methods"] == ["card"], offered.text

        # 0.35 kg x 23.90 = 8.365 -> 8.37 (rounded once per line), + 6 x 0.95 = 5.70: 14.07
        placed = await coop.order(member, distribution_id, "card", [(comte, "0.35"), (yoghurt, "6")])
        assert placed.status_code == 201, placed.text
        assert placed.json()["status"] == "awaiting_payment"
        order_id = placed.json()["order_id"]

        payment = await card_checkout(payments, group_id, order_id, alice)
        assert payment["amount"] == {"amount": 1407, "currency": "EUR"}
        payment_id = payment["payment_id"]

        async def balance() -> int | None:
            response = await ledger.get(f"/groups/{group_id}/members/{member}/balance", headers=coord)
            return response.json()["balance"]["amount"] if response.status_code == 200 else None

        async def entries() -> int:
            response = await ledger.get(f"/groups/{group_id}/members/{member}/statement", headers=coord)
            assert response.status_code == 200, response.text
            return len(response.json()["entries"])

        # Stripe's side: the member pays on the checkout page; Stripe sends the signed webhook
        session, intent, charge = standin.pay(payment["checkout_session_id"])
        success = standin.event("checkout.session.completed", session)
        body, headers = signed(success)
        delivered = await payments.post("/webhooks/stripe", content=body, headers=headers)
        assert delivered.status_code == 200, delivered.text

        async def confirmed() -> bool:
            order = (await orders.get(f"/groups/{group_id}/orders/{order_id}", headers=alice)).json()
            return order["status"] == "confirmed"

        await eventually(confirmed)

        async def settled() -> bool:  # debited 14.07 by the order, credited 14.07 by the card payment
            return await balance() == 0 and await entries() == 2

        await eventually(settled)
        await books_agree(ledger, payments, coord, group_id, member, balance=0, card_takings={distribution_id: 1407})

        async def fee_posted() -> list[dict[str, Any]] | None:
            accounts = (await ledger.get(f"/groups/{group_id}/accounts", headers=coord)).json()
            fees = [a for a in accounts if a["type"] == "card_fees"]
            return fees if fees and fees[0]["balance"]["amount"] != 0 else None

        fees = await eventually(fee_posted)
        assert abs(fees[0]["balance"]["amount"]) == 1407 * 140 // 10000 + 25

        # a replay of the same webhook (and the other success event): nothing changes
        replay = await payments.post("/webhooks/stripe", content=body, headers=headers)
        assert replay.status_code == 200 and replay.json()["duplicate"] is True
        body2, headers2 = signed(standin.event("payment_intent.succeeded", intent))
        assert (await payments.post("/webhooks/stripe", content=body2, headers=headers2)).status_code == 200
        await asyncio.sleep(1.5)
        assert await balance() == 0 and await entries() == 2
        order = (await orders.get(f"/groups/{group_id}/orders/{order_id}", headers=alice)).json()
        assert order["status"] == "confirmed" and order["flagged_reason"] is None

        # a partial refund: asked by the coordinator, effective when Stripe confirms it
        asked = await payments.post(
            f"/groups/{group_id}/card-payments/{payment_id}/refunds",
            headers=coord,
            json={
                "amount": {"amount": 500, "currency": "EUR"},
                "reason": "yoghurts missing",
                "client_key": "refund-yoghurts",
            },
        )
        assert asked.status_code == 202, asked.text
        await asyncio.sleep(0.5)
        assert await balance() == 0
        refunded = standin.event("charge.refunded", standin.charge(charge["id"]))
        body3, headers3 = signed(refunded)
        assert (await payments.post("/webhooks/stripe", content=body3, headers=headers3)).status_code == 200

        async def debited_back() -> bool:
            return await balance() == -500

        await eventually(debited_back)
        await books_agree(ledger, payments, coord, group_id, member, balance=-500, card_takings={distribution_id: 907})

        # a forged webhook (a full refund signed with another secret): refused, nothing recorded
        standin.refund_outside(charge["id"], 907)
        forged_event = standin.event("charge.refunded", standin.charge(charge["id"]))
        body4, headers4 = signed(forged_event, secret="whsec_forged_" + "2" * 20)
        forged = await payments.post("/webhooks/stripe", content=body4, headers=headers4)
        assert forged.status_code == 400, forged.text
        assert (
            await payments_db(stack, "SELECT count(*) FROM provider_events WHERE event_id = $1", forged_event["id"])
            == 0
        )
        await asyncio.sleep(1.0)
        assert await balance() == -500 and await entries() == 3
        assert (
            await payments_db(
                stack, "SELECT amount_refunded FROM card_payments WHERE payment_id = $1", uuid.UUID(payment_id)
            )
            == 500
        )

        # the same full refund, signed by Stripe: the rest (9.07) is debited, the payment is refunded
        body5, headers5 = signed(forged_event)
        assert (await payments.post("/webhooks/stripe", content=body5, headers=headers5)).status_code == 200
        await books_agree(ledger, payments, coord, group_id, member, balance=-1407, card_takings={distribution_id: 0})
        state = (await payments.get(f"/groups/{group_id}/card-payments/{payment_id}", headers=coord)).json()
        assert state["state"] == "refunded" and state["amount_refunded"]["amount"] == 1407, state

        # the coordinator turns card payments off on payments: orders follows; card being the only
        # method it stays listed, but a new card order is refused with the reason and not recorded
        turned_off = await payments.put(f"/groups/{group_id}/card-settings", headers=coord, json={"enabled": False})
        assert turned_off.status_code == 200 and turned_off.json()["card_payments_ready"] is False, turned_off.text
        group = await eventually(lambda: card_configured(False))
        assert group["payment_methods"] == ["card"]
        late = await coop.order(member, distribution_id, "card", [(yoghurt, "1")])
        assert late.status_code == 409 and "card payments are not available" in late.json()["detail"], late.text
        listed = (await orders.get(f"/groups/{group_id}/orders", headers=coord)).json()
        assert [o["order_id"] for o in listed] == [order_id]


async def test_connected_account_refund_failure_and_disputes_keep_every_book_right(
    card_stack: tuple[Stack, Any, Mailbox],
) -> None:
    """On the group's own Stripe account (Connect, onboarded through the platform): a refund that
    fails gives the money back once; a lost dispute takes the payment back from the member and
    its fee from the group; a won dispute reinstates it; the account losing charges_enabled stops
    card orders on orders and the coordinator is emailed, once. The ledger's audit passes at the
    end."""
    stack, standin, mailbox = card_stack
    async with clients(stack, "orders", "ledger", "payments") as (orders, ledger, payments):
        canal = await Group.create(orders, "AMAP du Canal", payment_methods=["on_the_spot"])
        group_id, coord = canal.group_id, canal.coordinator
        await canal.join_coordinator("Camille", email=COORDINATOR_EMAIL)
        member = await canal.join("Bob", email="bob@canal.example.org")
        catalog = await canal.catalog("Maraîcher", [Product("Panier", 2000)])
        [basket] = catalog.product_ids
        # one basket per member and distribution: one order each
        distributions = [
            await canal.distribution([catalog], "Écluse", starts_at=datetime.now(UTC) + timedelta(weeks=week))
            for week in (1, 2, 3)
        ]

        # Onboarding through the platform: an account Stripe does not let take charges yet.
        async def onboarding() -> dict[str, Any] | None:
            answer = await payments.post(f"/groups/{group_id}/card-settings/onboarding", headers=coord)
            assert answer.status_code in (200, 404), answer.text
            return answer.json() if answer.status_code == 200 else None

        onboarded = await eventually(onboarding)
        account = onboarded["stripe_account"]
        settings = (await payments.get(f"/groups/{group_id}/card-settings", headers=coord)).json()
        assert settings["card_payments_ready"] is False and settings["account_problem"]

        async def card_configured(expected: bool) -> bool:
            return (await orders.get(f"/groups/{group_id}", headers=coord)).json()[
                "card_payments_configured"
            ] is expected

        async def deliver(event: dict[str, Any]) -> dict[str, Any]:
            body, headers = signed(event)
            answer = await payments.post("/webhooks/stripe", content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        # Stripe says the account may take charges (a Connect event): orders may offer card.
        assert (
            await deliver(
                standin.event("account.updated", standin.set_account(account, charges_enabled=True), account=account)
            )
        )["outcome"] == "applied"
        await eventually(lambda: card_configured(True))
        offered = await orders.patch(f"/groups/{group_id}", headers=coord, json={"payment_methods": ["card"]})
        assert offered.status_code == 200, offered.text
        # The coordinator is told the account takes card payments (a first onboarding: never "stopped").
        [opened] = await account_emails(mailbox, 1)
        assert opened["Subject"] == "Paiements par carte ouverts - AMAP du Canal", opened["Subject"]

        async def balance() -> int | None:
            response = await ledger.get(f"/groups/{group_id}/members/{member}/balance", headers=coord)
            return response.json()["balance"]["amount"] if response.status_code == 200 else None

        async def paid_card_order(distribution_id: str) -> tuple[str, dict[str, Any]]:
            placed = await canal.order(member, distribution_id, "card", [(basket, "1")])
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["order_id"]

            payment = await card_checkout(payments, group_id, order_id, canal.member(member))
            session, _intent, charge = standin.pay(payment["checkout_session_id"], account)
            assert (await deliver(standin.event("checkout.session.completed", session, account=account)))[
                "outcome"
            ] == "applied"
            return payment["payment_id"], charge

        async def settles_at(expected: int) -> None:
            seen: list[int | None] = []

            async def reached() -> bool:
                seen.append(await balance())
                return seen[-1] == expected

            try:
                await eventually(reached)
            except AssertionError:
                notes = await payments_db(
                    stack,
                    "SELECT string_agg(type || ':' || outcome || ':' || coalesce(note, ''), ' | ' "
                    "ORDER BY received_at) "
                    "FROM provider_events",
                )
                notes += " || " + await payments_db(
                    stack,
                    "SELECT string_agg(routing_key || ':' || coalesce(published_at::text, 'unpublished') || ':' "
                    "|| coalesce(last_error, ''), ' | ' ORDER BY id) FROM outbox_messages",
                )
                raise AssertionError(f"the balance stayed at {seen[-1]}, not {expected}: {notes}") from None

        # 1. Paid on the connected account; a refund asked, confirmed, then failed: back to zero.
        first, second, third = distributions

        async def books(balance: int, card_takings: dict[str, int]) -> None:
            await settles_at(balance)
            await books_agree(ledger, payments, coord, group_id, member, balance=balance, card_takings=card_takings)

        payment_id, charge = await paid_card_order(first)
        await books(0, {first: 2000})
        asked = await payments.post(
            f"/groups/{group_id}/card-payments/{payment_id}/refunds",
            headers=coord,
            json={"amount": {"amount": 700, "currency": "EUR"}, "reason": "basket short", "client_key": "r1"},
        )
        assert asked.status_code == 202, asked.text
        await deliver(standin.event("charge.refunded", standin.charge(charge["id"], account), account=account))
        await books(-700, {first: 1300})
        failed = standin.fail_refund(standin.last_refund(charge["id"], account)["id"], account)
        assert (await deliver(standin.event("refund.failed", failed, account=account)))["outcome"] == "applied"
        await deliver(standin.event("charge.refund.updated", failed, account=account))  # the same failure, told twice
        await books(0, {first: 2000})

        # 2. A lost dispute: the payment no longer stands (the member owes the basket again) and
        #    the group bears the dispute fee.
        dispute = standin.dispute(charge["id"], account)
        await deliver(standin.event("charge.dispute.created", dispute, account=account))
        withdrawn = standin.withdraw_dispute_funds(dispute["id"], account)
        await deliver(standin.event("charge.dispute.funds_withdrawn", withdrawn, account=account))
        await deliver(
            standin.event(
                "charge.dispute.closed", standin.close_dispute(dispute["id"], "lost", account), account=account
            )
        )
        await books(-2000, {first: 0})
        state = (await payments.get(f"/groups/{group_id}/card-payments/{payment_id}", headers=coord)).json()
        assert state["state"] == "disputed" and state["dispute_status"] == "lost"

        async def dispute_fee_posted() -> bool:
            accounts = (await ledger.get(f"/groups/{group_id}/accounts", headers=coord)).json()
            fees = [a for a in accounts if a["type"] == "card_fees"]
            card_fee = 2000 * 140 // 10000 + 25
            return bool(fees) and abs(fees[0]["balance"]["amount"]) == card_fee + standin_module.DISPUTE_FEE

        await eventually(dispute_fee_posted)

        # 3. A won dispute on a second order: withdrawn, then reinstated; the member owes only the
        #    first basket.
        second_id, second_charge = await paid_card_order(second)
        await books(-2000, {first: 0, second: 2000})
        dispute = standin.dispute(second_charge["id"], account)
        await deliver(standin.event("charge.dispute.created", dispute, account=account))
        withdrawn = standin.withdraw_dispute_funds(dispute["id"], account)
        await deliver(standin.event("charge.dispute.funds_withdrawn", withdrawn, account=account))
        await books(-4000, {first: 0, second: 0})
        reinstated = standin.reinstate_dispute_funds(dispute["id"], account)
        await deliver(standin.event("charge.dispute.funds_reinstated", reinstated, account=account))
        await deliver(
            standin.event(
                "charge.dispute.closed", standin.close_dispute(dispute["id"], "won", account), account=account
            )
        )
        await books(-2000, {first: 0, second: 2000})
        state = (await payments.get(f"/groups/{group_id}/card-payments/{second_id}", headers=coord)).json()
        assert state["state"] == "succeeded" and state["dispute_status"] == "won"

        # 4. Stripe restricts the account: card payments stop on orders too, and the coordinator
        #    is emailed why and what to do, in French (her language), once.
        restricted = standin.set_account(account, charges_enabled=False)
        await deliver(standin.event("account.updated", restricted, account=account))
        await eventually(lambda: card_configured(False))
        [_, stopped] = await account_emails(mailbox, 2)
        assert stopped["Subject"] == "Paiements par carte arrêtés - AMAP du Canal", stopped["Subject"]
        text = mailbox.body(stopped, "plain")
        assert text.startswith("Bonjour Camille,")
        assert "les membres d'AMAP du Canal ne peuvent plus payer par carte" in text
        assert "son inscription auprès de Stripe n'est pas terminée, ou Stripe a restreint le compte" in text
        assert f"(https://cagette.example.org/groups/{group_id}/settings)" in text
        assert "terminez l'inscription auprès de Stripe" in text
        assert account not in text and str(group_id) not in text.replace(f"/groups/{group_id}/", "")
        # Stripe tells the same again: no second email.
        await deliver(standin.event("account.updated", restricted, account=account))
        await asyncio.sleep(1.5)
        assert len(await account_emails(mailbox, 2)) == 2
        assert not [m for m in mailbox.to("bob@canal.example.org") if m["X-Cagette-Kind"] in ACCOUNT_KINDS]
        late = await canal.order(member, third, "card", [(basket, "1")])
        assert late.status_code == 409, late.text

        # The ledger's invariants hold over everything above.
        audit = await ledger.get("/admin/audit", headers=canal.admin)
        assert audit.status_code == 200 and audit.json()["ok"] is True, audit.text
