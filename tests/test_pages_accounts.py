"""The coordinator's money pages in a real browser, on the demo group: a member's account (an
opening balance, a payment by hand, a refusal kept as typed), the contracts' cheque grid, the
payment settings and the bulk opening-balance upload with its preview; the balances then show
the right amounts."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
from playwright.async_api import expect

from cagette_runtime.devstack import Stack
from cagette_runtime.testing import KEYED

from .browser import DemoGroup, assert_accessible, screenshot, seed_demo, signed_in_page
from .conftest import bearer, eventually


async def _subscribe(stack: Stack, demo: DemoGroup, emails: list[str]) -> UUID:
    """Members subscribe to the demo's winter contract (once a week at the three distributions)."""
    group = demo.group_id
    coordinator = bearer(demo.people["claire@example.org"], coordinator_of=group)
    async with httpx.AsyncClient(base_url=stack.services["orders"].url, timeout=15, **KEYED) as orders:
        contracts = (await orders.get(f"/groups/{group}/catalogs?kind=subscription", headers=coordinator)).json()
        contract = contracts[0]
        for email in emails:
            answer = await orders.post(
                f"/groups/{group}/contracts/{contract['catalog_id']}/subscriptions",
                headers=bearer(demo.people[email], member_of=group),
                json={"lines": [{"product_id": contract["products"][0]["product_id"], "quantity": "1"}]},
            )
            assert answer.status_code == 201, answer.text
    contract_id = UUID(contract["catalog_id"])

    async def known_to_payments() -> bool:
        async with httpx.AsyncClient(base_url=stack.services["payments"].url, timeout=15, **KEYED) as payments:
            answer = await payments.get(f"/groups/{group}/contracts/{contract_id}/subscriptions", headers=coordinator)
            return answer.status_code == 200 and len(answer.json()["subscriptions"]) == len(emails)

    await eventually(known_to_payments)
    return contract_id


async def _balance(stack: Stack, demo: DemoGroup, email: str) -> dict[str, Any]:
    headers = bearer(demo.people["claire@example.org"], coordinator_of=demo.group_id)
    async with httpx.AsyncClient(base_url=stack.services["ledger"].url, timeout=15, **KEYED) as ledger:
        answer = await ledger.get(f"/groups/{demo.group_id}/members/{demo.people[email]}/balance", headers=headers)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


async def _balance_is(stack: Stack, demo: DemoGroup, email: str, cents: int) -> None:
    async def reached() -> bool:
        return (await _balance(stack, demo, email))["balance"]["amount"] == cents

    await eventually(reached)


