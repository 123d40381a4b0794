"""Idempotency-Key on payments (runtime/idempotency.py): every route a retry of which could move
money needs a key (428 without, nothing recorded, no event); a retry with the same key and body
gets the first answer and records nothing more; the same key with another body is a 409;
concurrent retries record one payment. The body's client_key still works as before."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from cagette_runtime.testing import WITHOUT_KEY

from .conftest import Payments

NO_KEY = {WITHOUT_KEY: True}


def eur(cents: int) -> dict[str, object]:
    return {"amount": cents, "currency": "EUR"}


async def test_every_route_that_moves_money_refuses_a_request_without_key(payments: Payments) -> None:
    group = await payments.new_group()
    member = group.members[0]
    g, p, d, c, o, line = group.group_id, uuid4(), uuid4(), uuid4(), uuid4(), uuid4()
    cash = {"method": "cash", "amount": eur(500)}
    refund = {**cash, "reason": "overpaid"}
    routes: list[tuple[str, dict[str, object] | None]] = [
        (f"/groups/{g}/members/{member}/payments", cash),
        (f"/groups/{g}/members/{member}/refunds", refund),
        (f"/groups/{g}/payments/{p}/confirm", {}),
        (f"/groups/{g}/payments/{p}/cancel", {}),
        (f"/groups/{g}/payments/{p}/reverse", {"reason": "bounced"}),
        (f"/groups/{g}/distributions/{d}/baskets/{member}/payments", cash),
        (f"/groups/{g}/distributions/{d}/baskets/{member}/refunds", cash),
        (f"/groups/{g}/distributions/{d}/baskets/{member}/confirm-all-and-validate", None),
        (f"/groups/{g}/contracts/{c}/payments", {"client_key": "k", "rows": [{"member_id": str(member), **cash}]}),
        (f"/groups/{g}/orders/{o}/card-payment", None),
        (f"/groups/{g}/card-payments/{p}/refunds", {"amount": eur(100), "reason": "x", "client_key": "k"}),
        (f"/groups/{g}/bank-lines/{line}/assign", {"member_id": str(member)}),
    ]
    before = await payments.outbox_count()
    for path, body in routes:
        answer = await payments.client.post(path, json=body, headers=payments.coordinator(group), extensions=NO_KEY)
        assert answer.status_code == 428, (path, answer.text)
        assert "Idempotency-Key" in answer.json()["detail"]
    statement = await payments.client.post(
        f"/groups/{g}/bank-statements",
        content=b"date,amount\n",
        headers={**payments.coordinator(group), "Content-Type": "text/csv"},
        extensions=NO_KEY,
    )
    assert statement.status_code == 428, statement.text
    assert await payments.outbox_count() == before
    assert await payments.member_payments(group, member) == []


async def test_a_payment_retried_with_its_key_is_recorded_once(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member = group.members[0]
    url = f"/groups/{group.group_id}/members/{member}/payments"
    headers = {**payments.coordinator(group), "Idempotency-Key": "till-1"}
    body = {"method": "cash", "amount": eur(1500)}
    first = await payments.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    before = await payments.outbox_count()
    again = await payments.client.post(url, json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = await payments.client.post(url, json={**body, "amount": eur(1600)}, headers=headers)
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    assert await payments.outbox_count() == before
    assert len(await payments.member_payments(group, member)) == 1
    received = await spy.wait_for("payments.payment.received", payment_id=first.json()["payment_id"])
    assert len(received) == 1


async def test_a_confirmation_retried_with_its_key_confirms_once(payments: Payments) -> None:
    group, _, url = await payments.declared_cheque()
    headers = {**payments.coordinator(group), "Idempotency-Key": "cheque-in-hand"}
    first = await payments.client.post(url, json={"label": "cheque 7"}, headers=headers)
    assert first.status_code == 200, first.text
    before = await payments.outbox_count()
    again = await payments.client.post(url, json={"label": "cheque 7"}, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert await payments.outbox_count() == before


async def test_concurrent_retries_with_one_key_record_one_payment(payments: Payments) -> None:
    group = await payments.new_group()
    member = group.members[0]
    url = f"/groups/{group.group_id}/members/{member}/payments"
    headers = {**payments.coordinator(group), "Idempotency-Key": "double-click"}
    body = {"method": "cheque", "amount": eur(900)}
    answers = await asyncio.gather(*(payments.client.post(url, json=body, headers=headers) for _ in range(6)))
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    assert len([a for a in answers if a.status_code == 201 and "Idempotent-Replayed" not in a.headers]) == 1
    assert len(await payments.member_payments(group, member)) == 1
