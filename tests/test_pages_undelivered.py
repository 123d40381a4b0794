"""R6 in a real browser, on the demo group: the coordinator takes off Alice's basket the eggs
the producer could not deliver (one box, then the other, with a reason; more than is left is
refused in words), the basket's figures follow, and Alice's own order shows them struck out
with the reason."""

from __future__ import annotations

from cagette_runtime.devstack import Stack

from .browser import assert_accessible, screenshot, seed_demo, signed_in_page
from .conftest import bearer, client, eventually


async def test_a_coordinator_takes_off_what_was_not_delivered(web_system: Stack, chromium) -> None:
    demo = await seed_demo(web_system)
    group, web_url = demo.group_id, web_system.services["web"].url
    alice, claire = demo.people["alice@example.org"], demo.people["claire@example.org"]
    async with client(web_system, "orders") as orders:
        distributions = (
            await orders.get(f"/groups/{group}/distributions", headers=bearer(claire, coordinator_of=group))
        ).json()
    first = min(distributions, key=lambda d: d["starts_at"])["distribution_id"]
    basket = f"/groups/{group}/distributions/{first}/baskets/{alice}"
    page = await signed_in_page(chromium, web_url, "claire@example.org")

    async def alice_basket_known() -> bool:
        await page.goto(f"{web_url}{basket}")
        return await page.locator("table.lines tbody tr").count() == 2

    await eventually(alice_basket_known)  # payments hears of the order through the broker
    assert await page.inner_text("[data-figure=ordered]") == "21,90\u00a0€"
    eggs = page.locator("table.lines tbody tr", has_text="Œufs (boîte de 6)")
    form = eggs.locator("form.undelivered")

    # More than is left is refused, in words, and kept as typed; nothing changed.
    await form.locator("input[name=quantity]").fill("3")
    await form.locator("input[name=reason]").fill("Poules en grève")
    await form.locator("button").click()
    await page.wait_for_selector(".message.error")
    assert "2" in await page.inner_text(".message.error")
    eggs = page.locator("table.lines tbody tr", has_text="Œufs (boîte de 6)")
    assert await eggs.locator("input[name=quantity]").input_value() == "3"

    # One box of the two.
    await eggs.locator("input[name=quantity]").fill("1")
    await eggs.locator("input[name=reason]").fill("Poules en grève")
    await eggs.locator("form.undelivered button").click()
    await page.wait_for_url("**done=distribution.undelivered_notice**")

    async def ordered_lowered() -> bool:
        await page.goto(f"{web_url}{basket}")
        return await page.inner_text("[data-figure=ordered]") == "18,70\u00a0€"

    await eventually(ordered_lowered)
    removal = await page.inner_text("table.lines p.removal")
    assert "Non livré : 1 (3,20\u00a0€ en moins)" in removal and "Poules en grève" in removal
    await screenshot(page, "coordinator-basket-undelivered")
    await assert_accessible(page)

    # The other box too: the line is struck out, no form left on it.
    eggs = page.locator("table.lines tbody tr", has_text="Œufs (boîte de 6)")
    await eggs.locator("input[name=reason]").fill("Toujours en grève")
    await eggs.locator("form.undelivered button").click()
    await page.wait_for_url("**done=distribution.undelivered_notice**")
    eggs = page.locator("table.lines tbody tr", has_text="Œufs (boîte de 6)")
    assert await eggs.get_attribute("class") == "removed"
    assert await eggs.locator("form.undelivered").count() == 0

    async def due_lowered() -> bool:
        await page.goto(f"{web_url}{basket}")
        return await page.inner_text("[data-figure=ordered]") == "15,50\u00a0€"

    await eventually(due_lowered)
    await screenshot(page, "coordinator-basket-undelivered-all")

    # Alice's order: the eggs struck out, with the reasons; the total is what was delivered.
    member = await signed_in_page(chromium, web_url, "alice@example.org")
    async with client(web_system, "orders") as orders:
        [order] = (await orders.get(f"/groups/{group}/orders", headers=bearer(alice, member_of=group))).json()
    await member.goto(f"{web_url}/groups/{group}/orders/{order['order_id']}")
    row = member.locator("table.basket tbody tr.removed")
    assert await row.count() == 1
    assert await row.locator("del").count() >= 1
    text = await row.inner_text()
    assert "Œufs (boîte de 6)" in text and "Poules en grève" in text and "Toujours en grève" in text
    assert await member.get_attribute("[data-total]", "data-total") == "1550"
    # Her cheque is still to hand over: for what was delivered, with the same reference.
    assert await member.get_attribute("[data-to-pay]", "data-to-pay") == "1550"
    assert "Faites un chèque de 15,50\u00a0€" in await member.inner_text("#how-to-pay")
    await screenshot(member, "member-order-undelivered")
    await assert_accessible(member)
    await member.goto(f"{web_url}/groups/{group}/me")
    assert await member.locator(f"tr[data-order='{order['order_id']}'] del").count() == 1
    await member.context.close()
    await page.context.close()
