"""The member's pages in a real browser, on the demo group: ordering for a distribution and
paying by cheque (payee and reference) or by transfer (IBAN, reference and an EPC QR code that
decodes), adding to an order (the amount owed grows, R6), My account with the balance in words
in French and English and the pending payments marked (R4, R16)."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
from PIL import Image
from pyzbar import pyzbar

from cagette_runtime.devstack import Stack
from cagette_runtime.testing import KEYED

from .browser import assert_accessible, screenshot, seed_demo, signed_in_page
from .conftest import bearer, eventually


async def product_ids(page: Any) -> dict[str, str]:
    """Product names -> ids, as the order form shows them."""
    rows = page.locator("table.products tbody tr")
    found = {}
    for index in range(await rows.count()):
        row = rows.nth(index)
        name = (await row.locator("th").inner_text()).split(" Ferme")[0].strip()
        found[name] = str(await row.get_attribute("data-product"))
    return found


async def open_order_form(page: Any, web_url: str, group_id: Any) -> dict[str, str]:
    await page.goto(f"{web_url}/groups/{group_id}/order")
    await page.click("form.choose-distribution button[type=submit]")
    await page.wait_for_selector("table.products")
    return await product_ids(page)


async def ledger_balance(stack: Stack, group_id: Any, member_id: Any) -> int:
    async with httpx.AsyncClient(base_url=stack.services["ledger"].url, timeout=10, **KEYED) as ledger:
        answer = await ledger.get(
            f"/groups/{group_id}/members/{member_id}/balance", headers=bearer(member_id, member_of=group_id)
        )
        return int(answer.json()["balance"]["amount"])


async def test_chloe_orders_and_pays_by_cheque(web_system: Stack, chromium: Any) -> None:
    demo = await seed_demo(web_system)
    web_url = web_system.services["web"].url
    page = await signed_in_page(chromium, web_url, "chloe@example.org")
    await page.goto(f"{web_url}/groups/{demo.group_id}/order")
    assert "Préau de l'école Jean Jaurès" in await page.inner_text("form.choose-distribution")
    await screenshot(page, "member-order-distributions")
    products = await open_order_form(page, web_url, demo.group_id)
    await screenshot(page, "member-order-form")
    await assert_accessible(page)

    # Mistakes are shown on the page with the form as typed: eggs by the piece, Arabic-Indic digits.
    await page.fill(f"#q-{products['Œufs (boîte de 6)']}", "1,5")
    await page.fill(f"#q-{products['Pommes']}", "١")
    await page.click("form.order-form button[type=submit]")
    await page.wait_for_selector("p.message.error")
    assert await page.input_value(f"#q-{products['Œufs (boîte de 6)']}") == "1,5"
    assert "à l'unité" in await page.inner_text(f"tr[data-product='{products['Œufs (boîte de 6)']}']")
    assert "Écrivez un nombre" in await page.inner_text(f"tr[data-product='{products['Pommes']}']")
    await assert_accessible(page)

    # R8: no method, no order (the basket stays as typed).
    await page.fill(f"#q-{products['Œufs (boîte de 6)']}", "")
    await page.fill(f"#q-{products['Panier de légumes']}", "1")
    await page.fill(f"#q-{products['Pommes']}", "1,5")  # by weight: decimals allowed (1.5 x 2.80 = 4.20)
    await page.click("form.order-form button[type=submit]")
    await page.wait_for_selector("p.message.error:has-text('sans moyen de paiement')")
    assert await page.input_value(f"#q-{products['Pommes']}") == "1,5"
    await screenshot(page, "member-order-no-method")

    await page.check("#m-cheque")
    await page.click("form.order-form button[type=submit]")
    await page.wait_for_url(re.compile(r"/orders/[0-9a-f-]+\?done=order.placed"))
    # The reference comes from payments once it has heard of the order: the page looks again by itself.
    await page.wait_for_selector("#how-to-pay [data-field=reference]", timeout=20000)
    assert await page.inner_text("#how-to-pay [data-field=payee]") == "AMAP des Lilas"
    reference = await page.inner_text("#how-to-pay [data-field=reference]")
    assert re.fullmatch(r"RF\d\d( \d{4}){3}", reference), reference
    assert "19,70\u00a0€" in await page.inner_text("#how-to-pay")
    await screenshot(page, "member-pay-cheque")
    await assert_accessible(page)

    # My account: she owes the order; the cheque is listed as pending and not counted (R16).
    chloe = demo.people["chloe@example.org"]
    await eventually(lambda: _balance_is(web_system, demo.group_id, chloe, -1970))
    await page.goto(f"{web_url}/groups/{demo.group_id}/me")
    assert "Vous devez 19,70\u00a0€" in await page.inner_text(".standing")
    pending = page.locator("table.statement tr[data-status=pending]")
    await eventually(lambda: _reload_until(page, pending))
    assert "en attente" in await pending.first.inner_text()
    await page.context.close()


async def _balance_is(stack: Stack, group_id: Any, member_id: Any, amount: int) -> bool:
    return await ledger_balance(stack, group_id, member_id) == amount


async def _reload_until(page: Any, locator: Any) -> bool:
    if await locator.count():
        return True
    await page.reload()
    return bool(await locator.count())


async def test_david_orders_by_transfer_and_scans_the_qr_code(web_system: Stack, chromium: Any) -> None:
    demo = await seed_demo(web_system)
    web_url = web_system.services["web"].url
    page = await signed_in_page(chromium, web_url, "david@example.org", locale="en-GB")
    await page.goto(f"{web_url}/language?lang=en&back=/groups/{demo.group_id}/order")
    products = await open_order_form(page, web_url, demo.group_id)
    await page.fill(f"#q-{products['Œufs (boîte de 6)']}", "2")
    await page.check("#m-transfer")
    await page.click("form.order-form button[type=submit]")
    await page.wait_for_selector("#how-to-pay [data-field=iban]", timeout=20000)
    assert (await page.inner_text("#how-to-pay [data-field=iban]")).replace(" ", "") == "FR7630006000011234567890189"
    assert await page.inner_text("#how-to-pay [data-field=bic]") == "AGRIFRPP"
    reference = await page.inner_text("#how-to-pay [data-field=reference]")
    assert "€6.40" in await page.inner_text("#how-to-pay")

    # (polled from here: the page's CSP forbids the eval wait_for_function needs)
    async def qr_loaded() -> bool:
        return int(await page.locator("#how-to-pay img").evaluate("image => image.naturalWidth")) > 100

    await eventually(qr_loaded)
    await screenshot(page, "member-pay-transfer")
    await assert_accessible(page)

    # The QR image comes through web (the browser has no token for payments) and decodes to the
    # EPC payload of this transfer.
    source = await page.get_attribute("#how-to-pay img", "src")
    assert source and source.startswith(f"/groups/{demo.group_id}/payments/") and source.endswith("/epc-qr.png")
    answer = await page.context.request.get(f"{web_url}{source}")
    assert answer.status == 200 and answer.headers["content-type"] == "image/png"
    [symbol] = pyzbar.decode(Image.open(io.BytesIO(await answer.body())))
    payload = symbol.data.decode().split("\n")
    assert payload[:4] == ["BCD", "002", "1", "SCT"]
    assert "FR7630006000011234567890189" in payload and "EUR6.4" in payload
    assert reference.replace(" ", "") in payload
    # Another member cannot fetch David's code.
    other = await signed_in_page(chromium, web_url, "chloe@example.org")
    assert (await other.context.request.get(f"{web_url}{source}")).status == 403
    await other.context.close()
    await page.context.close()


async def test_alice_adds_to_her_order_and_reads_her_account(web_system: Stack, chromium: Any) -> None:
    demo = await seed_demo(web_system)
    web_url = web_system.services["web"].url
    alice = demo.people["alice@example.org"]
    await eventually(lambda: _balance_is(web_system, demo.group_id, alice, -2190))
    page = await signed_in_page(chromium, web_url, "alice@example.org")
    await page.goto(f"{web_url}/groups/{demo.group_id}/me")
    assert "Vous devez 21,90\u00a0€" in await page.inner_text(".standing")
    assert "Panier de légumes × 1" in await page.inner_text("table.orders")
    await screenshot(page, "member-account-fr")
    await assert_accessible(page)

    # Ordering again for the same distribution leads to adding to the basket (one per distribution).
    await page.click("table.orders a:has-text('Ajouter des produits')")
    await page.wait_for_url(re.compile(r"/orders/[0-9a-f-]+/add$"))
    products = await product_ids(page)
    assert "2" in await page.inner_text(f"tr[data-product='{products['Œufs (boîte de 6)']}']")  # already ordered
    await page.fill(f"#q-{products['Pain de campagne']}", "1")
    await screenshot(page, "member-add")
    await assert_accessible(page)
    await page.click("form.order-form button[type=submit]")
    await page.wait_for_url(re.compile(r"amendment=[0-9a-f-]+"))
    await page.wait_for_selector("#how-to-pay [data-field=reference]", timeout=20000)
    complement = await page.inner_text("#how-to-pay")
    assert "Comment payer le complément" in complement and "4,10\u00a0€" in complement
    assert await page.get_attribute("td[data-total]", "data-total") == "2600"
    await screenshot(page, "member-pay-addition")

    # The amount owed grew by the addition, in the ledger and on the page, in both languages.
    await eventually(lambda: _balance_is(web_system, demo.group_id, alice, -2600))
    await page.goto(f"{web_url}/groups/{demo.group_id}/me")
    assert "Vous devez 26,00\u00a0€" in await page.inner_text(".standing")
    await page.goto(f"{web_url}/language?lang=en&back=/groups/{demo.group_id}/me")
    assert "You owe €26.00" in await page.inner_text(".standing")
    assert "pending" in await page.inner_text("table.statement")
    await screenshot(page, "member-account-en")
    await assert_accessible(page)
    await page.context.close()
