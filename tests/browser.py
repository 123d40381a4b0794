"""The pages in a real browser: Debian's headless Chromium driven by Playwright, the five
services running as processes with a demo group seeded through their APIs, and axe-core's
accessibility check. Screenshots of every page a test looks at go to var/screenshots/ (not
versioned), to be looked at after the run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from cagette_runtime.devstack import Stack

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
DEMO_PASSWORD = "demo-cagette-2026"
# axe-core impacts that fail a test (minor and moderate ones are reported, not fatal).
BLOCKING_IMPACTS = {"serious", "critical"}


@dataclass(frozen=True)
class DemoGroup:
    group_id: UUID
    people: dict[str, UUID]


async def seed_demo(stack: Stack) -> DemoGroup:
    """A new demo group (`python -m cagette_web demo --json --new`) on the running stack."""
    web = stack.services["web"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cagette_web", "demo", "--json", "--new", env=web.env, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, "the demo could not be seeded (see the output above)"
    found = json.loads(output.decode().strip().splitlines()[-1])
    return DemoGroup(UUID(found["group_id"]), {email: UUID(uid) for email, uid in found["people"].items()})


async def launch_chromium(playwright: Any) -> Any:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh (make install does)", pytrace=False)
    return await playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )


async def signed_in_page(chromium: Any, web_url: str, email: str, *, locale: str = "fr-FR") -> Any:
    """A new browser context (its own cookies) signed in as this person."""
    context = await chromium.new_context(locale=locale, viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto(f"{web_url}/sign-in")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("form[action='/sign-in'] button[type=submit]")
    await page.wait_for_url(re.compile(r"^(?!.*sign-in).*$"))
    return page


async def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def assert_accessible(page: Any) -> None:
    """axe-core (the version axe-playwright-python pins) finds no serious or critical violation."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    blocking = [v for v in results.response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    details = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[node['target'] for node in v['nodes']][:3]}" for v in blocking
    ]
    assert not blocking, f"axe-core on {page.url}: " + "; ".join(details)
