"""Money pot without negatives across the real services (SPEC R13, B2): the orders service asks
the real ledger for a hold over RabbitMQ request/reply before recording an order.

- an order the pot does not cover is refused with the available amount, and recorded nowhere;
  after a top-up (an opening balance posted through the ledger's API) the same order passes and
  the ledger turns the hold into the posted debit;
- two concurrent orders when the balance covers only one: exactly one succeeds;
- a hold granted to an order attempt that died before recording its order (orders crashing
  between the grant and the commit) is given back by orders' reconciliation loop, and the
  member's available balance comes back.

The stack here runs in a broker vhost of its own, so no other ledger instance of the same test
session (e.g. the ledger suite's) can answer its hold requests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cagette_runtime.devstack import Stack
from cagette_runtime.testing import IsolatedServers

from .conftest import bearer, client, eventually, running_stack
from .groups import Group, Product, order_body


@pytest.fixture(scope="module")
async def pot_stack(servers: IsolatedServers) -> AsyncIterator[Stack]:
    # Holds whose order was not recorded are given back 1 s after their request's deadline,
    # looked for every 0.5 s (defaults: 30 s and 10 s).
    fast_reconciliation = {
        "CAGETTE_ORDERS_HOLD_RELEASE_GRACE_SECONDS": "1",
        "CAGETTE_ORDERS_HOLD_RECONCILE_SECONDS": "0.5",
    }
    async with running_stack(servers, "mp", ("orders", "ledger"), extra_env=fast_reconciliation) as running:
        yield running


class PotGroup:
    """A money-pot group (negatives not allowed) set up over HTTP, known to the ledger."""

    def __init__(self, orders: httpx.AsyncClient, ledger: httpx.AsyncClient) -> None:
        self.orders, self.ledger = orders, ledger

    async def setup(self, distributions: int) -> None:
        self.group = await Group.create(
            self.orders, "Épicerie du coin", payment_methods=["money_pot"], allow_negative_money_pot=False
        )
        self.group_id, self.coordinator = self.group.group_id, self.group.coordinator
        catalog = await self.group.catalog("Épicerie", [Product("Huile d'olive", 700, unit="litre")])
        [self.oil] = catalog.product_ids
        self.distributions = [
            await self.group.distribution([catalog], "Local", starts_at=datetime.now(UTC) + timedelta(days=day + 2))
            for day in range(distributions)
        ]

    async def join(self) -> tuple[uuid.UUID, dict[str, str]]:
        member_id = uuid.uuid4()
        await self.group.join("Chloé", member_id=member_id, email=f"{member_id.hex[:8]}@example.org")

        async def known() -> bool:  # the ledger learnt the group from GroupSettingsChanged
            return (await self.balance(member_id)) is not None

        await eventually(known)
        return member_id, self.group.member(member_id)

    async def balance(self, member_id: uuid.UUID) -> dict[str, Any] | None:
        response = await self.ledger.get(
            f"/groups/{self.group_id}/members/{member_id}/balance", headers=self.coordinator
        )
        return response.json() if response.status_code == 200 else None

    async def order(self, auth: dict[str, str], litres: str, distribution: int = 0) -> httpx.Response:
        return await self.orders.post(
            f"/groups/{self.group_id}/orders",
            headers=auth,
            json=order_body(self.distributions[distribution], "money_pot", [(self.oil, litres)]),
        )

    async def top_up(self, member_id: uuid.UUID, cents: int) -> None:
        async def posted() -> httpx.Response | None:
            response = await self.ledger.post(
                f"/groups/{self.group_id}/members/{member_id}/opening-balance",
                headers=self.coordinator,
                json={"amount": {"amount": cents, "currency": "EUR"}, "memo": "reprise de solde"},
            )
            if response.status_code == 404:  # the ledger has not consumed MemberJoined yet
                return None
            assert response.status_code == 201, response.text
            return response

        await eventually(posted)

    async def orders_of(self, auth: dict[str, str]) -> list[dict[str, Any]]:
        response = await self.orders.get(f"/groups/{self.group_id}/orders", headers=auth)
        assert response.status_code == 200, response.text
        return response.json()


async def test_refused_then_accepted_after_a_top_up(pot_stack: Stack) -> None:
    async with client(pot_stack, "orders") as orders, client(pot_stack, "ledger") as ledger:
        group = PotGroup(orders, ledger)
        await group.setup(distributions=1)
        member_id, member = await group.join()

        refused = await group.order(member, "1.5")  # 1.5 l x 7.00 = 10.50
        assert refused.status_code == 409, refused.text
        assert refused.json()["context"]["available"] == {"amount": 0, "currency": "EUR"}
        assert refused.json()["context"]["needed"] == {"amount": 1050, "currency": "EUR"}
        assert await group.orders_of(member) == []

        await group.top_up(member_id, 2000)
        placed = await group.order(member, "1.5")
        assert placed.status_code == 201, placed.text
        assert placed.json()["status"] == "confirmed"

        async def debited() -> dict[str, Any] | None:
            found = await group.balance(member_id)
            return found if found and found["balance"]["amount"] == 2000 - 1050 else None

        final = await eventually(debited)
        # The hold became the posted debit: nothing is held twice.
        assert final["available"] == {"amount": 950, "currency": "EUR"}


async def test_two_concurrent_orders_when_the_pot_covers_only_one(pot_stack: Stack) -> None:
    async with client(pot_stack, "orders") as orders, client(pot_stack, "ledger") as ledger:
        group = PotGroup(orders, ledger)
        await group.setup(distributions=2)
        member_id, member = await group.join()
        await group.top_up(member_id, 1000)

        responses = await asyncio.gather(group.order(member, "1", 0), group.order(member, "1", 1))  # 7.00 each
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        (refused,) = [r for r in responses if r.status_code == 409]
        assert refused.json()["context"]["available"] == {"amount": 300, "currency": "EUR"}
        assert len(await group.orders_of(member)) == 1

        async def debited() -> dict[str, Any] | None:
            found = await group.balance(member_id)
            return found if found and found["balance"]["amount"] == 300 else None

        final = await eventually(debited)
        assert final["available"]["amount"] == 300


async def test_no_error_is_logged_for_money_pot_orders(pot_stack: Stack) -> None:
    """Granted and refused holds are normal business: neither side logs an ERROR for them (the
    ledger's reply to the direct reply-to pseudo-queue once logged a NO_ROUTE traceback each)."""
    async with client(pot_stack, "orders") as orders, client(pot_stack, "ledger") as ledger:
        group = PotGroup(orders, ledger)
        await group.setup(distributions=1)
        member_id, member = await group.join()
        assert (await group.order(member, "1")).status_code == 409
        await group.top_up(member_id, 1000)
        assert (await group.order(member, "1")).status_code == 201
    assert pot_stack.log_dir is not None
    for name in ("orders", "ledger"):
        logged = (pot_stack.log_dir / f"{name}.log").read_text(encoding="utf-8")
        errors = [line for line in logged.splitlines() if "ERROR" in line or "Traceback" in line]
        assert errors == [], f"{name} logged: {errors[:3]}"


async def test_a_hold_whose_order_attempt_died_is_given_back(pot_stack: Stack) -> None:
    """orders recorded the hold it asked for, the real ledger granted it, then orders died
    before recording the order (played here by the test doing orders' first half itself: the
    row in orders' hold_requests, then the PlaceHold): the money is held, until the running
    orders service's reconciliation releases it after the request's deadline plus the grace."""
    from faststream.rabbit import RabbitBroker
    from sqlalchemy import select

    from cagette_contracts import Money, PlaceHold
    from cagette_orders import store
    from cagette_orders.holds import LedgerHolds
    from cagette_orders.tables import hold_requests
    from cagette_runtime.db import Database
    from cagette_runtime.rows import record

    async with client(pot_stack, "orders") as orders, client(pot_stack, "ledger") as ledger:
        group = PotGroup(orders, ledger)
        await group.setup(distributions=1)
        member_id, _ = await group.join()
        await group.top_up(member_id, 1000)

        attempt = uuid.uuid4()
        asked = store.AskedHold(
            hold_id=attempt,
            attempt_id=attempt,
            group_id=group.group_id,
            member_id=member_id,
            subject_id=uuid.uuid4(),  # the order that will never be recorded
            amount=Money(amount=700, currency="EUR"),
            grant_before=datetime.now(UTC) + timedelta(seconds=2),
            expires_at=datetime.now(UTC) + timedelta(minutes=2),
        )
        database = Database(pot_stack.database_url("orders"))
        broker = RabbitBroker(pot_stack.amqp_url)
        await broker.connect()
        try:
            async with database.transaction() as session:
                assert await store.hold_asked(session, asked)
            # The same request orders sends: the recorded hold, for the order never recorded.
            decision = await LedgerHolds(broker).place(record(PlaceHold, vars(asked), order_id=asked.subject_id))
            assert decision.granted, decision
            held = await group.balance(member_id)
            assert held is not None and held["available"]["amount"] == 300  # orders "dies" here

            async def given_back() -> dict[str, Any] | None:
                found = await group.balance(member_id)
                return found if found and found["available"]["amount"] == 1000 else None

            final = await eventually(given_back, timeout=15)
            assert (final["balance"]["amount"], final["held"]["amount"]) == (1000, 0)
            async with database.sessionmaker() as session:
                state = await session.scalar(
                    select(hold_requests.c.status).where(hold_requests.c.hold_id == asked.hold_id)
                )
            assert state == "released"
        finally:
            await broker.stop()
            await database.dispose()
        # A normal pot order still goes through after that.
        assert (await group.order(bearer(member_id, member_of=group.group_id), "1")).status_code == 201
