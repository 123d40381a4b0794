"""R6 and issue 14 on the running services: a product the producer could not deliver is taken
off a member's order by a coordinator, with a reason; the ledger, the basket and the takings
agree afterwards and the member is emailed once. A payment recorded on the wrong member is
reversed: a reversal in the statement, no refund email."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from cagette_runtime.devstack import Stack

from .conftest import clients, eventually
from .test_treasurer_e2e import Lilas, emails_of, eur


async def test_an_undelivered_product_lowers_the_debt_and_everyone_agrees(stack: Stack) -> None:
    async with clients(stack, "orders", "payments", "ledger") as (orders, payments, ledger):
        group = await Lilas.create(orders, ["cheque", "cash"], cheque_payee="AMAP des Lilas")
        alice, bruno = await group.join("Alice"), await group.join("Bruno")
        placed = (await group.order(alice, "cheque")).json()
        assert placed["total"] == eur(1465)  # 2 x 3.50 + 0.375 kg x 19.99 x 1.02 = 7.00 + 7.65
        cheese = placed["lines"][1]
        url = f"/groups/{group.id}/orders/{placed['order_id']}/lines/{cheese['line_number']}/undelivered"

        # Bad requests change nothing.
        refused = [
            (url, group.member(alice), {"reason": "r"}, 403),
            (url.replace(f"/lines/{cheese['line_number']}/", "/lines/9/"), group.coordinator, {"reason": "r"}, 404),
            (url, group.coordinator, {}, 422),
            (url, group.coordinator, {"reason": "a\u202eb"}, 422),
            (url, group.coordinator, {"quantity": "0.5", "reason": "r"}, 422),
        ]
        for path, headers, body, status in refused:
            response = await orders.post(path, headers=headers, json=body)
            assert response.status_code == status, (body, response.text)

        taken = await orders.post(url, headers=group.coordinator, json={"reason": "fromager malade"})
        assert taken.status_code == 201, taken.text
        assert taken.json()["total"] == eur(700)
        again = await orders.post(url, headers=group.coordinator, json={"reason": "fromager malade"})
        assert again.status_code == 409, again.text

        # The ledger: Alice owes exactly the line less, in words in her statement.
        async def owes_less() -> dict[str, Any] | None:
            answer = (await ledger.get(f"/groups/{group.id}/members/{alice}/balance", headers=group.coordinator)).json()
            return answer if answer["balance"] == eur(-700) else None

        await eventually(owes_less)
        statement = (
            await ledger.get(f"/groups/{group.id}/members/{alice}/statement", headers=group.member(alice))
        ).json()
        credit = next(e for e in statement["entries"] if e["kind"] == "correction")
        assert credit["description"] == "Produit non livré : Comté 0,375 kg (fromager malade)"
        assert credit["amount"] == eur(765)

        # Payments: the basket owes 7.00; her cheque handed over for 7.00 settles it.
        basket_url = f"/groups/{group.id}/distributions/{group.distribution}/baskets/{alice}"

        async def basket_lowered() -> dict[str, Any] | None:
            basket = (await payments.get(basket_url, headers=group.coordinator)).json()
            return basket if basket["due"] == eur(700) else None

        basket = await eventually(basket_lowered)
        cheque = next(p for p in basket["payments"] if p["state"] == "declared")
        confirmed = await payments.post(
            f"/groups/{group.id}/payments/{cheque['payment_id']}/confirm",
            headers=group.coordinator,
            json={"amount": eur(700)},
        )
        assert confirmed.status_code == 200, confirmed.text
        basket = (await payments.get(basket_url, headers=group.coordinator)).json()
        assert basket["standing"] == "settled" and basket["difference"] == eur(0)

        # Bruno paid 14.65 in cash before the cheese was found missing: his basket is overpaid by
        # 7.65, which stays as a credit on his account (R4).
        paid_in_full = (await group.order(bruno, "cash")).json()
        bruno_basket = f"/groups/{group.id}/distributions/{group.distribution}/baskets/{bruno}"

        async def declared_cash() -> dict[str, Any] | None:
            answer = await payments.get(bruno_basket, headers=group.coordinator)
            if answer.status_code == 404:  # payments has not heard of the order yet
                return None
            return next((p for p in answer.json()["payments"] if p["state"] == "declared"), None)

        cash = await eventually(declared_cash)
        await payments.post(
            f"/groups/{group.id}/payments/{cash['payment_id']}/confirm", headers=group.coordinator, json={}
        )
        bruno_cheese = paid_in_full["lines"][1]["line_number"]
        taken = await orders.post(
            f"/groups/{group.id}/orders/{paid_in_full['order_id']}/lines/{bruno_cheese}/undelivered",
            headers=group.coordinator,
            json={"reason": "fromager malade"},
        )
        assert taken.status_code == 201, taken.text

        async def credit_left() -> dict[str, Any] | None:
            answer = (await ledger.get(f"/groups/{group.id}/members/{bruno}/balance", headers=group.coordinator)).json()
            return answer if answer["balance"] == eur(765) else None

        await eventually(credit_left)

        async def takings_agree() -> dict[str, Any] | None:
            found = (
                await payments.get(
                    f"/groups/{group.id}/distributions/{group.distribution}/takings", headers=group.coordinator
                )
            ).json()
            unsettled = {m["member_id"]: (m["standing"], m["amount"]) for m in found["not_settled"]}
            return found if unsettled == {str(bruno): ("overpaid", eur(765))} else None

        takings = await eventually(takings_agree)
        assert takings["net_received"]["amount"] == eur(700 + 1465)

        # Alice is told once, with the product, the reason and the amount.
        async def told() -> list[dict[str, Any]] | None:
            emails = [e for e in await emails_of(stack, group, alice) if e["kind"] == "line_undelivered"]
            return emails or None

        [email] = await eventually(told)
        assert "Comté" in email["subject"] and "7,65" in email["subject"]
        await eventually(lambda: _received_by(stack, group, alice))
        assert len([e for e in await emails_of(stack, group, alice) if e["kind"] == "line_undelivered"]) == 1


async def _received_by(stack: Stack, group: Lilas, member: uuid.UUID) -> bool:
    return any(e["kind"] == "payment_received" for e in await emails_of(stack, group, member))


async def test_a_payment_recorded_on_the_wrong_member_is_reversed_not_refunded(stack: Stack) -> None:
    async with clients(stack, "orders", "payments", "ledger") as (orders, payments, ledger):
        group = await Lilas.create(orders, ["cheque"], cheque_payee="AMAP des Lilas")
        wrong = await group.join("Bruno")

        async def record() -> httpx.Response | None:
            # Payments learns of the new member through orders' event: until then it answers 404.
            answer = await payments.post(
                f"/groups/{group.id}/members/{wrong}/payments",
                headers=group.coordinator,
                json={"method": "cheque", "amount": eur(4500), "label": "102"},
            )
            return None if answer.status_code == 404 else answer

        recorded = await eventually(record)
        assert recorded.status_code == 201, recorded.text
        reversed_ = await payments.post(
            f"/groups/{group.id}/payments/{recorded.json()['payment_id']}/reverse",
            headers=group.coordinator,
            json={"reason": "enregistré sur le mauvais adhérent"},
        )
        assert reversed_.status_code == 201, reversed_.text

        async def reversed_in_ledger() -> dict[str, Any] | None:
            statement = (
                await ledger.get(f"/groups/{group.id}/members/{wrong}/statement", headers=group.coordinator)
            ).json()
            return statement if statement["entries"] and statement["entries"][0]["kind"] == "reversal" else None

        statement = await eventually(reversed_in_ledger)
        reversal, received = statement["entries"][0], statement["entries"][1]
        assert statement["balance"] == eur(0)
        assert reversal["reverses_transaction_id"] == received["transaction_id"]
        assert reversal["description"] == (
            "Annulation d'un paiement enregistré par erreur (Chèque) : enregistré sur le mauvais adhérent"
        )
        await eventually(lambda: _received_by(stack, group, wrong))
        # A sentinel after the reversal: once its email is logged, the reversal was handled too.
        sentinel = await payments.post(
            f"/groups/{group.id}/members/{wrong}/payments",
            headers=group.coordinator,
            json={"method": "cheque", "amount": eur(100), "label": "103"},
        )
        assert sentinel.status_code == 201

        async def two_receipts() -> list[dict[str, Any]] | None:
            emails = await emails_of(stack, group, wrong)
            return emails if sum(e["kind"] == "payment_received" for e in emails) == 2 else None

        kinds = [e["kind"] for e in await eventually(two_receipts)]
        assert "payment_refunded" not in kinds, kinds
