"""Bad input: each a clear 4xx that changes nothing and publishes nothing (the outbox is
unchanged, the payments and baskets are as they were)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from cagette_contracts import PaymentMethod, Role

from .conftest import Group, Payments, line


def eur(cents: int) -> dict:
    return {"amount": cents, "currency": "EUR"}


@dataclass
class Scene:
    group: Group
    other: Group  # another group, with its own coordinator and members
    distribution: UUID
    member: UUID
    pending_id: str
    cancelled_id: str
    received_id: str
    contract: UUID


@pytest.fixture
async def scene(payments: Payments) -> Scene:
    group = await payments.new_group(2)
    other = await payments.new_group(1)
    distribution, member = uuid4(), group.members[0]
    await payments.order(group, member, distribution, PaymentMethod.CHEQUE)
    await payments.order(group, member, distribution, PaymentMethod.TRANSFER)
    declared = [p for p in await payments.member_payments(group, member) if p["state"] == "declared"]
    cancel = await payments.client.post(
        f"/groups/{group.group_id}/payments/{declared[1]['payment_id']}/cancel",
        json={"reason": "x"},
        headers=payments.coordinator(group),
    )
    assert cancel.status_code == 200
    received = await payments.client.post(
        f"/groups/{group.group_id}/members/{member}/payments",
        json={"method": "cash", "amount": eur(500)},
        headers=payments.coordinator(group),
    )
    contract = uuid4()
    await payments.subscribe(group, member, contract, [line("Box", 1000)], 2)
    return Scene(
        group,
        other,
        distribution,
        member,
        declared[0]["payment_id"],
        declared[1]["payment_id"],
        received.json()["payment_id"],
        contract,
    )


async def snapshot(payments: Payments, scene: Scene) -> tuple:
    """Everything a refused request must leave as it was."""
    rows = await payments.scalar(
        "SELECT json_agg(p ORDER BY payment_id)::text FROM (SELECT "
        "payment_id, state, amount, method, label FROM payments "
        "WHERE group_id IN (:a, :b)) p",
        a=scene.group.group_id,
        b=scene.other.group_id,
    )
    baskets = await payments.scalar(
        "SELECT json_agg(b ORDER BY member_id)::text FROM baskets b WHERE group_id IN (:a, :b)",
        a=scene.group.group_id,
        b=scene.other.group_id,
    )
    transitions = await payments.scalar("SELECT count(*) FROM payment_transitions")
    return await payments.outbox_count(), rows, baskets, transitions


async def refused(
    payments: Payments,
    scene: Scene,
    method: str,
    url: str,
    status: int,
    *,
    headers: dict | None,
    json: object = None,
    detail: str = "",
) -> None:
    before = await snapshot(payments, scene)
    response = await payments.client.request(method, url, json=json, headers=headers or {})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"] and (detail in str(body)), body
    assert await snapshot(payments, scene) == before


def routes(s: Scene, group: Group) -> list[tuple[str, str, object]]:
    """Every coordinator action, aimed at `group`'s path."""
    g, d, m = group.group_id, s.distribution, s.member
    return [
        ("POST", f"/groups/{g}/members/{m}/payments", {"method": "cash", "amount": eur(100)}),
        ("POST", f"/groups/{g}/members/{m}/refunds", {"method": "cash", "amount": eur(100), "reason": "r"}),
        ("POST", f"/groups/{g}/payments/{s.pending_id}/confirm", {}),
        ("POST", f"/groups/{g}/payments/{s.pending_id}/cancel", {}),
        ("POST", f"/groups/{g}/payments/{s.received_id}/reverse", {"reason": "r"}),
        ("GET", f"/groups/{g}/payments?reference=RF18539007547034", None),
        ("GET", f"/groups/{g}/distributions/{d}/baskets", None),
        ("POST", f"/groups/{g}/distributions/{d}/baskets/{m}/payments", {"method": "cash", "amount": eur(100)}),
        ("POST", f"/groups/{g}/distributions/{d}/baskets/{m}/refunds", {"method": "cash", "amount": eur(100)}),
        ("POST", f"/groups/{g}/distributions/{d}/baskets/{m}/validate", None),
        ("POST", f"/groups/{g}/distributions/{d}/baskets/{m}/confirm-all-and-validate", None),
        ("POST", f"/groups/{g}/distributions/{d}/validate", None),
        ("GET", f"/groups/{g}/distributions/{d}/takings.csv", None),
        (
            "POST",
            f"/groups/{g}/contracts/{s.contract}/payments",
            {"client_key": "k", "rows": [{"member_id": str(m), "amount": eur(100)}]},
        ),
        ("GET", f"/groups/{g}/contracts/{s.contract}/subscriptions", None),
    ]


