"""Member balances (R5), for coordinators: every member by name with their balance and pending
payments, in the tutorial's three groups (in debt, balanced, in credit) with totals; filtered
by name or e-mail and by group, sorted by name or amount; the CSV export with names."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from .common import CoordinatorVisit, csv_download

router = APIRouter(include_in_schema=False)

STANDINGS = ("in_debt", "balanced", "in_credit")
Sort = Literal["amount", "name"]


def _matches(line: dict[str, Any], needle: str) -> bool:
    return not needle or any(needle in (line.get(key) or "").casefold() for key in ("name", "email"))


def _sorted(lines: list[dict[str, Any]], sort: Sort, standing: str) -> list[dict[str, Any]]:
    if sort == "name":
        return sorted(lines, key=lambda line: ((line.get("name") or "").casefold(), str(line["member_id"])))
    # Most owed first among debts, largest credit first among credits (as the ledger orders them).
    reverse = standing == "in_credit"
    return sorted(lines, key=lambda line: line["balance"]["amount"], reverse=reverse)


async def _every_member(visit: CoordinatorVisit, group_id: UUID) -> dict[str, Any]:
    """The ledger's balances with every page's members (its totals are the whole group's)."""
    found: dict[str, Any] | None = None
    async for answer in visit.apis.pages("ledger", f"/groups/{group_id}/balances"):
        if found is None:
            found = answer.body
        else:
            for standing in STANDINGS:
                found[standing].extend(answer.body[standing])
    assert found is not None  # pages() yields at least the first page
    return found


@router.get("/groups/{group_id}/balances", response_class=HTMLResponse)
async def balances_page(
    group_id: UUID,
    visit: CoordinatorVisit,
    q: Annotated[str, Query(max_length=100)] = "",
    standing: Annotated[str, Query(max_length=20)] = "",
    sort: Sort = "amount",
) -> Response:
    found = await _every_member(visit, group_id)
    needle = q.strip().casefold()
    sections = [
        {
            "standing": name,
            "lines": _sorted([line for line in found[name] if _matches(line, needle)], sort, name),
        }
        for name in STANDINGS
        if standing in ("", name)
    ]
    return visit.render(
        "coordinator/balances.html",
        balances=found,
        sections=sections,
        q=q,
        standing=standing if standing in STANDINGS else "",
        sort=sort,
    )


@router.get("/groups/{group_id}/balances.csv")
async def balances_csv(group_id: UUID, visit: CoordinatorVisit) -> Response:
    answer = await visit.apis.call("ledger", "GET", f"/groups/{group_id}/balances.csv")
    return csv_download(answer, "balances.csv")
