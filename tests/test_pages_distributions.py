"""The coordinator's distribution validation pages (R20, B3) in a real browser, on the demo
group: Alice's cheque confirmed for another amount, Bruno's declared transfer confirmed as a
cheque, baskets and then the whole distribution validated (Chloé's unconfirmed cash blocks
hers), the ledger's balances and the takings then saying what was received."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.async_api import expect

from cagette_runtime.devstack import Stack

from .browser import assert_accessible, screenshot, seed_demo, signed_in_page
from .conftest import bearer, client, eventually


async def _chloe_orders_bread_paying_cash(web_system: Stack, group_id, chloe, claire) -> None:
    """A third basket whose declared cash nobody confirms, so one basket cannot be validated."""
    async with client(web_system, "orders") as orders:
        coordinator = bearer(claire, coordinator_of=group_id)
        distributions = (await orders.get(f"/groups/{group_id}/distributions", headers=coordinator)).json()
        first = min(distributions, key=lambda d: d["starts_at"])
        products = []
        for catalog_id in first["catalog_ids"]:
            catalog = (await orders.get(f"/groups/{group_id}/catalogs/{catalog_id}", headers=coordinator)).json()
            products += catalog["products"] if catalog["kind"] == "variable" else []
        bread = next(p for p in products if p["name"] == "Pain de campagne")
        placed = await orders.post(
            f"/groups/{group_id}/orders",
            headers=bearer(chloe, member_of=group_id),
            json={
                "distribution_id": first["distribution_id"],
                "payment_method": "cash",
                "lines": [{"product_id": bread["product_id"], "quantity": "2"}],
            },
        )
        assert placed.status_code == 201, placed.text


async def test_a_coordinator_validates_a_distribution_correcting_an_amount_and_a_method(
    web_system: Stack, chromium
) -> None:
    demo = await seed_demo(web_system)
    group, web_url = demo.group_id, web_system.services["web"].url
    alice, bruno = demo.people["alice@example.org"], demo.people["bruno@example.org"]
    chloe, claire = demo.people["chloe@example.org"], demo.people["claire@example.org"]
    await _chloe_orders_bread_paying_cash(web_system, group, chloe, claire)
    page = await signed_in_page(chromium, web_url, "claire@example.org")

    # The distributions, the next one first, opening its validation page.
    await page.goto(f"{web_url}/groups/{group}/balances")
    await page.click(f"nav a[href='/groups/{group}/distributions']")
    await page.wait_for_url(f"**/groups/{group}/distributions")
    rows = page.locator("table.distributions tbody tr")
    assert await rows.count() == 3
    await screenshot(page, "coordinator-distributions")
    await assert_accessible(page)
    first = await rows.nth(0).get_attribute("data-distribution")
    base = f"/groups/{group}/distributions/{first}"
    assert "Préau de l'école Jean Jaurès" in await rows.nth(0).inner_text()

    async def three_baskets() -> bool:
        await page.goto(f"{web_url}{base}")
        return await page.locator("table.baskets tbody tr").count() == 3

    await eventually(three_baskets)  # payments hears of the orders through the broker
    table = await page.inner_text("table.baskets")
    assert "Alice Dupont" in table and "Bruno Petit" in table and "Chloé Bernard" in table
    assert "21,90\u00a0€" in await page.inner_text(f"tr[data-member='{alice}']")
    await screenshot(page, "coordinator-distribution-baskets")
    await assert_accessible(page)

    # Alice's basket: what she ordered by name, her declared cheque confirmed for 20.00.
    await page.click(f"tr[data-member='{alice}'] a")
    await page.wait_for_url(f"**{base}/baskets/{alice}")
    ordered = await page.inner_text("table.lines")
    assert "Panier de légumes" in ordered and "Œufs (boîte de 6)" in ordered
    assert re.search(r"Œufs \(boîte de 6\)\s+2\s", ordered)
    assert await page.inner_text("[data-figure=pending]") == "21,90\u00a0€"
    await screenshot(page, "coordinator-basket-before")
    await assert_accessible(page)
    cheque = page.locator("fieldset.pending-payment[data-method=cheque]")
    assert "RF" in await cheque.inner_text()
    await cheque.locator("input[name=amount]").fill("20,00")
    await cheque.locator("input[name=label]").fill("chèque 0001234")
    await cheque.locator("form.confirm button").click()
    await page.wait_for_url("**done=distribution.confirmed_notice**")
    assert await page.inner_text("[data-figure=received]") == "20,00\u00a0€"
    assert await page.inner_text("[data-figure=difference]") == "-1,90\u00a0€"
    assert "déclaré 21,90\u00a0€" in await page.inner_text("table.payments")
    await screenshot(page, "coordinator-basket-confirmed")
    await assert_accessible(page)
    await page.click("form.validate-basket button")
    await page.wait_for_url(f"**{base}?done=distribution.basket_validated_notice")
    assert await page.get_attribute(f"tr[data-member='{alice}']", "data-state") == "validated"

    # Only the baskets to validate; Bruno's declared transfer arrived as a cheque.
    await page.click(f"a[href='{base}?show=to_validate']")
    await page.wait_for_url("**show=to_validate")
    assert await page.locator("table.baskets tbody tr").count() == 2
    await page.click(f"tr[data-member='{bruno}'] a")
    await page.wait_for_url(f"**/baskets/{bruno}")
    transfer = page.locator("fieldset.pending-payment[data-method=transfer]")
    # A mistyped amount is refused in French and kept as typed; nothing changed.
    await transfer.locator("input[name=amount]").fill("19,605")
    await transfer.locator("form.confirm button").click()
    await page.wait_for_selector(".message.error")
    assert "décimales" in await page.inner_text(".message.error")
    transfer = page.locator("fieldset.pending-payment[data-method=transfer]")
    assert await transfer.locator("input[name=amount]").input_value() == "19,605"
    await transfer.locator("input[name=amount]").fill("19,60")
    await transfer.locator("select[name=method]").select_option("cheque")
    await transfer.locator("form.confirm button").click()
    await page.wait_for_url("**done=distribution.confirmed_notice**")
    received = await page.inner_text("table.payments")
    assert "Chèque" in received and "19,60\u00a0€" in received
    assert await page.inner_text("[data-figure=difference]") == "0,00\u00a0€"

    # The whole distribution: Bruno's basket is validated, Chloé's is not (her cash is pending).
    await page.goto(f"{web_url}{base}")
    await page.click("button.validate-all")
    await page.wait_for_url("**done=distribution.validated_notice**")
    report = await page.inner_text("section.report")
    assert "Paniers validés maintenant : 1." in report
    blocked = page.locator("ul.blocked li")
    assert await blocked.count() == 1
    assert await blocked.nth(0).get_attribute("data-member") == str(chloe)
    assert (
        "Chloé Bernard" in await blocked.nth(0).inner_text() and "en attente : 1" in await blocked.nth(0).inner_text()
    )
    assert await page.get_attribute(f"tr[data-member='{bruno}']", "data-state") == "validated"
    await screenshot(page, "coordinator-distribution-validated")
    await assert_accessible(page)

    # The ledger: Alice owes the 1.90 her cheque lacked, Bruno is balanced, Chloé owes her bread.
    async def balances_settled() -> bool:
        await page.goto(f"{web_url}/groups/{group}/balances")
        debts = (
            await page.inner_text("table[data-standing=in_debt]")
            if await page.locator("table[data-standing=in_debt]").count()
            else ""
        )
        return "Alice Dupont" in debts and "-1,90\u00a0€" in debts and "Bruno Petit" not in debts

    await eventually(balances_settled)
    assert "Bruno Petit" in await page.inner_text("table[data-standing=balanced]")
    assert "-8,20\u00a0€" in await page.inner_text(f"table[data-standing=in_debt] tr[data-member='{chloe}']")
    await screenshot(page, "coordinator-balances-after-validation")

    # The takings: two cheques, 39.60, Chloé's cash still pending; the CSV says the same.
    await page.goto(f"{web_url}{base}/takings")
    cheques = await page.inner_text("tr[data-section=received][data-method=cheque]")
    assert "2" in cheques and "39,60\u00a0€" in cheques
    assert "0,00\u00a0€" in await page.inner_text("tr[data-section=received][data-method=transfer]")
    assert await page.inner_text("[data-figure=net]") == "39,60\u00a0€"
    assert await page.inner_text("[data-figure=pending]") == "8,20\u00a0€"
    unsettled = await page.inner_text("table.not-settled")
    assert "Alice Dupont" in unsettled and "Chloé Bernard" in unsettled and "Bruno Petit" not in unsettled
    await screenshot(page, "coordinator-takings")
    await assert_accessible(page)
    answer = await page.context.request.get(f"{web_url}{base}/takings.csv")
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    table = {(r["section"], r["key"]): r for r in csv.DictReader(io.StringIO(await answer.text()))}
    assert (table[("received", "cheque")]["count"], table[("received", "cheque")]["amount"]) == ("2", "39.60")
    assert table[("total", "net_received")]["amount"] == "39.60"
    assert table[("partly_paid", str(alice))]["member_name"] == "Alice Dupont"

    # In English, the takings speak English with English amounts.
    await page.goto(f"{web_url}/language?lang=en&back={base}/takings")
    assert "Takings of the distribution" in await page.inner_text("h1")
    assert "£" not in await page.inner_text("main") and "€39.60" in await page.inner_text("[data-figure=net]")
    await screenshot(page, "coordinator-takings-en")

    # A coordinator cannot undo a validation; a platform administrator can.
    await page.goto(f"{web_url}{base}/baskets/{alice}")
    assert await page.locator("form.unvalidate").count() == 0
    admin = await signed_in_page(chromium, web_url, "admin@example.org")
    await admin.goto(f"{web_url}{base}/baskets/{alice}")
    await admin.click("form.unvalidate button")
    await admin.wait_for_url("**done=distribution.unvalidated_notice**")
    assert await admin.get_attribute("[data-basket-state]", "data-basket-state") == "to_validate"
    assert await admin.locator("form.validate-basket").count() == 1
    await admin.context.close()

    # A member is not shown the validation pages.
    member = await signed_in_page(chromium, web_url, "alice@example.org")
    await member.goto(f"{web_url}{base}")
    assert "coordinateur" in await member.inner_text("main")
    await member.context.close()
    await page.context.close()


async def test_times_read_in_the_group_s_time_zone(web_system: Stack, chromium) -> None:
    """A coordinator moves the group to Montreal on the settings page (an unknown zone is refused
    in words, as typed): the distributions then start at Montreal's hour, six hours before Paris's."""
    demo = await seed_demo(web_system)
    group = demo.group_id
    web_url = web_system.services["web"].url
    async with client(web_system, "orders") as orders:
        coordinator = bearer(demo.people["claire@example.org"], coordinator_of=group)
        distributions = (await orders.get(f"/groups/{group}/distributions", headers=coordinator)).json()
    starts_at = datetime.fromisoformat(min(d["starts_at"] for d in distributions))
    paris = starts_at.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M")
    montreal = starts_at.astimezone(ZoneInfo("America/Montreal")).strftime("%H:%M")
    assert paris != montreal
    page = await signed_in_page(chromium, web_url, "claire@example.org")
    await page.goto(f"{web_url}/groups/{group}/distributions")
    assert f", {paris}" in await page.inner_text("main table")

    await page.goto(f"{web_url}/groups/{group}/settings")
    assert await page.input_value("#time-zone") == "Europe/Paris"
    await page.fill("#time-zone", "Mars/Olympus_Mons")
    await page.click("#settings-form button[type=submit]")
    await expect(page.locator("p.message.error")).to_contain_text(
        "« Mars/Olympus_Mons » n'est pas un fuseau horaire connu"
    )
    assert await page.input_value("#time-zone") == "Mars/Olympus_Mons"
    await page.fill("#time-zone", "America/Montreal")
    await page.click("#settings-form button[type=submit]")
    await expect(page.locator("p.message[role=status]")).to_contain_text("réglages sont enregistrés")
    assert await page.input_value("#time-zone") == "America/Montreal"
    await screenshot(page, "coordinator-settings-time-zone")
    await assert_accessible(page)

    await page.goto(f"{web_url}/groups/{group}/distributions")
    listed = await page.inner_text("main table")
    assert f", {montreal}" in listed and f", {paris}" not in listed
    await screenshot(page, "coordinator-distributions-montreal")
    await page.context.close()