async def test_a_member_cannot_call_coordinator_actions(payments: Payments, scene: Scene) -> None:
    member_token = payments.member(scene.group, scene.member)
    for method, url, body in routes(scene, scene.group):
        await refused(payments, scene, method, url, 403, headers=member_token, json=body, detail="coordinator")


async def test_a_coordinator_of_another_group_cannot_act_on_this_one(payments: Payments, scene: Scene) -> None:
    for method, url, body in routes(scene, scene.group):
        await refused(
            payments,
            scene,
            method,
            url,
            403,
            headers=payments.coordinator(scene.other),
            json=body,
            detail=str(scene.group.group_id),
        )


async def test_no_token_or_a_forged_one_is_refused(payments: Payments, scene: Scene) -> None:
    method, url, body = routes(scene, scene.group)[0]
    await refused(payments, scene, method, url, 401, headers=None, json=body)
    await refused(payments, scene, method, url, 401, headers={"Authorization": "Bearer not.a.jwt"}, json=body)


async def test_a_payment_of_another_group_is_not_found_through_this_group(payments: Payments, scene: Scene) -> None:
    # the other group's coordinator, on their own group's path, naming this group's payment
    g = scene.other.group_id
    headers = payments.coordinator(scene.other)
    for action, body in (("confirm", {}), ("cancel", {}), ("reverse", {"reason": "r"})):
        target = scene.received_id if action == "reverse" else scene.pending_id
        await refused(
            payments, scene, "POST", f"/groups/{g}/payments/{target}/{action}", 404, headers=headers, json=body
        )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"method": "cash", "amount": eur(0)}, "must be positive"),
        ({"method": "cash", "amount": eur(-500)}, "must be positive"),
        ({"method": "cash", "amount": {"amount": 500, "currency": "USD"}}, "must be in EUR"),
        ({"method": "cash", "amount": {"amount": 5.5, "currency": "EUR"}}, "integer number of minor units"),
        ({"method": "cash", "amount": {"amount": 500, "currency": "EURO"}}, "ISO 4217"),
        ({"method": "money_pot", "amount": eur(500)}, "cannot be recorded by hand"),
        ({"method": "card", "amount": eur(500)}, "cannot be recorded by hand"),
        ({"method": "bitcoin", "amount": eur(500)}, "method"),
        ({"method": "cash", "amount": eur(500), "surprise": 1}, "surprise"),
        ({"method": "cash", "amount": eur(500), "order_id": str(uuid4())}, "is not an order of member"),
        ({"method": "cash", "amount": eur(500), "subscription_id": str(uuid4())}, "is not a subscription of member"),
        ({"method": "cash", "amount": eur(500), "distribution_id": str(uuid4())}, "has no basket for distribution"),
    ],
)
async def test_bad_amounts_and_methods_are_refused(payments: Payments, scene: Scene, body: dict, detail: str) -> None:
    url = f"/groups/{scene.group.group_id}/members/{scene.member}/payments"
    await refused(
        payments, scene, "POST", url, 422, headers=payments.coordinator(scene.group), json=body, detail=detail
    )


async def test_a_payment_for_another_groups_member_is_refused(payments: Payments, scene: Scene) -> None:
    outsider = scene.other.members[0]
    headers = payments.coordinator(scene.group)
    for url, body in (
        (f"/groups/{scene.group.group_id}/members/{outsider}/payments", {"method": "cash", "amount": eur(500)}),
        (
            f"/groups/{scene.group.group_id}/members/{outsider}/refunds",
            {"method": "cash", "amount": eur(500), "reason": "r"},
        ),
    ):
        await refused(payments, scene, "POST", url, 404, headers=headers, json=body, detail="is not a member of group")


