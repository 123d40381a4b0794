"""The interactive API docs (/docs) of every service, with Swagger UI served by the service
itself: no CDN (these machines and many users' networks have none), and a page CSP that lets
it load nothing from another host.

Swagger UI's files are vendored from the npm package swagger-ui-dist (the version is in the
directory name, static/swagger-ui-<version>/, with its LICENSE and NOTICE); to update, replace
that directory with the new package's swagger-ui-bundle.js, swagger-ui.css and favicon-32x32.png
and change `SWAGGER_UI_VERSION`. ReDoc (/redoc), which has no vendored copy, is not served.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_UI_DIR = Path(__file__).parent / "static" / f"swagger-ui-{SWAGGER_UI_VERSION}"
DOCS_ASSETS = "/docs/assets"
# FastAPI's page starts Swagger UI with an inline script; everything else comes from here.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def install_docs(app: FastAPI) -> None:
    """/docs for an app created with `docs_url=None, redoc_url=None`."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=request.scope.get("root_path", "") + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - API docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            # The online validator badge would call validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
