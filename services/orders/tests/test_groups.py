"""Groups, payment settings (R1, R9, R13, R17, R18), members; every change is an event."""

from __future__ import annotations

import uuid

import pytest

from cagette_contracts import Role

from .conftest import Group, OrdersEnv, Unchanged, bearer, card_ready, make_group, outbox_rows


async def test_settings_change_publishes_the_full_state(group: Group) -> None:
    response = await group.settings(
        payment_methods=["money_pot"], allow_negative_money_pot=False, order_cutoff_hours=24, language="en"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["payment_methods"] == ["money_pot"] and body["order_cutoff_hours"] == 24 and body["language"] == "en"
    changes = [
        e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.group.settings_changed"
    ]
    assert len(changes) == 2  # creation, then this change
    latest = changes[-1]
    assert latest["payment_methods"] == ["money_pot"]
    assert latest["allow_negative_money_pot"] is False
    assert latest["order_cutoff_hours"] == 24
    assert latest["name"] == "Les paniers" and latest["currency"] == "EUR" and latest["language"] == "en"
    assert latest["cheque_payee"] == "Les paniers"  # full state, not a diff
    assert latest["transfer_iban"] == "FR7630006000011234567890189"
    await group.env.spy.wait_for("orders.group.settings_changed", group_id=str(group.group_id), order_cutoff_hours=24)
    # The same settings again change nothing and publish nothing.
    async with Unchanged(group.env, group.group_id):
        again = await group.settings(payment_methods=["money_pot"])
        assert again.status_code == 200


async def test_a_group_has_its_own_time_zone(group: Group) -> None:
    created = await group.client.get(group.url(), headers=group.coordinator)
    assert created.json()["time_zone"] == "Europe/Paris"  # until a coordinator says otherwise
    response = await group.settings(time_zone="America/Montreal")
    assert response.status_code == 200, response.text
    assert response.json()["time_zone"] == "America/Montreal"
    await group.env.spy.wait_for(
        "orders.group.settings_changed", group_id=str(group.group_id), time_zone="America/Montreal"
    )
    refused = await group.settings(time_zone="Mars/Olympus_Mons")
    assert refused.status_code == 422
    assert "not an IANA time zone name" in refused.text


async def test_card_needs_card_payments_configured(group: Group) -> None:
    async with Unchanged(group.env, group.group_id):
        refused = await group.settings(payment_methods=["card", "cheque"])
        assert refused.status_code == 422
        assert "card payments are configured" in refused.json()["detail"]
    await card_ready(group)  # the payments service announces the group's card payments ready
    response = await group.settings(payment_methods=["card", "cheque"])
    assert response.status_code == 200, response.text
    assert response.json()["card_payments_configured"] is True


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"payment_methods": ["money_pot", "cheque"]}, "cannot be combined"),
        ({"payment_methods": ["transfer"], "transfer_iban": None}, "IBAN"),
        ({"transfer_iban": "FR76 3000 6000 0112 3456 7890 188"}, "invalid bank details"),
        ({"transfer_bic": "XX"}, "invalid bank details"),
        ({"payment_methods": []}, "at least one payment method"),
        ({"payment_methods": ["cheque"], "cheque_payee": None}, "payee"),
    ],
)
async def test_invalid_settings_change_nothing(group: Group, changes: dict, reason: str) -> None:
    async with Unchanged(group.env, group.group_id):
        response = await group.settings(**changes)
        assert response.status_code == 422, response.text
        assert reason in response.json()["detail"]


async def test_malformed_settings_are_422(group: Group) -> None:
    async with Unchanged(group.env, group.group_id):
        for body in (
            {"currency": "EURO"},
            {"payment_methods": ["bitcoin"]},
            {"order_cutoff_hours": -1},
            {"language": "de"},
            {"time_zone": "Mars/Olympus_Mons"},
            {"time_zone": "../../etc/passwd"},
            {"time_zone": None},
        ):
            response = await group.client.patch(group.url(), json=body, headers=group.coordinator)
            assert response.status_code == 422, (body, response.text)


async def test_payments_off_needs_no_method(env: OrdersEnv) -> None:
    group = await make_group(env, payments_enabled=False, payment_methods=[])
    assert group.data["payments_enabled"] is False
    events = await outbox_rows(env, group.group_id)
    assert events[0]["routing_key"] == "orders.group.settings_changed" and events[0]["payments_enabled"] is False


