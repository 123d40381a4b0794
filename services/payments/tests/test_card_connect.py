"""Card payments on a group's own Stripe account (Connect): the platform creates the account and
its onboarding link (Account Links) for a coordinator; payments go to the account only while
Stripe says it may take charges with its card_payments capability active, followed from
`account.updated` and `account.application.deauthorized` (orders follows the announced
readiness); one account serves one group; an account event for no group changes nothing."""

from __future__ import annotations

from typing import Any

from .cardkit import applied, awaiting, pay, standin
from .conftest import Group, Payments
from .test_card_settings import announced


async def settings_of(payments: Payments, group: Group) -> dict[str, Any]:
    answer = await payments.client.get(f"/groups/{group.group_id}/card-settings", headers=payments.coordinator(group))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def onboard(payments: Payments, group: Group) -> dict[str, Any]:
    answer = await payments.client.post(
        f"/groups/{group.group_id}/card-settings/onboarding", headers=payments.coordinator(group)
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_onboarding_creates_one_account_and_payments_follow_what_stripe_says(payments: Payments) -> None:
    group = await payments.new_group(2)
    first = await onboard(payments, group)
    account = first["stripe_account"]
    assert account.startswith("acct_") and first["url"].startswith("https://connect.stripe.test/setup/")
    # The stand-in checked the creation against the pinned library's parameter types.
    created = [seen for seen in standin(payments).requests if seen.path == "/v1/accounts" and seen.method == "POST"]
    assert len(created) == 1
    # Not onboarded yet: enabled, not ready, and the coordinator reads why.
    before = await settings_of(payments, group)
    assert before["stripe_account"] == account and before["enabled"] is True
    assert before["card_payments_ready"] is False and "cannot take charges" in before["account_problem"]
    # A second call: the same account, a new link (links are single use).
    again = await onboard(payments, group)
    assert again["stripe_account"] == account and again["url"] != first["url"]
    assert len([s for s in standin(payments).requests if s.path == "/v1/accounts" and s.method == "POST"]) == 1

    # Stripe says the account is onboarded: ready, announced.
    onboarded = standin(payments).set_account(account, charges_enabled=True)
    await applied(payments, standin(payments).event("account.updated", onboarded, account=account))
    ready = await settings_of(payments, group)
    assert ready["card_payments_ready"] is True and ready["account_problem"] is None
    member = group.members[0]
    due = await awaiting(payments, group, member)
    assert (await pay(payments, group, member, due.order_id)).status_code == 201

    # Stripe restricts the account: not ready any more, announced; a new card payment is refused.
    restricted = standin(payments).set_account(account, charges_enabled=False)
    await applied(payments, standin(payments).event("account.updated", restricted, account=account))
    assert (await settings_of(payments, group))["card_payments_ready"] is False
    other = await awaiting(payments, group, group.members[1])
    refused = await pay(payments, group, group.members[1], other.order_id)
    assert refused.status_code == 409 and "cannot take charges" in refused.json()["detail"]
    # The same restriction told again: nothing more announced.
    await applied(payments, standin(payments).event("account.updated", restricted, account=account))
    told = [
        (e["card_payments_ready"], e["uses_connected_account"], e["account_problem"], e["account_change"])
        for e in await announced(payments, group)
    ]
    assert told == [
        (False, True, "charges_disabled", None),  # a first onboarding: nothing stopped
        (True, True, None, "became_usable"),
        (False, True, "charges_disabled", "became_unusable"),
    ]
    settings_page = f"http://127.0.0.1:8005/groups/{group.group_id}/settings"
    assert {e["settings_url"] for e in await announced(payments, group)} == {settings_page}


async def test_the_coordinators_are_told_once_when_the_account_stops_and_once_when_it_works_again(
    payments: Payments,
) -> None:
    """A problem following another one while the account is unusable is announced (full state)
    but tells the coordinators nothing; a coordinator disabling card payments tells nothing."""
    group = await payments.new_group(1)
    account = (await onboard(payments, group))["stripe_account"]
    kit = standin(payments)
    await applied(
        payments, kit.event("account.updated", kit.set_account(account, charges_enabled=True), account=account)
    )
    inactive = kit.set_account(account, charges_enabled=True, card_payments="inactive")
    await applied(payments, kit.event("account.updated", inactive, account=account))
    await applied(payments, kit.event("account.updated", inactive, account=account))
    restricted = kit.set_account(account, charges_enabled=False, card_payments="inactive")
    await applied(payments, kit.event("account.updated", restricted, account=account))
    await applied(
        payments, kit.event("account.updated", kit.set_account(account, charges_enabled=True), account=account)
    )
    disabled = await payments.client.put(
        f"/groups/{group.group_id}/card-settings",
        json={"enabled": False, "stripe_account": account},
        headers=payments.coordinator(group),
    )
    assert disabled.status_code == 200, disabled.text
    told = [
        (e["card_payments_ready"], e["account_problem"], e["account_change"]) for e in await announced(payments, group)
    ]
    assert told == [
        (False, "charges_disabled", None),
        (True, None, "became_usable"),
        (False, "card_payments_inactive", "became_unusable"),
        (False, "charges_disabled", None),
        (True, None, "became_usable"),
        (False, None, None),  # the coordinator's own choice
    ]


async def test_charges_enabled_without_the_card_capability_is_not_enough(payments: Payments) -> None:
    group = await payments.new_group(1)
    account = (await onboard(payments, group))["stripe_account"]
    pending = standin(payments).set_account(account, charges_enabled=True, card_payments="pending")
    await applied(payments, standin(payments).event("account.updated", pending, account=account))
    found = await settings_of(payments, group)
    assert found["card_payments_ready"] is False and "capability" in found["account_problem"]


async def test_a_deauthorized_account_stops_card_payments(payments: Payments) -> None:
    group = await payments.new_group(1)
    account = "acct_1Deauthorized"
    standin(payments).add_account(account)
    put = await payments.client.put(
        f"/groups/{group.group_id}/card-settings",
        json={"enabled": True, "stripe_account": account},
        headers=payments.coordinator(group),
    )
    assert put.status_code == 200 and put.json()["card_payments_ready"] is True, put.text
    application = {"id": "ca_platform", "object": "application", "name": "Cagette"}
    await applied(payments, standin(payments).event("account.application.deauthorized", application, account=account))
    found = await settings_of(payments, group)
    assert found["card_payments_ready"] is False and "no longer authorizes" in found["account_problem"]
    last = (await announced(payments, group))[-1]
    assert (last["account_problem"], last["account_change"]) == ("deauthorized", "became_unusable")


async def test_one_account_serves_one_group(payments: Payments) -> None:
    first, second = await payments.new_group(1), await payments.new_group(1)
    standin(payments).add_account("acct_1Shared")
    body = {"enabled": True, "stripe_account": "acct_1Shared"}
    ok = await payments.client.put(
        f"/groups/{first.group_id}/card-settings", json=body, headers=payments.coordinator(first)
    )
    assert ok.status_code == 200, ok.text
    taken = await payments.client.put(
        f"/groups/{second.group_id}/card-settings", json=body, headers=payments.coordinator(second)
    )
    assert taken.status_code == 409 and "another group" in taken.json()["detail"]
    assert (await settings_of(payments, second))["stripe_account"] is None


async def test_an_event_for_an_account_no_group_uses_changes_nothing(payments: Payments) -> None:
    stranger = standin(payments).add_account("acct_1Stranger")
    await applied(payments, standin(payments).event("account.updated", stranger, account="acct_1Stranger"), "ignored")
