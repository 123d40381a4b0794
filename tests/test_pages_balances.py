"""The coordinator's member balances page (R5) in a real browser, on the demo group."""

from __future__ import annotations

import csv
import io

from cagette_runtime.devstack import Stack

from .browser import assert_accessible, screenshot, seed_demo, signed_in_page


async def test_balances_show_each_member_by_name_in_their_group_with_the_csv(web_system: Stack, chromium) -> None:
    demo = await seed_demo(web_system)
    web_url = web_system.services["web"].url
    page = await signed_in_page(chromium, web_url, "claire@example.org")
    # A coordinator lands on the balances of their group.
    await page.click(f"a[href='/groups/{demo.group_id}']")
    await page.wait_for_url(f"**/groups/{demo.group_id}/balances")
    await screenshot(page, "coordinator-balances")
    await assert_accessible(page)

    debts = page.locator("table[data-standing=in_debt] tbody tr")
    assert await debts.count() == 2
    # Most owed first, names linking to the member's account, amounts in French.
    first = await debts.nth(0).inner_text()
    assert "Alice Dupont" in first and "-21,90\u00a0€" in first
    assert "Bruno Petit" in await debts.nth(1).inner_text()
    alice = demo.people["alice@example.org"]
    assert await page.get_attribute("table[data-standing=in_debt] a >> nth=0", "href") == (
        f"/groups/{demo.group_id}/members/{alice}"
    )
    balanced = await page.inner_text("table[data-standing=balanced]")
    assert "Claire Martin" in balanced and "David Moreau" in balanced

    # Filtered by name; sorted by name.
    await page.fill("input[name=q]", "bru")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**q=bru**")
    assert await page.locator("tbody tr").count() == 1
    assert "Bruno Petit" in await page.inner_text("tbody")

    # The CSV export carries the names.
    answer = await page.context.request.get(f"{web_url}/groups/{demo.group_id}/balances.csv")
    assert answer.status == 200
    rows = list(csv.DictReader(io.StringIO(await answer.text())))
    assert {row["name"] for row in rows} >= {"Alice Dupont", "Bruno Petit", "Claire Martin"}

    # In English, the same page speaks English with English amounts.
    await page.goto(f"{web_url}/language?lang=en&back=/groups/{demo.group_id}/balances")
    assert "Member balances" in await page.inner_text("h1")
    assert "-€21.90" in await page.inner_text("table[data-standing=in_debt]")

    # A member is not shown the page.
    member = await signed_in_page(chromium, web_url, "alice@example.org")
    await member.goto(f"{web_url}/groups/{demo.group_id}/balances")
    assert "coordinateur" in await member.inner_text("main")
    await member.context.close()
    await page.context.close()
