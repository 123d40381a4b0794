"""The bank statement pages in a real browser, on the demo group: a statement of another
account is refused in words with the form kept; the group's camt.053 confirms Bruno's transfer
by its reference (his balance is settled), Alice's transfer naming her cheque's reference waits
with a suggestion in words and is assigned to that payment, an unknown line is ignored with a
reason; the import is listed, in French and in English."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
from playwright.async_api import expect

from cagette_runtime.devstack import Stack
from cagette_runtime.testing import KEYED

from .browser import DemoGroup, assert_accessible, screenshot, seed_demo, signed_in_page
from .conftest import bearer, eventually
from .test_bank_e2e import camt053_v04
from .test_pages_accounts import _balance_is

OTHER_IBAN = "DE89370400440532013000"


async def _declared(stack: Stack, demo: DemoGroup, email: str, method: str) -> dict[str, Any]:
    """The member's declared payment by this method (the demo's orders declare them through the broker)."""
    headers = bearer(demo.people["claire@example.org"], coordinator_of=demo.group_id)
    path = f"/groups/{demo.group_id}/members/{demo.people[email]}/payments"

    async def found() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=stack.services["payments"].url, timeout=15, **KEYED) as payments:
            listed = (await payments.get(path, headers=headers)).json()
        return next((p for p in listed if p["state"] == "declared" and p["method"] == method), None)

    payment: dict[str, Any] = await eventually(found)
    return payment


def _review_line(page: Any, counterparty: str) -> Any:
    """The line to review whose title names this counterparty (the member lists name everyone)."""
    return page.locator("fieldset.review-line", has=page.locator("legend", has_text=counterparty))


async def test_coordinator_imports_and_reviews_a_statement(web_system: Stack, chromium: Any) -> None:
    demo = await seed_demo(web_system)
    group = demo.group_id
    web_url = web_system.services["web"].url
    bruno = await _declared(web_system, demo, "bruno@example.org", "transfer")
    alice = await _declared(web_system, demo, "alice@example.org", "cheque")
    await _balance_is(web_system, demo, "bruno@example.org", -1960)
    await _balance_is(web_system, demo, "alice@example.org", -2190)
    credits = [
        ("19.60", "Bruno Petit", f"Commande {bruno['reference'].lower()}"),
        ("21.90", "Alice Dupont", f"Panier {alice['reference']}"),
        ("5.00", "Inconnu SARL", "Remboursement frais"),
    ]
    statement = camt053_v04(credits, booked=date(2026, 11, 30))
    xml = {"mimeType": "application/xml"}

    page = await signed_in_page(chromium, web_url, "claire@example.org")
    await page.goto(f"{web_url}/groups/{group}/balances")
    await page.click("nav a[href$='/bank']")
    await page.wait_for_url(f"**/groups/{group}/bank")
    await expect(page.locator("#review-empty")).to_be_visible()

    # Another account's statement: refused in French, the chosen format kept, nothing imported.
    other = camt053_v04(credits, booked=date(2026, 11, 30), iban=OTHER_IBAN)
    await page.set_input_files("#statement-file", files=[{**xml, "name": "releve-autre.xml", "buffer": other}])
    await page.select_option("#statement-format", "camt")
    await page.click("#upload-form button[type=submit]")
    error = page.locator("p.message.error")
    await expect(error).to_contain_text("« releve-autre.xml » est refusé, rien n'a été enregistré")
    await expect(error).to_contain_text(f"celui du compte {OTHER_IBAN}, pas celui du groupe")
    assert await page.input_value("#statement-format") == "camt"
    assert "Aucun relevé importé" in await page.inner_text("main")
    await screenshot(page, "coordinator-bank-refused")
    await assert_accessible(page)

    # The group's statement: Bruno's transfer is confirmed by its reference, two lines wait.
    await page.set_input_files("#statement-file", files=[{**xml, "name": "releve-novembre.xml", "buffer": statement}])
    await page.select_option("#statement-format", "")
    await page.click("#upload-form button[type=submit]")
    await expect(page.locator("p.message[role=status]")).to_contain_text("Le relevé est importé")
    report = page.locator("#import-report")
    figures = {
        name: await report.locator(f"[data-figure={name}]").inner_text()
        for name in ("lines", "matched", "suggestions", "to_review")
    }
    assert figures == {"lines": "3", "matched": "1", "suggestions": "1", "to_review": "2"}
    assert "par Claire Martin" in await report.inner_text()
    matched = await report.locator("tr[data-outcome=matched]").inner_text()
    assert "19,60\u00a0€" in matched and "Bruno Petit" in matched and "rapprochée et confirmée" in matched
    await _balance_is(web_system, demo, "bruno@example.org", 0)

    alice_line = _review_line(page, "Alice Dupont")
    assert "30 nov. 2026" in await alice_line.locator("legend").inner_text()
    assert "21,90\u00a0€" in await alice_line.locator("legend").inner_text()
    suggestion = await alice_line.locator(".suggestion").inner_text()
    assert suggestion == "Suggestion : le paiement de Alice Dupont, 21,90\u00a0€ (Chèque, en attente)."
    assert (
        "arrivé par virement, mais avait été annoncé autrement (moyen annoncé : Chèque)"
        in await alice_line.locator(".line-reason").inner_text()
    )
    unknown = _review_line(page, "Inconnu SARL")
    assert "Pas de référence RF" in await unknown.inner_text()
    # Any line may pay a payment still awaited: Alice's cheque is offered by name for the unknown one.
    offered = await unknown.locator("select[name=target] optgroup").first.inner_text()
    assert f"Alice Dupont, 21,90\u00a0€ (Chèque) {alice['reference']}" in offered
    await screenshot(page, "coordinator-bank-imported")
    await assert_accessible(page)

    # Alice's line to the suggested payment (preselected): her cheque becomes a received transfer.
    selected = await alice_line.locator("select[name=target] option:checked").inner_text()
    assert selected.startswith("Ce paiement : Alice Dupont")
    await alice_line.locator("form.assign button[type=submit]").click()
    await expect(page.locator("p.message[role=status]")).to_contain_text("La ligne est attribuée")
    await _balance_is(web_system, demo, "alice@example.org", 0)

    # The unknown line: ignoring it needs a reason (kept when refused), then it leaves the list.
    unknown = _review_line(page, "Inconnu SARL")
    await unknown.locator("form.ignore button[type=submit]").click()
    await expect(page.locator("p.message.error")).to_contain_text("Dites pourquoi la ligne est ignorée")
    unknown = _review_line(page, "Inconnu SARL")
    await unknown.locator("input[name=reason]").fill("Remboursement de frais bancaires")
    await unknown.locator("form.ignore button[type=submit]").click()
    await expect(page.locator("p.message[role=status]")).to_contain_text("La ligne est ignorée")
    await expect(page.locator("#review-empty")).to_be_visible()
    past = await page.inner_text("table.imports")
    assert "releve-novembre.xml" in past and "Claire Martin" in past
    await screenshot(page, "coordinator-bank-reviewed")
    await assert_accessible(page)

    # The import again, from the list, in English: every line in words.
    await page.goto(f"{web_url}/language?lang=en&back=/groups/{group}/bank")
    await page.click("table.imports a")
    report = page.locator("#import-report")
    await expect(report.locator("tr[data-outcome=ignored]")).to_contain_text("ignored")
    await expect(report.locator("tr[data-outcome=assigned]")).to_contain_text("Alice Dupont")
    assert "€19.60" in await report.locator("tr[data-outcome=matched]").inner_text()
    assert await report.locator("[data-figure=suggestions]").inner_text() == "1"
    await screenshot(page, "coordinator-bank-en")
    await assert_accessible(page)
    await page.context.close()
