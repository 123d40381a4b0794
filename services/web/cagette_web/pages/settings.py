"""Payment settings, for coordinators (R1, R9, R13, R18): payments on or off, the methods the
group offers, negative money pots, the cheque payee, the transfer IBAN and BIC (orders' group
settings), and the card payments' set-up (payments' card settings)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from cagette_contracts.common import DEFAULT_TIME_ZONE

from ..adapters import ServiceRefused
from .common import CoordinatorVisit, Visit, back_to

router = APIRouter(include_in_schema=False)

METHODS = ("cheque", "cash", "transfer", "on_the_spot", "money_pot", "card")


async def _render(
    visit: Visit,
    group_id: UUID,
    *,
    typed: dict[str, Any] | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    group = await visit.apis.get("orders", f"/groups/{group_id}")
    card = await visit.apis.get("payments", f"/groups/{group_id}/card-settings")
    return visit.render(
        "coordinator/settings.html",
        status_code=status_code,
        message=message,
        current=typed or group,
        card=card,
        methods=METHODS,
    )


@router.get("/groups/{group_id}/settings", response_class=HTMLResponse)
async def settings_page(group_id: UUID, visit: CoordinatorVisit) -> Response:
    return await _render(visit, group_id)


def _text(form: Any, name: str, limit: int) -> str | None:
    value = str(form.get(name, "")).strip()[:limit]
    return value or None


@router.post("/groups/{group_id}/settings", response_class=HTMLResponse)
async def save_settings(group_id: UUID, visit: CoordinatorVisit, request: Request) -> Response:
    form = await request.form()
    visit.check_csrf(str(form.get("csrf_token", "")))
    chosen = [str(method) for method in form.getlist("payment_methods") if str(method) in METHODS]
    iban = _text(form, "transfer_iban", 64)
    changes: dict[str, Any] = {
        "payments_enabled": form.get("payments_enabled") == "on",
        "payment_methods": chosen,
        "allow_negative_money_pot": form.get("allow_negative_money_pot") == "on",
        "cheque_payee": _text(form, "cheque_payee", 200),
        "transfer_iban": iban.replace(" ", "").upper() if iban else None,
        "transfer_bic": (_text(form, "transfer_bic", 16) or "").upper() or None,
        "time_zone": _text(form, "time_zone", 64) or DEFAULT_TIME_ZONE,
    }
    try:
        await visit.apis.patch("orders", f"/groups/{group_id}", json=changes)
    except ServiceRefused as refused:
        status = refused.status_code if refused.status_code in (400, 409, 422) else 400
        typed = {**changes, "transfer_iban": _text(form, "transfer_iban", 64)}
        message = visit.refusal(refused)
        if any("time_zone" in error.get("loc", ()) for error in refused.errors if isinstance(error, dict)):
            message = visit.t("settings.bad_time_zone", zone=changes["time_zone"])
        return await _render(visit, group_id, typed=typed, message=message, status_code=status)
    return back_to(f"/groups/{group_id}/settings", done="settings.done")
