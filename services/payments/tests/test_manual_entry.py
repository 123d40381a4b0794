"""Manual entry (R7, R22): payments and refunds recorded by hand, mass entry for a subscription
contract (all or nothing, idempotent by a client key)."""

from __future__ import annotations

from uuid import uuid4

from cagette_contracts import PaymentMethod

from .conftest import Payments, line


def eur(cents: int) -> dict:
    return {"amount": cents, "currency": "EUR"}


async def test_coordinator_records_a_payment_linked_to_an_order(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    order = await payments.order(group, member, distribution, PaymentMethod.MONEY_POT)
    response = await payments.client.post(
        f"/groups/{group.group_id}/members/{member}/payments",
        json={
            "method": "cheque",
            "amount": eur(2000),
            "paid_on": "2026-11-20",
            "label": "cheque 42",
            "order_id": str(order.order_id),
        },
        headers=payments.coordinator(group),
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["state"] == "received" and payment["kind"] == "payment" and payment["paid_on"] == "2026-11-20"
    assert payment["distribution_id"] == str(distribution) and payment["order_id"] == str(order.order_id)
    assert [(t["from"], t["to"], t["by"]) for t in payment["transitions"]] == [
        (None, "received", str(group.coordinator))
    ]
    [event] = await spy.wait_for("payments.payment.received", payment_id=payment["payment_id"])
    assert (
        event.body["amount"] == eur(2000)
        and event.body["label"] == "cheque 42"
        and event.body["declared_amount"] is None
    )
    assert event.body["order_id"] == str(order.order_id) and event.body["recorded_by"] == str(group.coordinator)


async def test_the_same_client_key_records_once(payments: Payments) -> None:
    group = await payments.new_group()
    member = group.members[0]
    url = f"/groups/{group.group_id}/members/{member}/payments"
    body = {"method": "cash", "amount": eur(1500), "client_key": "till-2026-11-27-1"}
    first = await payments.client.post(url, json=body, headers=payments.coordinator(group))
    before = await payments.outbox_count()
    second = await payments.client.post(url, json=body, headers=payments.coordinator(group))
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["payment_id"] == second.json()["payment_id"]
    different = await payments.client.post(url, json={**body, "amount": eur(1600)}, headers=payments.coordinator(group))
    assert different.status_code == 409
    assert await payments.outbox_count() == before
    assert len(await payments.member_payments(group, member)) == 1


async def test_refund_to_a_member_with_a_reason(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member = group.members[0]
    response = await payments.client.post(
        f"/groups/{group.group_id}/members/{member}/refunds",
        json={"method": "transfer", "amount": eur(1200), "reason": "leaves the group, credit given back"},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 201, response.text
    refund = response.json()
    assert refund["kind"] == "refund" and refund["amount"] == eur(-1200) and refund["state"] == "received"
    [event] = await spy.wait_for("payments.payment.refunded", refund_id=refund["payment_id"])
    assert event.body["amount"] == eur(1200) and event.body["method"] == "transfer"
    assert event.body["reason"] == "leaves the group, credit given back"
    missing_reason = await payments.client.post(
        f"/groups/{group.group_id}/members/{member}/refunds",
        json={"method": "cash", "amount": eur(100), "reason": " "},
        headers=payments.coordinator(group),
    )
    assert missing_reason.status_code == 422


async def test_mass_entry_brings_every_subscriber_to_zero(payments: Payments, spy) -> None:
    group = await payments.new_group(3)
    contract = uuid4()
    subs = [
        await payments.subscribe(group, m, contract, [line("Vegetable box", 1500)], 4) for m in group.members
    ]  # 60.00 each
    rows = [
        {"member_id": str(group.members[0]), "amount": eur(6000), "label": "cheque 1"},
        {"member_id": str(group.members[1]), "amount": eur(3000), "label": "cheque 2a"},
        {"member_id": str(group.members[1]), "amount": eur(3000), "label": "cheque 2b", "paid_on": "2026-12-01"},
        {
            "member_id": str(group.members[2]),
            "subscription_id": str(subs[2].subscription_id),
            "amount": eur(6000),
            "method": "transfer",
        },
    ]
    url = f"/groups/{group.group_id}/contracts/{contract}/payments"
    response = await payments.client.post(
        url, json={"client_key": "season-2026", "rows": rows}, headers=payments.coordinator(group)
    )
    assert response.status_code == 201, response.text
    recorded = response.json()["payments"]
    assert len(recorded) == 4 and {p["state"] for p in recorded} == {"received"}
    assert {p["subscription_id"] for p in recorded} == {str(s.subscription_id) for s in subs}
    for payment in recorded:
        await spy.wait_for("payments.payment.received", payment_id=payment["payment_id"])
    view = (
        await payments.client.get(
            f"/groups/{group.group_id}/contracts/{contract}/subscriptions", headers=payments.coordinator(group)
        )
    ).json()
    assert [s["standing"] for s in view["subscriptions"]] == ["settled"] * 3
    assert all(s["difference"] == eur(0) for s in view["subscriptions"])

    before = await payments.outbox_count()
    replay = await payments.client.post(
        url, json={"client_key": "season-2026", "rows": rows}, headers=payments.coordinator(group)
    )
    assert replay.status_code == 200
    assert [p["payment_id"] for p in replay.json()["payments"]] == [p["payment_id"] for p in recorded]
    changed = await payments.client.post(
        url, json={"client_key": "season-2026", "rows": rows[:1]}, headers=payments.coordinator(group)
    )
    assert changed.status_code == 409
    assert await payments.outbox_count() == before


async def test_mass_entry_is_all_or_nothing(payments: Payments) -> None:
    group = await payments.new_group(2)
    contract = uuid4()
    await payments.subscribe(group, group.members[0], contract, [line("Bread", 400)], 5)
    stranger = uuid4()
    rows = [
        {"member_id": str(group.members[0]), "amount": eur(2000)},
        {"member_id": str(group.members[1]), "amount": eur(2000)},  # no subscription to this contract
        {"member_id": str(stranger), "amount": eur(2000)},  # not in the group
        {"member_id": str(group.members[0]), "amount": eur(0)},
        {"member_id": str(group.members[0]), "amount": {"amount": 2000, "currency": "CHF"}},
        {"member_id": str(group.members[0]), "amount": eur(2000), "method": "money_pot"},
    ]
    before = await payments.outbox_count()
    response = await payments.client.post(
        f"/groups/{group.group_id}/contracts/{contract}/payments",
        json={"client_key": "k1", "rows": rows},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 422, response.text
    problems = response.json()["context"]["rows"]
    assert [p["row"] for p in problems] == [1, 2, 3, 4, 5]
    assert await payments.outbox_count() == before
    assert await payments.member_payments(group, group.members[0]) == []
    assert await payments.scalar("SELECT count(*) FROM payment_batches WHERE group_id = :g", g=group.group_id) == 0
    # the client key is still free: the corrected request goes through
    response = await payments.client.post(
        f"/groups/{group.group_id}/contracts/{contract}/payments",
        json={"client_key": "k1", "rows": rows[:1]},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 201


async def test_members_see_their_own_payments_only(payments: Payments) -> None:
    group = await payments.new_group(2)
    alice, bob = group.members
    await payments.order(group, alice, uuid4(), PaymentMethod.CHEQUE)
    own = await payments.client.get(
        f"/groups/{group.group_id}/members/{alice}/payments", headers=payments.member(group, alice)
    )
    assert own.status_code == 200 and len(own.json()) == 1
    other = await payments.client.get(
        f"/groups/{group.group_id}/members/{alice}/payments", headers=payments.member(group, bob)
    )
    assert other.status_code == 403
    payment_id = own.json()[0]["payment_id"]
    assert (
        await payments.client.get(
            f"/groups/{group.group_id}/payments/{payment_id}", headers=payments.member(group, alice)
        )
    ).status_code == 200
    assert (
        await payments.client.get(
            f"/groups/{group.group_id}/payments/{payment_id}", headers=payments.member(group, bob)
        )
    ).status_code == 403