async def test_currency_cannot_change_once_the_group_has_products(group: Group) -> None:
    async with Unchanged(group.env, group.group_id):
        response = await group.settings(currency="CHF")
        assert response.status_code == 409
        assert "currency cannot change" in response.json()["detail"]


async def test_only_coordinators_change_settings(group: Group) -> None:
    _, member = await group.join()
    other = await make_group(group.env)
    async with Unchanged(group.env, group.group_id):
        assert (
            await group.client.patch(group.url(), json={"order_cutoff_hours": 5}, headers=member)
        ).status_code == 403
        assert (
            await group.client.patch(group.url(), json={"order_cutoff_hours": 5}, headers=other.coordinator)
        ).status_code == 403
        assert (await group.client.patch(group.url(), json={"order_cutoff_hours": 5})).status_code == 401


async def test_members_join_with_role_and_contact_details(group: Group) -> None:
    member_id, _ = await group.join(Role.MEMBER, language="en", name="Alice", email="alice@example.org")
    joined = [e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.member.joined"]
    alice = next(e for e in joined if e["member_id"] == str(member_id))
    assert (
        alice["role"] == "member"
        and alice["name"] == "Alice"
        and alice["email"] == "alice@example.org"
        and alice["language"] == "en"
    )
    # Language defaults to the group's.
    bob_id, _ = await group.join(name="Bob")
    bob = next(e for e in await outbox_rows(group.env, group.group_id) if e.get("member_id") == str(bob_id))
    assert bob["language"] == "fr"
    async with Unchanged(group.env, group.group_id):
        again = await group.client.post(
            group.url("/members"),
            headers=group.coordinator,
            json={"member_id": str(member_id), "name": "Alice", "email": "alice@example.org"},
        )
        assert again.status_code == 409
        bad = await group.client.post(
            group.url("/members"),
            headers=group.coordinator,
            json={"member_id": str(uuid.uuid4()), "name": "X", "email": "not-an-email"},
        )
        assert bad.status_code == 422


async def test_member_updates_are_published(group: Group) -> None:
    member_id, member = await group.join(name="Alice", email="alice@example.org")
    response = await group.client.patch(
        group.url(f"/members/{member_id}"), json={"email": "alice@new.example", "language": "en"}, headers=member
    )
    assert response.status_code == 200, response.text
    updated = [e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.member.updated"]
    assert len(updated) == 1
    assert (
        updated[0]["email"] == "alice@new.example" and updated[0]["language"] == "en" and updated[0]["name"] == "Alice"
    )
    async with Unchanged(group.env, group.group_id):
        # A member cannot promote themself, nor edit someone else.
        assert (
            await group.client.patch(group.url(f"/members/{member_id}"), json={"role": "coordinator"}, headers=member)
        ).status_code == 403
        assert (
            await group.client.patch(group.url(f"/members/{group.coordinator_id}"), json={"name": "X"}, headers=member)
        ).status_code == 403
        # The last coordinator stays one.
        response = await group.client.patch(
            group.url(f"/members/{group.coordinator_id}"), json={"role": "member"}, headers=group.coordinator
        )
        assert response.status_code == 409
    promoted = await group.client.patch(
        group.url(f"/members/{member_id}"), json={"role": "coordinator"}, headers=group.coordinator
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "coordinator"


async def test_only_admins_create_groups_and_coordinators_add_members(group: Group) -> None:
    _, member = await group.join()
    response = await group.client.post("/groups", json={"name": "X", "payment_methods": ["cash"]}, headers=member)
    assert response.status_code == 403
    async with Unchanged(group.env, group.group_id):
        response = await group.client.post(
            group.url("/members"),
            headers=member,
            json={"member_id": str(uuid.uuid4()), "name": "X", "email": "x@example.org"},
        )
        assert response.status_code == 403
    listing = await group.client.get(group.url("/members"), headers=group.coordinator)
    assert listing.status_code == 200 and len(listing.json()) == 2
    stranger = bearer(group.env.settings, uuid.uuid4(), {uuid.uuid4(): Role.COORDINATOR})
    assert (await group.client.get(group.url(), headers=stranger)).status_code == 403