async def test_coordinator_records_money_through_the_pages(web_system: Stack, chromium: Any) -> None:
    demo = await seed_demo(web_system)
    await _subscribe(web_system, demo, ["chloe@example.org", "david@example.org"])
    await _balance_is(web_system, demo, "david@example.org", -3600)  # 3 distributions x 12,00 (R19)
    web_url = web_system.services["web"].url
    group = demo.group_id
    page = await signed_in_page(chromium, web_url, "claire@example.org")

    # David's account, from his name on the balances page.
    await page.goto(f"{web_url}/groups/{group}/balances")
    await page.click("a:text('David Moreau')")
    await page.wait_for_url(f"**/groups/{group}/members/{demo.people['david@example.org']}")
    assert "David Moreau doit 36,00\u00a0€ au groupe." in await page.inner_text("#balance-words")
    assert "Contrat légumes d'hiver" in await page.inner_text("table.statement")

    # A mistyped amount: a French message, the form kept as typed, nothing recorded.
    await page.fill("#opening-amount", "12,3x")
    await page.fill("#opening-memo", "Cahier 2025")
    await page.click("#form-opening_balance button[type=submit]")
    await expect(page.locator("p.message.error")).to_contain_text("n'est pas un nombre")
    assert await page.input_value("#opening-amount") == "12,3x"
    assert await page.input_value("#opening-memo") == "Cahier 2025"
    await screenshot(page, "coordinator-account-refused")
    await assert_accessible(page)

    # The opening balance (R15): +25,00 brings David from -36,00 to -11,00.
    await page.fill("#opening-amount", "+25,00")
    await page.click("#form-opening_balance button[type=submit]")
    await expect(page.locator("p.message[role=status]")).to_contain_text("solde d'ouverture est enregistré")
    await _balance_is(web_system, demo, "david@example.org", -1100)
    await page.reload()
    assert "David Moreau doit 11,00\u00a0€ au groupe." in await page.inner_text("#balance-words")
    assert "Solde d'ouverture" in await page.inner_text("table.statement")
    # ... and in his payment history (R15), named and dated like the payments.
    opening_row = await page.inner_text("table.payments tr[data-kind=opening_balance]")
    assert "Reprise de solde" in opening_row and "25,00" in opening_row and "enregistrée" in opening_row
    # Another amount again is refused in words (once per member).
    await page.fill("#opening-amount", "-5")
    await page.click("#form-opening_balance button[type=submit]")
    await expect(page.locator("p.message.error")).to_contain_text("déjà enregistré")

    # Alice paid her basket in cash: her declared cheque stays pending, marked so (R16).
    await page.goto(f"{web_url}/groups/{group}/members/{demo.people['alice@example.org']}")
    assert "en attente" in await page.inner_text("table.statement tr[data-status=pending]")
    await page.select_option("#payment-method", "cash")
    await page.fill("#payment-amount", "21,90")
    await page.fill("#payment-label", "Espèces à la distribution")
    await page.click("#form-payment button[type=submit]")
    await expect(page.locator("p.message[role=status]")).to_contain_text("paiement est enregistré")
    await _balance_is(web_system, demo, "alice@example.org", 0)
    await page.reload()
    assert "Le compte de Alice Dupont est à l'équilibre." in await page.inner_text("#balance-words")
    assert "Espèces" in await page.inner_text("table.payments")
    await screenshot(page, "coordinator-account")
    await assert_accessible(page)

    # The contract's cheques in the grid: two cheques for Chloé, one for David, all at once.
    await page.click("nav a[href$='/contracts']")
    await page.wait_for_url(f"**/groups/{group}/contracts")
    grid = page.locator("form.grid-form")
    chloe = grid.locator("tr", has_text="Chloé Bernard")
    david = grid.locator("tr", has_text="David Moreau")
    await chloe.locator("input[name$='_c0_amount']").fill("18,00")
    await chloe.locator("input[name$='_c0_label']").fill("0012345")
    await chloe.locator("input[name$='_c1_amount']").fill("18")
    await chloe.locator("input[name$='_c1_label']").fill("0012346")
    await david.locator("input[name$='_c0_amount']").fill("11,0x")
    await grid.locator("button[type=submit]").click()
    # One wrong box refuses the grid: the row is marked, everything typed is kept, nothing recorded.
    await expect(page.locator("p.message.error")).to_contain_text("rien n'a été enregistré")
    assert "n'est pas un nombre" in await page.locator("form.grid-form tr.row-error").inner_text()
    assert await chloe.locator("input[name$='_c1_label']").input_value() == "0012346"
    await screenshot(page, "coordinator-contracts-refused")
    await _balance_is(web_system, demo, "chloe@example.org", -3600)
    await david.locator("input[name$='_c0_amount']").fill("11,00")
    await david.locator("input[name$='_c0_label']").fill("7788")
    await grid.locator("button[type=submit]").click()
    await expect(page.locator("p.message[role=status]")).to_contain_text("chèques sont enregistrés")
    await _balance_is(web_system, demo, "chloe@example.org", 0)
    await _balance_is(web_system, demo, "david@example.org", 0)
    await page.reload()
    owed = page.locator("table.subscribers tbody tr")
    # Chloé's subscription is paid; David's still shows 25,00 unpaid on the contract, which his
    # opening balance covers on his account (balanced above).
    assert [await owed.nth(i).locator("[data-owed]").inner_text() for i in range(2)] == ["réglé", "25,00\u00a0€"]
    await screenshot(page, "coordinator-contracts")
    await assert_accessible(page)

    # Payment settings: the money pot with other methods is refused in words, the boxes kept.
    await page.click("nav a[href$='/settings']")
    await page.wait_for_url(f"**/groups/{group}/settings")
    await page.check("input[name=payment_methods][value=money_pot]")
    await page.click("#settings-form button[type=submit]")
    await expect(page.locator("p.message.error")).to_contain_text("cagnotte ne peut pas")
    assert await page.is_checked("input[name=payment_methods][value=money_pot]")
    await page.uncheck("input[name=payment_methods][value=money_pot]")
    await page.uncheck("input[name=payment_methods][value=cash]")
    await page.fill("#cheque-payee", "AMAP des Lilas - trésorerie")
    await page.click("#settings-form button[type=submit]")
    await expect(page.locator("p.message[role=status]")).to_contain_text("réglages sont enregistrés")
    headers = bearer(demo.people["claire@example.org"], coordinator_of=group)
    async with httpx.AsyncClient(base_url=web_system.services["orders"].url, timeout=15, **KEYED) as orders:
        settings = (await orders.get(f"/groups/{group}", headers=headers)).json()
    assert settings["payment_methods"] == ["cheque", "transfer"]
    assert settings["cheque_payee"] == "AMAP des Lilas - trésorerie"
    assert "Non disponible" in await page.inner_text("#card-status")
    await screenshot(page, "coordinator-settings")
    await assert_accessible(page)

    # Bulk opening balances: a bad file lists its errors by line, a good one is previewed by name first.
    bruno, chloe_id = demo.people["bruno@example.org"], demo.people["chloe@example.org"]
    await page.goto(f"{web_url}/groups/{group}/opening-balances")
    csv_file = {"name": "soldes.csv", "mimeType": "text/csv"}
    await page.set_input_files(
        "#opening-file", files=[{**csv_file, "buffer": f"member_id,amount\n{bruno},1.234\n".encode()}]
    )
    await page.click("form[enctype] button[type=submit]")
    await expect(page.locator("ul.file-errors")).to_contain_text("line 2")
    await page.set_input_files(
        "#opening-file",
        files=[{**csv_file, "buffer": f"member_id,amount,memo\n{bruno},5.00,carnet\n{chloe_id},-2.50,\n".encode()}],
    )
    await page.click("form[enctype] button[type=submit]")
    preview = await page.inner_text("table.preview")
    assert "Bruno Petit" in preview and "5,00\u00a0€" in preview and "Chloé Bernard" in preview and "-2,50" in preview
    await screenshot(page, "coordinator-opening-balances-preview")
    await assert_accessible(page)
    await _balance_is(web_system, demo, "chloe@example.org", 0)  # nothing recorded by the preview
    await page.click("#apply")
    await page.wait_for_url(f"**/groups/{group}/balances?done=opening.done")
    await _balance_is(web_system, demo, "chloe@example.org", -250)

    # The balances page now shows everyone where they belong.
    await page.reload()
    balanced = await page.inner_text("table[data-standing=balanced]")
    assert "Alice Dupont" in balanced and "David Moreau" in balanced
    in_debt = await page.inner_text("table[data-standing=in_debt]")
    assert "Chloé Bernard" in in_debt and "-2,50" in in_debt and "Bruno Petit" in in_debt
    await screenshot(page, "coordinator-balances-after")

    # In English: David's account speaks English, with English amounts.
    await page.goto(f"{web_url}/language?lang=en&back=/groups/{group}/members/{demo.people['david@example.org']}")
    assert "David Moreau's account is settled." in await page.inner_text("#balance-words")
    await page.fill("#payment-amount", "12,3x")
    await page.click("#form-payment button[type=submit]")
    await expect(page.locator("p.message.error")).to_contain_text("This amount is not a number")
    await screenshot(page, "coordinator-account-en")
    await page.context.close()
