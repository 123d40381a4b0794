"""The issue's "done when", on the four services running as real processes (their own databases
and vhost) and a real SMTP server: ordering by transfer delivers the IBAN, the amount and the
RF reference the payments service stored; a cheque confirmed at validation delivers a receipt;
a balance going negative delivers one reminder, not one per posting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cagette_contracts import Role
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.devstack import SERVICES, Stack
from cagette_runtime.testing import KEYED, IsolatedServers, create_vhost, delete_vhost

JWT_SECRET = "notifications-end-to-end-secret-" + "0" * 16
IBAN = "FR76 3000 6000 0112 3456 7890 189"
# Tokens here are signed with the development key: web (and its database connections) stays out.
STACK_SERVICES = [name for name in SERVICES if name != "web"]
LOG_DIR = Path(__file__).resolve().parents[3] / "var" / "e2e-logs"


@pytest.fixture(scope="module")
async def system(servers: IsolatedServers, free_port, smtp_server) -> AsyncIterator[tuple[Stack, object]]:
    vhost = f"cagette-test-{servers.run_id}-notif-e2e"
    amqp_url = await create_vhost(servers.base_amqp_url, vhost)
    async with smtp_server() as (mailbox, smtp_port):
        stack = Stack(
            amqp_url=amqp_url,
            postgres_url=servers.postgres_url,
            database_prefix=f"{servers.run_id}_notif_e2e",
            ports={name: free_port() for name in STACK_SERVICES},
            extra_env={
                "CAGETTE_JWT_SECRET": JWT_SECRET,
                "CAGETTE_OUTBOX_POLL_INTERVAL": "0.2",
                "CAGETTE_SMTP_PORT": str(smtp_port),
                "CAGETTE_SMTP_POLL_INTERVAL": "0.2",
                "CAGETTE_REMINDER_GRACE": "PT1S",
                "CAGETTE_REMINDER_CHECK_INTERVAL": "0.3",
            },
            log_dir=LOG_DIR / f"{servers.run_id}-notifications",
        )
        servers.databases.extend(stack.database_url(name) for name in STACK_SERVICES)
        await stack.start()
        try:
            yield stack, mailbox
        finally:
            await stack.stop()
            await delete_vhost(servers.base_amqp_url, vhost)


def bearer(user_id: uuid.UUID, roles: dict[uuid.UUID, Role] | None = None, admin: bool = False) -> dict[str, str]:
    token = encode_token(Principal(user_id=user_id, roles=roles or {}, platform_admin=admin), JWT_SECRET)
    return {"Authorization": f"Bearer {token}"}


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def test_transfer_instructions_cheque_receipt_and_one_reminder(system) -> None:
    stack, mailbox = system
    admin, coordinator, alice, bob = (uuid.uuid4() for _ in range(4))
    alice_email, bob_email = f"alice.{alice.hex[:6]}@example.org", f"bob.{bob.hex[:6]}@example.org"
    url = {name: stack.services[name].url for name in STACK_SERVICES}
    async with httpx.AsyncClient(timeout=10, **KEYED) as http:

        async def created(path: str, headers: dict[str, str], body: dict) -> dict:
            """What orders answers a POST of `body` with: 201, and the new thing."""
            return ok(await http.post(f"{url['orders']}{path}", headers=headers, json=body), 201)

        group = await created(
            "/groups",
            bearer(admin, admin=True),
            {
                "name": "AMAP des Lilas",
                "currency": "EUR",
                "payment_methods": ["cheque", "transfer"],
                "cheque_payee": "AMAP des Lilas",
                "transfer_iban": IBAN,
                "transfer_bic": "AGRIFRPP",
            },
        )
        g = uuid.UUID(group["group_id"])
        coord = bearer(coordinator, {g: Role.COORDINATOR})
        for member_id, name, email, language in ((alice, "Alice", alice_email, "en"), (bob, "Bob", bob_email, "fr")):
            member = {"member_id": str(member_id), "name": name, "email": email, "language": language}
            await created(f"/groups/{g}/members", coord, member)
        products = [{"name": "Panier de légumes", "unit_price": 1550}, {"name": "Pain", "unit_price": 410}]
        catalog = await created(
            f"/groups/{g}/catalogs", coord, {"name": "Ferme du Pré", "kind": "variable", "products": products}
        )
        vegetables, bread = (p["product_id"] for p in catalog["products"])
        starts_at = (datetime.now(UTC) + timedelta(days=3)).isoformat()
        where = {"starts_at": starts_at, "place": "Préau", "catalog_ids": [catalog["catalog_id"]]}
        d = (await created(f"/groups/{g}/distributions", coord, where))["distribution_id"]

        async def order(auth: dict[str, str], method: str, *lines: tuple[str, str]) -> dict:
            """`lines` (product, quantity) ordered for the distribution, paid by `method`."""
            basket = [{"product_id": product, "quantity": quantity} for product, quantity in lines]
            return await created(
                f"/groups/{g}/orders", auth, {"distribution_id": d, "payment_method": method, "lines": basket}
            )

        # 1. Alice orders by transfer: IBAN, amount and the reference the payments service stored.
        alice_auth = bearer(alice, {g: Role.MEMBER})
        placed = await order(alice_auth, "transfer", (vegetables, "1"))
        [instructions] = await mailbox.wait_for(alice_email, timeout=20)
        [payment] = ok(await http.get(f"{url['payments']}/groups/{g}/members/{alice}/payments", headers=alice_auth))
        assert payment["state"] == "declared" and payment["reference"]
        text = mailbox.body(instructions, "plain")
        assert instructions["Subject"] == "Your order is confirmed: €15.50 by bank transfer - AMAP des Lilas"
        assert f"IBAN: {IBAN}" in text and "Amount: €15.50" in text
        assert f"Reference to put in the transfer label: {payment['reference']}" in text

        # 2. Bob orders by cheque; the coordinator confirms the cheque at validation: a receipt.
        bob_auth = bearer(bob, {g: Role.MEMBER})
        await order(bob_auth, "cheque", (bread, "2"))
        [cheque_mail] = await mailbox.wait_for(bob_email, timeout=20)
        [cheque] = ok(await http.get(f"{url['payments']}/groups/{g}/members/{bob}/payments", headers=bob_auth))
        assert f"Référence à écrire au dos du chèque : {cheque['reference']}" in mailbox.body(cheque_mail, "plain")
        ok(
            await http.post(
                f"{url['payments']}/groups/{g}/distributions/{d}/baskets/{bob}/confirm-all-and-validate",
                headers=coord,
                json={},
            )
        )
        _, receipt = await mailbox.wait_for(bob_email, 2, timeout=20)
        assert receipt["Subject"] == "Reçu : 8,20\xa0€ reçus - AMAP des Lilas"
        assert cheque["reference"] in mailbox.body(receipt, "plain")

        # 3. Alice's transfer never comes: once it is cancelled her debt is uncovered, and she gets
        #    one reminder; a further posting (she adds bread, a new debit) sends no second one.
        ok(
            await http.post(
                f"{url['payments']}/groups/{g}/payments/{payment['payment_id']}/cancel",
                headers=coord,
                json={"reason": "transfer not received"},
            )
        )
        *_, reminder = await mailbox.wait_for(alice_email, 3, timeout=20)
        assert reminder["Subject"] == "Your balance is negative: €15.50 to settle - AMAP des Lilas"
        ok(
            await http.put(
                f"{url['orders']}/groups/{g}/orders/{placed['order_id']}",
                headers=alice_auth,
                json={
                    "lines": [{"product_id": vegetables, "quantity": "1"}, {"product_id": bread, "quantity": "1"}],
                },
            )
        )
        *_, complement = await mailbox.wait_for(alice_email, 4, timeout=20)
        assert complement["Subject"] == "Products added to your order: €4.10 more to pay - AMAP des Lilas"
        await asyncio.sleep(2.0)  # grace (1 s) and several scans: no second reminder
        subjects = [m["Subject"].split(":")[0] for m in mailbox.to(alice_email)]
        assert subjects == [
            "Your order is confirmed",
            "Payment cancelled",
            "Your balance is negative",
            "Products added to your order",
        ]
