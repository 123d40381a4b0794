"""Distribution validation (R20, B3): confirm / cancel pending payments with corrections, extra
payments, overpayment refunds, basket and distribution validation, and the admin-only undo."""

from __future__ import annotations

from uuid import UUID, uuid4

from cagette_contracts import PaymentMethod

from .conftest import Group, Payments, line


def eur(cents: int) -> dict:
    return {"amount": cents, "currency": "EUR"}


def basket_url(group: Group, distribution: UUID, member: UUID, action: str = "") -> str:
    return f"/groups/{group.group_id}/distributions/{distribution}/baskets/{member}" + (f"/{action}" if action else "")


async def pending_payment(payments: Payments, group: Group, member: UUID) -> dict:
    [payment] = [p for p in await payments.member_payments(group, member) if p["state"] == "declared"]
    return payment


async def test_cheque_confirmed_with_a_corrected_amount_then_basket_validated(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    await payments.order(group, member, distribution, PaymentMethod.CHEQUE, line("Cheese", 1250, "2"))  # 25.00
    declared = await pending_payment(payments, group, member)

    response = await payments.client.post(
        f"/groups/{group.group_id}/payments/{declared['payment_id']}/confirm",
        json={"amount": eur(2400), "label": "cheque 0001234", "note": "cheque made out for 24.00"},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 200, response.text
    confirmed = response.json()
    assert (
        confirmed["state"] == "received"
        and confirmed["amount"] == eur(2400)
        and confirmed["declared_amount"] == eur(2500)
    )
    assert confirmed["label"] == "cheque 0001234"
    created, change = confirmed["transitions"]
    assert (created["to"], change["from"], change["to"]) == ("declared", "declared", "received")
    assert (change["amount_before"], change["amount_after"]) == (eur(2500), eur(2400))
    assert change["by"] == str(group.coordinator) and change["note"] == "cheque made out for 24.00"

    [received] = await spy.wait_for("payments.payment.received", payment_id=declared["payment_id"])
    assert received.body["amount"] == eur(2400) and received.body["declared_amount"] == eur(2500)
    assert received.body["reference"] == declared["reference"] and received.body["recorded_by"] == str(
        group.coordinator
    )

    basket = (
        await payments.client.get(basket_url(group, distribution, member), headers=payments.coordinator(group))
    ).json()
    assert basket["standing"] == "partly_paid" and basket["missing"] == eur(100) and basket["pending"] == eur(0)

    response = await payments.client.post(
        basket_url(group, distribution, member, "validate"), headers=payments.coordinator(group)
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "validated" and response.json()["history"][0]["difference"] == eur(-100)
    [validated] = await spy.wait_for("payments.basket.validated", member_id=str(member))
    assert validated.body["distribution_id"] == str(distribution) and validated.body["validated_by"] == str(
        group.coordinator
    )


async def test_validation_needs_no_pending_payment_and_cancel_unblocks_it(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    await payments.order(group, member, distribution, PaymentMethod.TRANSFER)
    declared = await pending_payment(payments, group, member)
    before = await payments.outbox_count()
    response = await payments.client.post(
        basket_url(group, distribution, member, "validate"), headers=payments.coordinator(group)
    )
    assert response.status_code == 409
    assert response.json()["context"]["pending_payment_ids"] == [declared["payment_id"]]
    assert await payments.outbox_count() == before

    response = await payments.client.post(
        f"/groups/{group.group_id}/payments/{declared['payment_id']}/cancel",
        json={"reason": "the transfer never came"},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    [cancelled] = await spy.wait_for("payments.payment.cancelled", payment_id=declared["payment_id"])
    assert cancelled.body["reason"] == "the transfer never came" and cancelled.body["amount"] == eur(700)

    # an extra payment in cash settles it, then the basket validates
    response = await payments.client.post(
        basket_url(group, distribution, member, "payments"),
        json={"method": "cash", "amount": eur(700)},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 201, response.text
    assert response.json()["standing"] == "settled"
    response = await payments.client.post(
        basket_url(group, distribution, member, "validate"), headers=payments.coordinator(group)
    )
    assert response.status_code == 200


async def test_on_the_spot_payment_is_confirmed_with_the_actual_method(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    await payments.order(group, member, distribution, PaymentMethod.ON_THE_SPOT)
    declared = await pending_payment(payments, group, member)
    url = f"/groups/{group.group_id}/payments/{declared['payment_id']}/confirm"
    response = await payments.client.post(url, json={}, headers=payments.coordinator(group))
    assert response.status_code == 422 and "method actually used" in response.json()["detail"]
    response = await payments.client.post(url, json={"method": "card_terminal"}, headers=payments.coordinator(group))
    assert response.status_code == 200 and response.json()["method"] == "card_terminal"
    [received] = await spy.wait_for("payments.payment.received", payment_id=declared["payment_id"])
    assert received.body["method"] == "card" and received.body["card_terminal"] is True


async def test_overpayment_refund_is_bounded_by_the_overpayment(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    await payments.order(group, member, distribution, PaymentMethod.CASH)  # 7.00
    declared = await pending_payment(payments, group, member)
    await payments.client.post(
        f"/groups/{group.group_id}/payments/{declared['payment_id']}/confirm",
        json={"amount": eur(1000)},
        headers=payments.coordinator(group),
    )
    before = await payments.outbox_count()
    response = await payments.client.post(
        basket_url(group, distribution, member, "refunds"),
        json={"method": "cash", "amount": eur(301)},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 422 and "overpaid by 3.00 EUR" in response.json()["detail"]
    assert await payments.outbox_count() == before
    response = await payments.client.post(
        basket_url(group, distribution, member, "refunds"),
        json={"method": "cash", "amount": eur(300), "reason": "change given back"},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 201, response.text
    basket = response.json()
    assert basket["standing"] == "settled" and basket["received"] == eur(700)
    refund = next(p for p in basket["payments"] if p["kind"] == "refund")
    assert refund["amount"] == eur(-300) and refund["reason"] == "change given back"
    [refunded] = await spy.wait_for("payments.payment.refunded", refund_id=refund["payment_id"])
    assert refunded.body["amount"] == eur(300) and refunded.body["reason"] == "change given back"


async def test_confirm_all_then_validate_records_each_confirmation(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    order = await payments.order(group, member, distribution, PaymentMethod.CHEQUE)
    amendment = await payments.amend(group, order)
    url = basket_url(group, distribution, member, "confirm-all-and-validate")
    response = await payments.client.post(url, headers=payments.coordinator(group))
    assert response.status_code == 200, response.text
    basket = response.json()
    assert basket["state"] == "validated" and basket["standing"] == "settled" and basket["pending_payments"] == 0
    assert all([t["to"] for t in p["transitions"]] == ["declared", "received"] for p in basket["payments"])
    assert len(basket["payments"]) == 2
    await spy.wait_for("payments.payment.received", order_id=str(order.order_id), amendment_id=None)
    await spy.wait_for("payments.payment.received", amendment_id=str(amendment.amendment_id))
    await spy.wait_for("payments.basket.validated", member_id=str(member))
    before = await payments.outbox_count()
    again = await payments.client.post(url, headers=payments.coordinator(group))
    assert again.status_code == 409 and "already validated" in again.json()["detail"]
    again = await payments.client.post(
        basket_url(group, distribution, member, "validate"), headers=payments.coordinator(group)
    )
    assert again.status_code == 409
    assert await payments.outbox_count() == before


async def test_confirm_all_with_an_on_the_spot_payment_needs_its_method_and_changes_nothing_without(
    payments: Payments,
) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    await payments.order(group, member, distribution, PaymentMethod.ON_THE_SPOT)
    url = basket_url(group, distribution, member, "confirm-all-and-validate")
    before = await payments.outbox_count()
    response = await payments.client.post(url, headers=payments.coordinator(group))
    assert response.status_code == 422
    assert (await pending_payment(payments, group, member))["state"] == "declared"
    assert await payments.outbox_count() == before
    response = await payments.client.post(url, json={"on_the_spot_method": "cash"}, headers=payments.coordinator(group))
    assert response.status_code == 200 and response.json()["payments"][0]["method"] == "cash"


async def test_validate_distribution_reports_the_baskets_it_cannot_validate(payments: Payments, spy) -> None:
    group = await payments.new_group(3)
    distribution = uuid4()
    ready, blocked, done = group.members
    await payments.order(group, ready, distribution, PaymentMethod.MONEY_POT)
    await payments.order(group, blocked, distribution, PaymentMethod.CHEQUE)
    await payments.order(group, done, distribution, PaymentMethod.MONEY_POT)
    await payments.client.post(basket_url(group, distribution, done, "validate"), headers=payments.coordinator(group))
    response = await payments.client.post(
        f"/groups/{group.group_id}/distributions/{distribution}/validate", headers=payments.coordinator(group)
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["validated"] == [str(ready)] and report["already_validated"] == [str(done)]
    [not_validated] = report["not_validated"]
    assert not_validated["member_id"] == str(blocked) and len(not_validated["pending_payment_ids"]) == 1
    await spy.wait_for("payments.basket.validated", member_id=str(ready))
    listing = (
        await payments.client.get(
            f"/groups/{group.group_id}/distributions/{distribution}/baskets", headers=payments.coordinator(group)
        )
    ).json()
    assert (listing["validated"], listing["to_validate"]) == (2, 1)


async def test_undo_is_for_platform_admins_and_leaves_payments_untouched(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member, distribution = group.members[0], uuid4()
    await payments.order(group, member, distribution, PaymentMethod.CHEQUE)
    await payments.client.post(
        basket_url(group, distribution, member, "confirm-all-and-validate"), headers=payments.coordinator(group)
    )
    payments_before = await payments.member_payments(group, member)
    before = await payments.outbox_count()
    url = basket_url(group, distribution, member, "unvalidate")
    response = await payments.client.post(url, headers=payments.coordinator(group))
    assert response.status_code == 403
    assert await payments.outbox_count() == before
    response = await payments.client.post(url, headers=payments.admin())
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "to_validate"
    assert [h["action"] for h in response.json()["history"]] == ["validated", "unvalidated"]
    [undone] = await spy.wait_for("payments.basket.unvalidated", member_id=str(member))
    assert undone.body["distribution_id"] == str(distribution)
    assert await payments.member_payments(group, member) == payments_before
    assert (await payments.client.post(url, headers=payments.admin())).status_code == 409


async def test_a_received_payment_is_corrected_by_a_reversing_payment(payments: Payments, spy) -> None:
    group = await payments.new_group()
    member = group.members[0]
    response = await payments.client.post(
        f"/groups/{group.group_id}/members/{member}/payments",
        json={"method": "cheque", "amount": eur(4500), "label": "n° 77"},
        headers=payments.coordinator(group),
    )
    original = response.json()
    response = await payments.client.post(
        f"/groups/{group.group_id}/payments/{original['payment_id']}/reverse",
        json={"reason": "entered on the wrong member"},
        headers=payments.coordinator(group),
    )
    assert response.status_code == 201, response.text
    reversal = response.json()
    assert (
        reversal["kind"] == "refund"
        and reversal["amount"] == eur(-4500)
        and reversal["reverses_payment_id"] == original["payment_id"]
    )
    # A correction, not a refund: its own event (the ledger reverses the payment's transaction,
    # the member gets no refund email), and no payments.payment.refunded.
    [event] = await spy.wait_for("payments.payment.reversed", reversal_id=reversal["payment_id"])
    assert event.body["payment_id"] == original["payment_id"] and event.body["amount"] == eur(4500)
    assert event.body["reason"] == "entered on the wrong member" and event.body["method"] == "cheque"
    assert spy.matching("payments.payment.refunded", member_id=str(member)) == []
    listed = {p["payment_id"]: p for p in await payments.member_payments(group, member)}
    assert listed[original["payment_id"]]["state"] == "received" and listed[original["payment_id"]]["amount"] == eur(
        4500
    )
    again = await payments.client.post(
        f"/groups/{group.group_id}/payments/{original['payment_id']}/reverse",
        json={"reason": "twice"},
        headers=payments.coordinator(group),
    )
    assert again.status_code == 409


async def test_find_a_payment_by_reference_catches_typos(payments: Payments) -> None:
    group = await payments.new_group()
    await payments.order(group, group.members[0], uuid4(), PaymentMethod.CHEQUE)
    declared = await pending_payment(payments, group, group.members[0])
    reference = declared["reference"]
    url = f"/groups/{group.group_id}/payments"
    found = await payments.client.get(url, params={"reference": reference.lower()}, headers=payments.coordinator(group))
    assert found.status_code == 200 and found.json()["payment_id"] == declared["payment_id"]
    last = reference[-1]
    typo = reference[:-1] + ("0" if last != "0" else "1")
    response = await payments.client.get(url, params={"reference": typo}, headers=payments.coordinator(group))
    assert response.status_code == 422 and "typo" in response.json()["detail"]
    other = await payments.new_group()
    response = await payments.client.get(
        f"/groups/{other.group_id}/payments", params={"reference": reference}, headers=payments.coordinator(other)
    )
    assert response.status_code == 404
