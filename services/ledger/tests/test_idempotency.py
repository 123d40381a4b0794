"""Idempotency-Key on the ledger's adjustments (runtime/idempotency.py): corrections, reversals,
opening balances and their CSV import need a key (428 without, nothing posted); a retry with the
same key and body gets the first answer and posts nothing more; concurrent retries post once."""

from __future__ import annotations

import asyncio
import uuid

from cagette_contracts import MemberJoined, Role
from cagette_runtime.testing import WITHOUT_KEY

from .conftest import World, count_rows, token
from .test_api import joined, url

NO_KEY = {WITHOUT_KEY: True}
EUR = "EUR"


def correction(amount: int = 300, reason: str = "eggs were missing") -> dict[str, object]:
    return {"amount": {"amount": amount, "currency": EUR}, "reason": reason}


async def test_adjustments_without_a_key_are_428_and_post_nothing(world: World) -> None:
    member = await joined(world)
    group = f"/groups/{world.group_id}"
    refusals = [
        await world.client.post(
            url(world, member, "corrections"), json=correction(), headers=world.coordinator, extensions=NO_KEY
        ),
        await world.client.post(
            url(world, member, "opening-balance"),
            json={"amount": {"amount": 500, "currency": EUR}},
            headers=world.coordinator,
            extensions=NO_KEY,
        ),
        await world.client.post(
            f"{group}/transactions/{uuid.uuid4()}/reversal",
            json={"reason": "a mistake"},
            headers=world.coordinator,
            extensions=NO_KEY,
        ),
        await world.client.post(
            f"{group}/opening-balances",
            content=f"member_id,amount\n{member},12.50\n".encode(),
            headers={**world.coordinator, "Content-Type": "text/csv"},
            extensions=NO_KEY,
        ),
    ]
    for refused in refusals:
        assert refused.status_code == 428, refused.text
        assert "Idempotency-Key" in refused.json()["detail"]
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0


async def test_a_reversal_retried_with_its_key_reverses_once(world: World) -> None:
    member = await joined(world)
    posted = await world.client.post(
        url(world, member, "corrections"), json=correction(), headers={**world.coordinator, "Idempotency-Key": "c-1"}
    )
    assert posted.status_code == 201, posted.text
    path = f"/groups/{world.group_id}/transactions/{posted.json()['transaction_id']}/reversal"
    headers = {**world.coordinator, "Idempotency-Key": "undo-c-1"}
    first = await world.client.post(path, json={"reason": "wrong member"}, headers=headers)
    again = await world.client.post(path, json={"reason": "wrong member"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == first.content
    assert await count_rows(world.service.database, "transactions", world.group_id) == 2
    assert (await world.balance(member))["balance"]["amount"] == 0


async def test_concurrent_corrections_with_one_key_post_once(world: World) -> None:
    member = await joined(world)
    headers = {**world.coordinator, "Idempotency-Key": "double-submit"}
    answers = await asyncio.gather(
        *(world.client.post(url(world, member, "corrections"), json=correction(), headers=headers) for _ in range(6))
    )
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    assert len([a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]) == 1
    assert await count_rows(world.service.database, "transactions", world.group_id) == 1
    assert (await world.balance(member))["balance"]["amount"] == 300


async def test_two_coordinators_with_the_same_key_post_two_corrections(world: World) -> None:
    member = await joined(world)
    second = uuid.uuid4()
    await world.deliver(
        MemberJoined(group_id=world.group_id, member_id=second, role=Role.COORDINATOR, name="C", email="c@example.org")
    )
    other = token(world.settings, second, {world.group_id: Role.COORDINATOR})
    for headers in (world.coordinator, other):
        answer = await world.client.post(
            url(world, member, "corrections"), json=correction(), headers={**headers, "Idempotency-Key": "fix"}
        )
        assert answer.status_code == 201, answer.text
        assert "Idempotent-Replayed" not in answer.headers
    assert (await world.balance(member))["balance"]["amount"] == 600
