"""What a treasurer and a member read, on the running services (issue 14)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cagette_runtime.devstack import Stack

from .conftest import client, clients, eventually
from .groups import Group, Product


def eur(cents: int) -> dict[str, Any]:
    return {"amount": cents, "currency": "EUR"}


@dataclass
class Lilas:
    """AMAP des Lilas set up over HTTP: its coordinator, members, one catalog (bread by the
    piece, cheese by weight with a 2 % fee), one distribution."""

    group: Group
    bread: str
    cheese: str
    distribution: str

    @classmethod
    async def create(cls, orders: httpx.AsyncClient, methods: list[str], **settings: Any) -> Lilas:
        group = await Group.create(orders, "AMAP des Lilas", payment_methods=methods, **settings)
        await group.join_coordinator("Claire")
        farm = await group.catalog(
            "Ferme du Pré", [Product("Pain", 350, unit="piece"), Product("Comté", 1999, unit="kg", fee_rate="0.02")]
        )
        starts_at = (datetime.now(UTC) + timedelta(days=3)).replace(hour=18, minute=0)
        distribution = await group.distribution([farm], "Préau de l'école", starts_at=starts_at)
        bread, cheese = farm.product_ids
        return cls(group, bread, cheese, distribution)

    @property
    def id(self) -> uuid.UUID:
        return self.group.group_id

    @property
    def coordinator_id(self) -> uuid.UUID:
        return self.group.coordinator_id

    @property
    def coordinator(self) -> dict[str, str]:
        return self.group.coordinator

    def member(self, member_id: uuid.UUID) -> dict[str, str]:
        return self.group.member(member_id)

    async def join(self, name: str) -> uuid.UUID:
        """A member with an e-mail of their own (the emails tests read are each member's)."""
        member_id = uuid.uuid4()
        return await self.group.join(name, member_id=member_id, email=f"{member_id.hex[:10]}@example.org")

    async def order(
        self, member_id: uuid.UUID, method: str, breads: str = "2", cheese: str = "0.375"
    ) -> httpx.Response:
        lines = [(self.bread, breads), *([(self.cheese, cheese)] if cheese else [])]
        return await self.group.order(member_id, self.distribution, method, lines)


async def emails_of(stack: Stack, group: Lilas, member_id: uuid.UUID) -> list[dict[str, Any]]:
    async with client(stack, "notifications") as notifications:
        response = await notifications.get(f"/groups/{group.id}/members/{member_id}/emails", headers=group.coordinator)
        assert response.status_code == 200, response.text
        return response.json()


async def test_cash_declared_confirmed_as_a_cheque(stack: Stack) -> None:
    """R20: Alice declared cash and hands over a cheque. The coordinator confirms it as a cheque:
    the transition says cash -> cheque, by whom and when; the ledger clears it in the cheques
    account (nothing in cash); Alice gets a receipt, never a "payment cancelled" email."""
    async with clients(stack, "orders", "payments", "ledger") as (orders, payments, ledger):
        group = await Lilas.create(orders, ["cheque", "cash"], cheque_payee="AMAP des Lilas")
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
