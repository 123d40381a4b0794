"""Subscription contracts, for coordinators (R7, R19, R22): each contract with its subscribers and
what each owes, and a grid to enter everybody's cheques at once (one row per subscriber, several
cheques per row), sent to payments' mass entry: all or nothing."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..adapters import ServiceRefused
from .accounts import FormProblem, _subscriptions_or_none, typed_amount, typed_date
from .common import CoordinatorVisit, Visit, back_to, group_of, new_client_key

router = APIRouter(include_in_schema=False)

CHEQUES_PER_ROW = 3
MAX_CHEQUES_PER_ROW = 12


async def _contracts(visit: Visit, group_id: UUID) -> list[dict[str, Any]]:
    contracts = await visit.apis.get_all("orders", f"/groups/{group_id}/catalogs", kind="subscription")
    views = await asyncio.gather(
        *(_subscriptions_or_none(visit, group_id, UUID(contract["catalog_id"])) for contract in contracts)
    )
    found = []
    for contract, view in zip(contracts, views, strict=True):
        subscriptions = sorted((view or {}).get("subscriptions", []), key=lambda s: s["member_name"].casefold())
        found.append({**contract, "subscriptions": subscriptions})
    return found


def _cheques(request_form: Any, row: int, slots: int) -> list[dict[str, str]]:
    return [
        {
            name: str(request_form.get(f"r{row}_c{slot}_{name}", "")).strip()[:200]
            for name in ("amount", "label", "paid_on")
        }
        for slot in range(slots)
    ]


async def _render(
    visit: Visit,
    group_id: UUID,
    *,
    slots: int,
    typed: dict[str, Any] | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return visit.render(
        "coordinator/contracts.html",
        status_code=status_code,
        message=message,
        contracts=await _contracts(visit, group_id),
        slots=slots,
        typed=typed or {},
        client_key=new_client_key(),
    )


@router.get("/groups/{group_id}/contracts", response_class=HTMLResponse)
async def contracts_page(group_id: UUID, visit: CoordinatorVisit, cheques: int = CHEQUES_PER_ROW) -> Response:
    return await _render(visit, group_id, slots=max(1, min(cheques, MAX_CHEQUES_PER_ROW)))


@router.post("/groups/{group_id}/contracts/{contract_id}/cheques", response_class=HTMLResponse)
async def enter_cheques(group_id: UUID, contract_id: UUID, visit: CoordinatorVisit, request: Request) -> Response:
    """The grid: each filled cheque becomes one row of the mass entry; nothing is recorded
    unless every cheque is right."""
    form = await request.form()
    visit.check_csrf(str(form.get("csrf_token", "")))
    currency = group_of(visit).currency
    slots = max(1, min(int(str(form.get("slots", CHEQUES_PER_ROW)) or CHEQUES_PER_ROW), MAX_CHEQUES_PER_ROW))
    subscribers: list[dict[str, Any]] = []
    for row in range(int(str(form.get("row_count", "0")) or 0)):
        subscribers.append(
            {
                "member_id": str(form.get(f"r{row}_member", "")),
                "subscription_id": str(form.get(f"r{row}_subscription", "")),
                "cheques": _cheques(form, row, slots),
            }
        )
    typed = {"contract_id": str(contract_id), "rows": {s["subscription_id"]: s["cheques"] for s in subscribers}}
    problems: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    owners: list[str] = []
    for subscriber in subscribers:
        for cheque in subscriber["cheques"]:
            if not any(cheque.values()):
                continue
            try:
                entries.append(
                    {
                        "member_id": subscriber["member_id"],
                        "subscription_id": subscriber["subscription_id"],
                        "method": "cheque",
                        "amount": {"amount": typed_amount(cheque["amount"], currency), "currency": currency},
                        "label": cheque["label"] or None,
                        "paid_on": typed_date(cheque["paid_on"]),
                    }
                )
                owners.append(subscriber["subscription_id"])
            except FormProblem as problem:
                problems.setdefault(subscriber["subscription_id"], visit.t(problem.key, **problem.values))
    if not entries and not problems:
        problems[""] = visit.t("contracts.nothing_entered")
    if problems:
        typed["problems"] = problems
        return await _render(
            visit, group_id, slots=slots, typed=typed, message=visit.t("contracts.grid_refused"), status_code=422
        )
    client_key = str(form.get("client_key", "")) or new_client_key()
    try:
        await visit.apis.post(
            "payments",
            f"/groups/{group_id}/contracts/{contract_id}/payments",
            json={"client_key": client_key, "rows": entries},
        )
    except ServiceRefused as refused:
        listed = refused.context.get("rows")
        for item in listed if isinstance(listed, list) else []:
            index = item.get("row") if isinstance(item, dict) else None
            if isinstance(index, int) and 0 <= index < len(owners):
                problems.setdefault(owners[index], str(item.get("error", "")))
        typed["problems"] = problems
        status = refused.status_code if refused.status_code in (400, 409, 422) else 400
        return await _render(
            visit, group_id, slots=slots, typed=typed, message=visit.refusal(refused), status_code=status
        )
    return back_to(f"/groups/{group_id}/contracts", done="contracts.done", count=str(len(entries)))
