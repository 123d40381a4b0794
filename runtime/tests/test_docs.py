"""/docs of every service loads Swagger UI from the service itself, never from another host."""

from __future__ import annotations

import re

import httpx

from cagette_runtime.docs import DOCS_CSP
from cagette_runtime.service import Service
from cagette_runtime.settings import ServiceSettings


def docs_client() -> httpx.AsyncClient:
    service = Service("widgets", migrations="unused", settings=ServiceSettings(service_name="widgets"))
    app = service.create_app()  # not started: /docs and its assets need neither database nor broker
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://widgets")


async def test_docs_page_loads_swagger_ui_from_the_service_only() -> None:
    async with docs_client() as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert "SwaggerUIBundle" in html and "url: '/openapi.json'" in html
        # No other host anywhere in the page: every script, stylesheet and icon is a path here.
        assert not re.search(r"(https?:)?//[a-z0-9]", html, re.IGNORECASE), html
        linked = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert len(linked) == 3 and all(link.startswith("/docs/assets/") for link in linked), linked
        # And the browser is told to load nothing from elsewhere.
        assert page.headers["content-security-policy"] == DOCS_CSP
        assert "default-src 'self'" in DOCS_CSP and "https:" not in DOCS_CSP
        for link in linked:
            asset = await client.get(link)
            assert asset.status_code == 200, link
            assert len(asset.content) > 500, link
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.headers["content-type"].startswith(("application/javascript", "text/javascript"))
        assert b"SwaggerUIBundle" in script.content
        # The OpenAPI document the page loads is there, and ReDoc (which would need a CDN) is not served.
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "cagette widgets"
        assert (await client.get("/redoc")).status_code == 404
