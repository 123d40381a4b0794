"""The signed-in person's home: their groups by name, with their balance in each, and the way
into each group (a coordinator lands on the member balances, a member on their account)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cagette_contracts import Role

from ..adapters import ServiceRefused, ServiceUnavailable
from .common import LANGUAGE_COOKIE, GroupVisit, SignedInVisit, Visit, group_of, local_path

router = APIRouter(include_in_schema=False)


async def _group_line(visit: Visit, group_id: UUID, role: str) -> dict[str, Any]:
    line: dict[str, Any] = {"group_id": group_id, "role": role, "name": None, "balance": None}
    try:
        group = await visit.apis.get("orders", f"/groups/{group_id}")
        line["name"] = group["name"]
        balance = await visit.apis.get("ledger", f"/groups/{group_id}/members/{visit.person_id}/balance")
        line["balance"] = balance["balance"]
    except (ServiceRefused, ServiceUnavailable):
        pass  # shown as "unavailable right now"; the rest of the page still helps
    return line


@router.get("/", response_class=HTMLResponse)
async def home(visit: SignedInVisit) -> Response:
    roles = sorted(visit.me.roles.items(), key=lambda item: str(item[0]))
    groups = await asyncio.gather(*(_group_line(visit, group_id, role) for group_id, role in roles))
    groups.sort(key=lambda line: (line["name"] or "").casefold())
    return visit.render("home.html", groups=groups)


@router.get("/groups/{group_id}")
async def group_home(group_id: UUID, visit: GroupVisit) -> Response:
    if group_of(visit).role == Role.COORDINATOR:
        return RedirectResponse(f"/groups/{group_id}/balances", status_code=303)
    return RedirectResponse(f"/groups/{group_id}/me", status_code=303)


@router.get("/language")
async def choose_language(request: Request, lang: str = "fr", back: str = "/") -> Response:
    """The language switcher at the bottom of every page: remembered in a cookie (a year)."""
    response = RedirectResponse(local_path(back), status_code=303)
    if lang in ("fr", "en"):
        settings = request.app.state.settings
        response.set_cookie(
            LANGUAGE_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax", secure=settings.web_cookie_secure
        )
    return response
