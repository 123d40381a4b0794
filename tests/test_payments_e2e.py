"""The treasurer's flow on the running services (issue 5): a cheque order is pending in the
member's ledger statement with its RF reference; the coordinator confirms it at validation with
a corrected amount and the balance shows the difference; a subscription's cheques entered in one
mass entry bring every subscriber to zero; the distribution's takings add up to the ledger."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from stdnum import iso11649

from .conftest import clients, eventually
from .groups import Group, Product


def eur(cents: int) -> dict[str, Any]:
    return {"amount": cents, "currency": "EUR"}


async def test_cheque_confirmed_with_a_corrected_amount_mass_entry_and_takings(stack) -> None:
    async with clients(stack, "orders", "payments", "ledger") as (orders, payments, ledger):
        lilas = await Group.create(
            orders,
            "AMAP des Lilas",
            payment_methods=["cheque", "cash", "on_the_spot"],
            cheque_payee="AMAP des Lilas",
        )
        group = lilas.group_id
        coord = lilas.coordinator
        await lilas.join_coordinator("Claire")
        alice, bob, carol = [await lilas.join(name) for name in ("Alice", "Bob", "Carol")]
        member = {m: lilas.member(m) for m in (alice, bob, carol)}
        shop = await lilas.catalog("Farm shop", [Product("Cheese", 1250)])
        contract = await lilas.catalog("Vegetables", [Product("Vegetable box", 1500)], kind="subscription")
        d = await lilas.distribution([shop, contract], "Market hall")
        [cheese] = shop.product_ids

        # Alice pays two cheeses (25.00) by cheque, Bob one (12.50) on the spot.
        for who, method, quantity in [(alice, "cheque", "2"), (bob, "on_the_spot", "1")]:
            placed = await lilas.order(who, d, method, [(cheese, quantity)])
            assert placed.status_code == 201, placed.text

        async def declared(who: uuid.UUID) -> dict[str, Any] | None:
            listed = (await payments.get(f"/groups/{group}/members/{who}/payments", headers=member[who])).json()
            return next((p for p in listed if p["state"] == "declared"), None)

        cheque = await eventually(lambda: declared(alice))
        assert cheque["amount"] == eur(2500) and cheque["method"] == "cheque"
        assert iso11649.is_valid(cheque["reference"])
        on_the_spot = await eventually(lambda: declared(bob))

        # The cheque is pending in Alice's ledger statement, with its reference, outside the balance.
        async def pending_in_statement() -> dict[str, Any] | None:
            statement = (await ledger.get(f"/groups/{group}/members/{alice}/statement", headers=member[alice])).json()
            return next((e for e in statement.get("entries", []) if e["status"] == "pending"), None)

        pending = await eventually(pending_in_statement)
        assert pending["amount"] == eur(2500) and pending["balance_after"] is None
        assert iso11649.compact(cheque["reference"]) in iso11649.compact(pending["description"])
        balance = (await ledger.get(f"/groups/{group}/members/{alice}/balance", headers=member[alice])).json()
        assert (balance["balance"], balance["pending"]) == (eur(-2500), eur(2500))

        # At the distribution: the cheque says 24.00, Bob paid his 12.50 in cash.
        confirmed = await payments.post(
            f"/groups/{group}/payments/{cheque['payment_id']}/confirm",
            headers=coord,
            json={"amount": eur(2400), "label": "cheque 0001234", "note": "made out for 24.00"},
        )
        assert confirmed.status_code == 200, confirmed.text
        assert (confirmed.json()["state"], confirmed.json()["declared_amount"]) == ("received", eur(2500))
        validated = await payments.post(
            f"/groups/{group}/distributions/{d}/baskets/{bob}/confirm-all-and-validate",
            headers=coord,
            json={"on_the_spot_method": "cash"},
        )
        assert validated.status_code == 200, validated.text
        assert (
            await payments.post(f"/groups/{group}/distributions/{d}/baskets/{alice}/validate", headers=coord)
        ).status_code == 200
        assert on_the_spot["amount"] == eur(1250)

        async def balance_of(who: uuid.UUID, cents: int) -> bool:
            answer = (await ledger.get(f"/groups/{group}/members/{who}/balance", headers=coord)).json()
            return answer["balance"] == eur(cents) and answer["pending"] == eur(0)

        await eventually(lambda: balance_of(alice, -100))  # the difference: 1.00 still owed
        await eventually(lambda: balance_of(bob, 0))

        # The takings add up to what the ledger posted into the group's clearing accounts.
        takings = await payments.get(f"/groups/{group}/distributions/{d}/takings.csv", headers=coord)
        assert takings.status_code == 200
        rows = {(r["section"], r["key"]): r for r in csv.DictReader(io.StringIO(takings.text))}
        assert (rows[("received", "cheque")]["count"], rows[("received", "cheque")]["amount"]) == ("1", "24.00")
        assert rows[("received", "cash")]["amount"] == "12.50"
        assert rows[("total", "net_received")]["amount"] == "36.50"
        assert rows[("partly_paid", str(alice))]["amount"] == "1.00"
        accounts = {
            a["type"]: a["balance"]["amount"]
            for a in (await ledger.get(f"/groups/{group}/accounts", headers=coord)).json()
        }
        assert abs(accounts["cheques"]) + abs(accounts["cash"]) == 3650

        # Bob and Carol subscribe; their cheques are entered in one mass entry.
        subscriptions = {}
        for who in (bob, carol):
            subscribed = await orders.post(
                f"/groups/{group}/contracts/{contract.catalog_id}/subscriptions",
                headers=member[who],
                json={
                    "payment_method": "cheque",
                    "lines": [{"product_id": contract.product_ids[0], "quantity": "1"}],
                },
            )
            assert subscribed.status_code == 201, subscribed.text
            subscriptions[who] = subscribed.json()
            assert subscribed.json()["total"] == eur(1500)
        await eventually(lambda: balance_of(carol, -1500))

        async def known_to_payments() -> bool:
            listed = (
                await payments.get(f"/groups/{group}/contracts/{contract.catalog_id}/subscriptions", headers=coord)
            ).json()
            return len(listed.get("subscriptions", [])) == 2

        await eventually(known_to_payments)
        entry = {
            "client_key": f"vegetables-{uuid.uuid4()}",
            "rows": [
                {
                    "member_id": str(who),
                    "amount": eur(1500),
                    "label": f"cheque {n}",
                    "subscription_id": subscriptions[who]["subscription_id"],
                }
                for n, who in enumerate((bob, carol), start=101)
            ],
        }
        mass = await payments.post(
            f"/groups/{group}/contracts/{contract.catalog_id}/payments", headers=coord, json=entry
        )
        assert mass.status_code in (200, 201), mass.text
        again = await payments.post(
            f"/groups/{group}/contracts/{contract.catalog_id}/payments", headers=coord, json=entry
        )
        assert again.status_code == 200 and again.json() == mass.json()
        await eventually(lambda: balance_of(bob, 0))
        await eventually(lambda: balance_of(carol, 0))
        listed = (
            await payments.get(f"/groups/{group}/contracts/{contract.catalog_id}/subscriptions", headers=coord)
        ).json()
        assert {s["standing"] for s in listed["subscriptions"]} == {"settled"}
