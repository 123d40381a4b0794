"""Races a treasurer's desk produces: two coordinators confirming the same cheque, a mass entry
submitted twice at once. The database locks decide; nothing is recorded twice."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from cagette_contracts import PaymentMethod

from .conftest import Payments, line


def eur(cents: int) -> dict:
    return {"amount": cents, "currency": "EUR"}


async def test_two_concurrent_confirmations_one_wins(payments: Payments) -> None:
    group, member, url = await payments.declared_cheque()
    before = await payments.outbox_count()
    responses = await asyncio.gather(
        *[
            payments.client.post(url, json={"amount": eur(amount)}, headers=payments.coordinator(group))
            for amount in (600, 650, 700, 750)
        ]
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert await payments.outbox_count() == before + 1
    [payment] = await payments.member_payments(group, member)
    assert payment["amount"] == winner["amount"] and [t["to"] for t in payment["transitions"]] == [
        "declared",
        "received",
    ]


async def test_the_same_mass_entry_submitted_twice_at_once_is_recorded_once(payments: Payments) -> None:
    group = await payments.new_group(2)
    contract = uuid4()
    for member in group.members:
        await payments.subscribe(group, member, contract, [line("Box", 1000)], 3)
    body = {"client_key": "double-click", "rows": [{"member_id": str(m), "amount": eur(3000)} for m in group.members]}
    url = f"/groups/{group.group_id}/contracts/{contract}/payments"
    responses = await asyncio.gather(
        *[payments.client.post(url, json=body, headers=payments.coordinator(group)) for _ in range(3)]
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 201]
    assert len({tuple(p["payment_id"] for p in r.json()["payments"]) for r in responses}) == 1
    assert await payments.scalar("SELECT count(*) FROM payments WHERE group_id = :g", g=group.group_id) == 2


async def test_validation_and_a_late_confirmation_serialise_on_the_basket(payments: Payments) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    await payments.order(group, member, distribution, PaymentMethod.CASH)
    [declared] = await payments.member_payments(group, member)
    base = f"/groups/{group.group_id}"
    confirm, validate = await asyncio.gather(
        payments.client.post(
            f"{base}/payments/{declared['payment_id']}/confirm", json={}, headers=payments.coordinator(group)
        ),
        payments.client.post(
            f"{base}/distributions/{distribution}/baskets/{member}/validate", headers=payments.coordinator(group)
        ),
    )
    assert confirm.status_code == 200
    # either the validation saw the payment still pending (refused) or after its confirmation (validated)
    assert validate.status_code in (200, 409)
    basket = (
        await payments.client.get(
            f"{base}/distributions/{distribution}/baskets/{member}", headers=payments.coordinator(group)
        )
    ).json()
    assert basket["state"] == ("validated" if validate.status_code == 200 else "to_validate")
    assert basket["pending_payments"] == 0
