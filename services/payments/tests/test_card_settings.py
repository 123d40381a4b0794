"""A group's card readiness is announced (payments.card_settings.changed, through the outbox in the
PUT's transaction) when it is set for the first time or changes, never on a no-op; without the
platform's keys card payments cannot be enabled; a change of the keys is announced at start."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, text

from cagette_payments import card_usecases
from cagette_runtime.tables import outbox_messages
from cagette_runtime.testing import EventSpy

from .cardkit import standin
from .conftest import Group, Payments

KEY = "payments.card_settings.changed"


async def announced(payments: Payments, group: Group) -> list[dict[str, Any]]:
    async with payments.service.database.transaction() as session:
        rows = (
            (
                await session.execute(
                    select(outbox_messages.c.body)
                    .where(outbox_messages.c.routing_key == KEY)
                    .where(text("(body::jsonb ->> 'group_id') = :g").bindparams(g=str(group.group_id)))
                    .order_by(outbox_messages.c.id)
                )
            )
            .scalars()
            .all()
        )
    return [json.loads(body) for body in rows]


async def put(payments: Payments, group: Group, **body: Any):
    return await payments.client.put(
        f"/groups/{group.group_id}/card-settings", json=body, headers=payments.coordinator(group)
    )


async def test_readiness_is_announced_when_set_and_changed_never_on_a_no_op(payments: Payments, spy: EventSpy) -> None:
    group = await payments.new_group()
    response = await put(payments, group, enabled=True, stripe_account=None)
    assert response.status_code == 200, response.text
    assert response.json()["card_payments_ready"] is True
    [first] = await announced(payments, group)
    assert first["card_payments_ready"] is True and first["enabled"] is True and first["provider_configured"] is True
    assert first["uses_connected_account"] is False
    assert "stripe_account" not in first and not any("sk_" in str(v) or "whsec_" in str(v) for v in first.values())
    seen = await spy.wait_for(KEY, group_id=str(group.group_id))
    assert seen[0].body["card_payments_ready"] is True

    # The same settings again: nothing announced.
    outbox_before = await payments.outbox_count()
    again = await put(payments, group, enabled=True, stripe_account=None)
    assert again.status_code == 200
    assert len(await announced(payments, group)) == 1 and await payments.outbox_count() == outbox_before

    # A connected account: announced (paid elsewhere, still ready).
    standin(payments).add_account("acct_1Ready")
    assert (await put(payments, group, enabled=True, stripe_account="acct_1Ready")).status_code == 200
    # Disabled: readiness lost.
    disabled = await put(payments, group, enabled=False, stripe_account="acct_1Ready")
    assert disabled.status_code == 200 and disabled.json()["card_payments_ready"] is False
    events = await announced(payments, group)
    assert [(e["card_payments_ready"], e["uses_connected_account"]) for e in events] == [
        (True, False),
        (True, True),
        (False, True),
    ]
    assert events[-1]["enabled"] is False
    # An unknown account is refused by the provider: nothing stored, nothing announced.
    refused = await put(payments, group, enabled=True, stripe_account="acct_1Nobody")
    assert refused.status_code == 502
    assert len(await announced(payments, group)) == 3


async def test_a_disabled_first_setting_is_announced_not_ready(payments: Payments) -> None:
    group = await payments.new_group()
    assert (await put(payments, group, enabled=False)).status_code == 200
    [event] = await announced(payments, group)
    assert event["card_payments_ready"] is False and event["enabled"] is False


async def test_without_the_platform_keys_card_payments_cannot_be_enabled(
    payments: Payments, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = await payments.new_group()
    provider = payments.service.card_provider
    # The platform's API key is set but not the webhook secret: no payment could ever be confirmed.
    monkeypatch.setattr(provider, "settings", provider.settings.model_copy(update={"stripe_webhook_secret": None}))
    outbox_before = await payments.outbox_count()
    refused = await put(payments, group, enabled=True)
    assert refused.status_code == 409, refused.text
    assert "CAGETTE_STRIPE_WEBHOOK_SECRET" in refused.json()["detail"]
    assert await payments.outbox_count() == outbox_before
    shown = await payments.client.get(f"/groups/{group.group_id}/card-settings", headers=payments.coordinator(group))
    assert shown.json()["enabled"] is False and shown.json()["provider_configured"] is False
    assert shown.json()["card_payments_ready"] is False
    # Turning them off is always possible, and is announced.
    assert (await put(payments, group, enabled=False)).status_code == 200
    assert [e["card_payments_ready"] for e in await announced(payments, group)] == [False]


async def test_a_change_of_the_platform_keys_is_announced_at_start(payments: Payments) -> None:
    """What PaymentsService.start runs: readiness recomputed with the keys of this run."""
    group = await payments.new_group()
    assert (await put(payments, group, enabled=True)).status_code == 200
    async with payments.service.database.transaction() as session:  # the keys were removed: not ready any more
        assert await card_usecases.reannounce_readiness(session, False, group_id=group.group_id) == 1
    async with payments.service.database.transaction() as session:  # still removed: nothing new
        assert await card_usecases.reannounce_readiness(session, False, group_id=group.group_id) == 0
    async with payments.service.database.transaction() as session:  # back: ready again
        assert await card_usecases.reannounce_readiness(session, True, group_id=group.group_id) == 1
    assert [e["card_payments_ready"] for e in await announced(payments, group)] == [True, False, True]
    events = await announced(payments, group)
    assert events[1]["enabled"] is True and events[1]["provider_configured"] is False