async def test_state_machine_refusals(payments: Payments, scene: Scene) -> None:
    g = scene.group.group_id
    headers = payments.coordinator(scene.group)
    await refused(
        payments,
        scene,
        "POST",
        f"/groups/{g}/payments/{scene.cancelled_id}/confirm",
        409,
        headers=headers,
        json={},
        detail="cancelled: only a declared payment can be confirmed",
    )
    await refused(
        payments,
        scene,
        "POST",
        f"/groups/{g}/payments/{scene.received_id}/cancel",
        409,
        headers=headers,
        json={},
        detail="received",
    )
    for correction, detail in (
        ({"amount": eur(0)}, "must be positive"),
        ({"amount": {"amount": 700, "currency": "CHF"}}, "must be in EUR"),
        ({"method": "card"}, "cannot be confirmed as card"),
    ):
        confirm = f"/groups/{g}/payments/{scene.pending_id}/confirm"
        await refused(payments, scene, "POST", confirm, 422, headers=headers, json=correction, detail=detail)
    await refused(
        payments,
        scene,
        "POST",
        f"/groups/{g}/payments/{scene.pending_id}/reverse",
        409,
        headers=headers,
        json={"reason": "r"},
        detail="only a received payment",
    )
    await refused(payments, scene, "POST", f"/groups/{g}/payments/{uuid4()}/confirm", 404, headers=headers, json={})


async def test_validating_twice_is_refused(payments: Payments, scene: Scene) -> None:
    g, d, m = scene.group.group_id, scene.distribution, scene.member
    headers = payments.coordinator(scene.group)
    assert (
        await payments.client.post(
            f"/groups/{g}/distributions/{d}/baskets/{m}/confirm-all-and-validate", headers=headers
        )
    ).status_code == 200
    await refused(
        payments,
        scene,
        "POST",
        f"/groups/{g}/distributions/{d}/baskets/{m}/validate",
        409,
        headers=headers,
        detail="already validated",
    )
    await refused(
        payments, scene, "POST", f"/groups/{g}/distributions/{d}/baskets/{uuid4()}/validate", 404, headers=headers
    )


async def test_group_unknown_or_with_payments_off(payments: Payments, scene: Scene) -> None:
    unknown = uuid4()
    headers = payments.token(uuid4(), {unknown: Role.COORDINATOR})
    await refused(
        payments,
        scene,
        "POST",
        f"/groups/{unknown}/members/{uuid4()}/payments",
        409,
        headers=headers,
        json={"method": "cash", "amount": eur(100)},
        detail="has not received the settings",
    )
    off = await payments.new_group(1, payments_enabled=False)
    await refused(
        payments,
        scene,
        "POST",
        f"/groups/{off.group_id}/members/{off.members[0]}/payments",
        409,
        headers=payments.coordinator(off),
        json={"method": "cash", "amount": eur(100)},
        detail="payment management is off",
    )


async def test_refund_links_and_reasons_are_checked(payments: Payments, scene: Scene) -> None:
    g, m = scene.group.group_id, scene.member
    headers = payments.coordinator(scene.group)
    url = f"/groups/{g}/members/{m}/refunds"
    await refused(
        payments,
        scene,
        "POST",
        url,
        422,
        headers=headers,
        json={"method": "cash", "amount": eur(100), "reason": "r", "payment_id": str(uuid4())},
        detail="is not a payment of member",
    )
    await refused(
        payments,
        scene,
        "POST",
        url,
        409,
        headers=headers,
        json={"method": "cash", "amount": eur(100), "reason": "r", "payment_id": scene.cancelled_id},
        detail="only money received can be given back",
    )
    await refused(
        payments, scene, "POST", url, 422, headers=headers, json={"method": "cash", "amount": eur(100)}, detail="reason"
    )
    other_member = scene.group.members[1]
    await refused(
        payments,
        scene,
        "POST",
        f"/groups/{g}/members/{other_member}/refunds",
        422,
        headers=headers,
        json={"method": "cash", "amount": eur(100), "reason": "r", "payment_id": scene.received_id},
        detail="is not a payment of member",
    )
