"""What a treasurer and a member read, on the running services (issue 14)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cagette_runtime.devstack import Stack

from .conftest import bearer, client, eventually


def eur(cents: int) -> dict[str, Any]:
    return {"amount": cents, "currency": "EUR"}


class Group:
    """A group set up over HTTP: a coordinator, members, one catalog, one distribution."""

    def __init__(self, orders: httpx.AsyncClient) -> None:
        self.orders = orders
        self.admin = bearer(uuid.uuid4(), admin=True)
        self.coordinator_id = uuid.uuid4()

    async def create(self, methods: list[str], **settings: Any) -> None:
        created = await self.orders.post(
            "/groups",
            headers=self.admin,
            json={"name": "AMAP des Lilas", "currency": "EUR", "payment_methods": methods, **settings},
        )
        assert created.status_code == 201, created.text
        self.id = created.json()["group_id"]
        self.coordinator = bearer(self.coordinator_id, coordinator_of=uuid.UUID(self.id))
        await self.join("Claire", self.coordinator_id, role="coordinator")
        catalog = await self.orders.post(
            f"/groups/{self.id}/catalogs",
            headers=self.coordinator,
            json={
                "name": "Ferme du Pré",
                "products": [
                    {"name": "Pain", "unit_price": 350, "unit": "piece"},
                    {"name": "Comté", "unit_price": 1999, "unit": "kg", "fee_rate": "0.02"},
                ],
            },
        )
        assert catalog.status_code == 201, catalog.text
        self.bread, self.cheese = (p["product_id"] for p in catalog.json()["products"])
        distribution = await self.orders.post(
            f"/groups/{self.id}/distributions",
            headers=self.coordinator,
            json={
                "starts_at": (datetime.now(UTC) + timedelta(days=3)).replace(hour=18, minute=0).isoformat(),
                "place": "Préau de l'école",
                "catalog_ids": [catalog.json()["catalog_id"]],
            },
        )
        assert distribution.status_code == 201, distribution.text
        self.distribution = distribution.json()["distribution_id"]

    async def join(self, name: str, member_id: uuid.UUID | None = None, role: str = "member") -> uuid.UUID:
        member_id = member_id or uuid.uuid4()
        joined = await self.orders.post(
            f"/groups/{self.id}/members",
            headers=self.admin,
            json={
                "member_id": str(member_id),
                "role": role,
                "name": name,
                "email": f"{member_id.hex[:10]}@example.org",
            },
        )
        assert joined.status_code == 201, joined.text
        return member_id

    def member(self, member_id: uuid.UUID) -> dict[str, str]:
        return bearer(member_id, member_of=uuid.UUID(self.id))

    async def order(
        self, member_id: uuid.UUID, method: str, breads: str = "2", cheese: str = "0.375"
    ) -> httpx.Response:
        lines = [{"product_id": self.bread, "quantity": breads}]
        if cheese:
            lines.append({"product_id": self.cheese, "quantity": cheese})
        return await self.orders.post(
            f"/groups/{self.id}/orders",
            headers=self.member(member_id),
            json={"distribution_id": self.distribution, "payment_method": method, "lines": lines},
        )


async def emails_of(stack: Stack, group: Group, member_id: uuid.UUID) -> list[dict[str, Any]]:
    async with client(stack, "notifications") as notifications:
        response = await notifications.get(f"/groups/{group.id}/members/{member_id}/emails", headers=group.coordinator)
        assert response.status_code == 200, response.text
        return response.json()


async def test_cash_declared_confirmed_as_a_cheque(stack: Stack) -> None:
    """R20: Alice declared cash and hands over a cheque. The coordinator confirms it as a cheque:
    the transition says cash -> cheque, by whom and when; the ledger clears it in the cheques
    account (nothing in cash); Alice gets a receipt, never a "payment cancelled" email."""
    async with (
        client(stack, "orders") as orders,
        client(stack, "payments") as payments,
        client(stack, "ledger") as ledger,
    ):
        group = Group(orders)
        await group.create(["cheque", "cash"], cheque_payee="AMAP des Lilas")
        alice = await group.join("Alice")
        placed = await group.order(alice, "cash")
        assert placed.status_code == 201, placed.text
        assert placed.json()["total"] == eur(1465)

        async def declared() -> dict[str, Any] | None:
            listed = (
                await payments.get(f"/groups/{group.id}/members/{alice}/payments", headers=group.coordinator)
            ).json()
            return next((p for p in listed if p["state"] == "declared"), None)

        cash = await eventually(declared)
        assert cash["method"] == "cash"
        confirmed = await payments.post(
            f"/groups/{group.id}/payments/{cash['payment_id']}/confirm",
            headers=group.coordinator,
            json={"method": "cheque", "amount": eur(1500), "label": "101"},
        )
        assert confirmed.status_code == 200, confirmed.text
        body = confirmed.json()
        assert (body["state"], body["method"], body["amount"], body["declared_amount"]) == (
            "received",
            "cheque",
            eur(1500),
            eur(1465),
        )
        last = body["transitions"][-1]
        assert (last["from"], last["to"], last["method_before"], last["method_after"]) == (
            "declared",
            "received",
            "cash",
            "cheque",
        )
        assert last["by"] == str(group.coordinator_id) and last["at"]

        async def settled() -> dict[str, Any] | None:
            answer = (await ledger.get(f"/groups/{group.id}/members/{alice}/balance", headers=group.coordinator)).json()
            return answer if answer["balance"] == eur(35) and answer["pending"] == eur(0) else None

        await eventually(settled)
        accounts = {
            a["type"]: a["balance"]["amount"]
            for a in (await ledger.get(f"/groups/{group.id}/accounts", headers=group.coordinator)).json()
        }
        assert abs(accounts["cheques"]) == 1500
        assert accounts.get("cash", 0) == 0

        async def receipt() -> list[dict[str, Any]] | None:
            emails = await emails_of(stack, group, alice)
            return emails if any(e["kind"] == "payment_received" for e in emails) else None

        kinds = {e["kind"] for e in await eventually(receipt)}
        assert "payment_cancelled" not in kinds, kinds
