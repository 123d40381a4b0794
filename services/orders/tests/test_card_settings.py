"""The group's card readiness follows the payments service (payments.card_settings.changed on the
real broker): `card_payments_configured` is set by the event, never by a coordinator here; a change
publishes GroupSettingsChanged (full state) once; readiness lost removes card from the methods or,
when card is the only method, keeps it and refuses card orders with nothing recorded."""

from __future__ import annotations

import uuid
from datetime import timedelta

from cagette_contracts import CardSettingsChanged
from cagette_orders import handlers
from cagette_runtime.testing import drain_queue

from .conftest import (
    Group,
    OrdersEnv,
    Unchanged,
    bearer,
    card_ready,
    card_settings,
    deliver,
    make_card_group,
    outbox_rows,
    publish,
)


async def settings_changes(group: Group) -> list[dict]:
    return [
        e for e in await outbox_rows(group.env, group.group_id) if e["routing_key"] == "orders.group.settings_changed"
    ]


async def group_now(group: Group) -> dict:
    response = await group.client.get(group.url(), headers=group.coordinator)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_event_sets_the_flag_and_publishes_the_settings_once(group: Group) -> None:
    assert (await group_now(group))["card_payments_configured"] is False
    event = await card_ready(group)
    body = await group_now(group)
    assert body["card_payments_configured"] is True
    assert body["payment_methods"] == [
        "cheque",
        "cash",
        "transfer",
        "on_the_spot",
    ]  # offering card stays the coordinator's choice
    changes = await settings_changes(group)
    assert len(changes) == 2  # creation, then this change
    assert changes[-1]["card_payments_configured"] is True
    assert changes[-1]["cheque_payee"] == "Les paniers" and changes[-1]["currency"] == "EUR"  # full state
    assert changes[-1]["correlation_id"] == event.correlation_id  # follows the coordinator's action on payments
    await group.env.spy.wait_for(
        "orders.group.settings_changed", group_id=str(group.group_id), card_payments_configured=True
    )

    # The same event again (a redelivery), and a new announcement of the same readiness: no change, nothing published.
    await publish(group.env, event)
    await card_ready(group, uses_connected_account=True)
    assert await group_now(group) == body
    assert len(await settings_changes(group)) == 2

    # Now card may be offered.
    response = await group.settings(payment_methods=["cheque", "card"])
    assert response.status_code == 200, response.text
    assert response.json()["payment_methods"] == ["cheque", "card"]


async def test_readiness_lost_removes_card_from_the_methods(env: OrdersEnv) -> None:
    group = await make_card_group(env, ["cheque", "card"])
    _, member = await group.join()
    before = len(await settings_changes(group))
    await card_ready(group, ready=False)
    body = await group_now(group)
    assert body["card_payments_configured"] is False and body["payment_methods"] == ["cheque"]
    changes = await settings_changes(group)
    assert len(changes) == before + 1
    assert changes[-1]["payment_methods"] == ["cheque"] and changes[-1]["card_payments_configured"] is False
    async with Unchanged(env, group.group_id):
        refused = await group.order(member, [(group.bread, "1")], method="card")
        assert refused.status_code == 422, refused.text
        assert "does not offer card" in refused.json()["detail"]
        again = await group.settings(payment_methods=["cheque", "card"])  # cannot be offered again until ready
        assert again.status_code == 422 and "card payments are configured" in again.json()["detail"]
    assert (await group.order(member, [(group.bread, "1")], method="cheque")).status_code == 201


async def test_readiness_lost_with_card_alone_keeps_it_and_refuses_card_orders(env: OrdersEnv) -> None:
    group = await make_card_group(env)
    _, alice = await group.join()
    _, bob = await group.join()
    placed = await group.order(alice, [(group.bread, "2")], method="card")
    assert placed.status_code == 201 and placed.json()["status"] == "awaiting_payment"
    before = len(await settings_changes(group))

    await card_ready(group, ready=False)
    body = await group_now(group)
    assert body["card_payments_configured"] is False and body["payment_methods"] == [
        "card"
    ]  # payments on need a method
    assert len(await settings_changes(group)) == before + 1
    async with Unchanged(env, group.group_id):
        refused = await group.order(bob, [(group.bread, "1")], method="card")
        assert refused.status_code == 409, refused.text
        assert "card payments are not available in this group right now" in refused.json()["detail"]
        changed = await group.client.put(
            group.url(f"/orders/{placed.json()['order_id']}"),
            headers=alice,
            json={"lines": [{"product_id": group.bread, "quantity": "2"}]},
        )
        assert changed.status_code == 409  # the order waits for its card payment (unchanged rule)
        more = await group.settings(payment_methods=["card", "cash"])
        assert more.status_code == 422 and "card payments are configured" in more.json()["detail"]
    # Other settings can still change with card kept; and card can be replaced.
    assert (await group.settings(order_cutoff_hours=12)).status_code == 200
    # Card is back: card orders are accepted again.
    await card_ready(group)
    assert (await group_now(group))["card_payments_configured"] is True
    accepted = await group.order(bob, [(group.bread, "1")], method="card")
    assert accepted.status_code == 201, accepted.text


async def test_an_older_announcement_delivered_late_changes_nothing(group: Group) -> None:
    newer = await card_ready(group)
    older = card_settings(group, ready=False)
    older = CardSettingsChanged.model_validate(
        older.model_dump() | {"occurred_at": newer.occurred_at - timedelta(seconds=5)}
    )
    async with Unchanged(group.env, group.group_id):
        await deliver(group.env, older)
    assert (await group_now(group))["card_payments_configured"] is True


async def test_the_flag_is_read_only(group: Group) -> None:
    async with Unchanged(group.env, group.group_id):
        refused = await group.settings(card_payments_configured=True, payment_methods=["card"])
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert "read-only" in detail and "card settings on the payments service" in detail
        admin = bearer(group.env.settings, uuid.uuid4(), admin=True)
        created = await group.client.post(
            "/groups",
            headers=admin,
            json={
                "name": "Autre",
                "currency": "EUR",
                "payment_methods": ["on_the_spot"],
                "card_payments_configured": True,
            },
        )
        assert created.status_code == 422 and "read-only" in created.json()["detail"]
    # Sending back the current value (a client round-tripping the whole object) is no change.
    same = await group.settings(card_payments_configured=False, order_cutoff_hours=6)
    assert same.status_code == 200, same.text
    assert same.json()["card_payments_configured"] is False and same.json()["order_cutoff_hours"] == 6


async def test_an_announcement_for_an_unknown_group_is_parked(env: OrdersEnv) -> None:
    stray = CardSettingsChanged(group_id=uuid.uuid4(), card_payments_ready=True, enabled=True, provider_configured=True)
    await publish(env, stray)
    parked = await drain_queue(env.amqp_url, f"{handlers.QUEUE}.parking", expected=1)
    assert any(
        m.message_id == str(stray.event_id) and "no group" in str((m.headers or {}).get("x-parking-reason"))
        for m in parked
    )
