"""The interactive API docs of the five services in a real browser: Swagger UI comes up with
the service's operations while every request to another host is blocked (and none is made)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from cagette_runtime.devstack import SERVICES, Stack

from .browser import screenshot


async def test_every_service_docs_work_with_no_other_host(web_system: Stack, chromium: Any) -> None:
    context = await chromium.new_context(viewport={"width": 1200, "height": 900})
    elsewhere: list[str] = []

    async def only_here(route: Any) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_here)
    page = await context.new_page()
    for name in SERVICES:
        await page.goto(f"{web_system.services[name].url}/docs")
        # Swagger UI rendered the service's OpenAPI document: its title and its operations.
        await page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
        assert f"cagette {name}" in await page.inner_text(".swagger-ui .info .title")
        assert await page.locator(".opblock").count() > 0
        if name == "payments":
            await screenshot(page, "docs-payments")
    assert not elsewhere, f"the docs asked another host: {elsewhere}"
    await context.close()
