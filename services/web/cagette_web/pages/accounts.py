"""A member's account, for coordinators: the balance in words, the ledger statement with pending
entries marked (R16), the payment history, and the forms to record a payment by hand (R22), a
refund, an opening balance (R15) and a correction; the bulk opening-balance upload (CSV) with a
preview before it is applied."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import HTMLResponse, Response

from ..adapters import ServiceRefused
from ..domain import AmountRefused, parse_amount
from .common import CoordinatorVisit, PageRefused, Visit, back_to, group_of, new_client_key

router = APIRouter(include_in_schema=False)

# What a coordinator records by hand (online card and money pot are never typed in).
MANUAL_METHODS = ("cheque", "cash", "transfer", "card_terminal")
FormText = Annotated[str, Form(max_length=500)]
UPLOAD_MAX_BYTES = 2 * 1024 * 1024


class FormProblem(Exception):
    """A form value the page itself refuses before calling a service: a message key and values."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def typed_amount(text: str, currency: str, *, signed: bool = False) -> int:
    try:
        return parse_amount(text, currency, signed=signed)
    except AmountRefused as refused:
        raise FormProblem(refused.reason, **refused.details) from None


def typed_date(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise FormProblem("account.bad_date") from None


async def member_names(visit: Visit, group_id: UUID) -> dict[UUID, dict[str, Any]]:
    """The group's members by id (name, e-mail, role), as orders knows them."""
    members = await visit.apis.get_all("orders", f"/groups/{group_id}/members")
    return {UUID(member["member_id"]): member for member in members}


async def _contract_lines(visit: Visit, group_id: UUID, member_id: UUID) -> list[dict[str, Any]]:
    """The member's subscriptions, from each contract's view in payments (what they owe)."""
    contracts = await visit.apis.get_all("orders", f"/groups/{group_id}/catalogs", kind="subscription")
    views = await asyncio.gather(
        *(_subscriptions_or_none(visit, group_id, UUID(contract["catalog_id"])) for contract in contracts)
    )
    return [
        {**line, "contract_name": contract["name"]}
        for contract, view in zip(contracts, views, strict=True)
        for line in (view or {}).get("subscriptions", [])
        if line["member_id"] == str(member_id)
    ]


async def _subscriptions_or_none(visit: Visit, group_id: UUID, contract_id: UUID) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await visit.apis.get(
            "payments", f"/groups/{group_id}/contracts/{contract_id}/subscriptions"
        )
        return found
    except ServiceRefused as refused:
        if refused.status_code == 404:  # nobody subscribed yet
            return None
        raise


async def _account(visit: Visit, group_id: UUID, member_id: UUID) -> dict[str, Any]:
    members = await member_names(visit, group_id)
    member = members.get(member_id)
    if member is None:
        raise PageRefused(404, "account.no_such_member")
    base = f"/groups/{group_id}/members/{member_id}"
    balance, statement, openings, payments, orders, subscriptions = await asyncio.gather(
        visit.apis.get("ledger", f"{base}/balance"),
        visit.apis.get("ledger", f"{base}/statement", limit=100),
        # The opening balances belong in the payment history too (R15), however old they are.
        visit.apis.get("ledger", f"{base}/statement", kind="opening_balance", limit=20),
        visit.apis.get_all("payments", f"{base}/payments"),
        visit.apis.get_all("orders", f"/groups/{group_id}/orders", member_id=str(member_id)),
        _contract_lines(visit, group_id, member_id),
    )
    return {
        "member": member,
        "balance": balance,
        "statement": statement,
        "openings": openings["entries"],
        "payments": payments,
        "orders": [order for order in orders if order["status"] != "withdrawn"],
        "subscriptions": subscriptions,
        "methods": MANUAL_METHODS,
        "client_key": new_client_key(),
        "today": date.today().isoformat(),
    }


async def _render_account(
    visit: Visit,
    group_id: UUID,
    member_id: UUID,
    *,
    form: str = "",
    values: dict[str, str] | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = await _account(visit, group_id, member_id)
    return visit.render(
        "coordinator/account.html",
        status_code=status_code,
        message=message,
        error=message is not None,
        form=form,
        values=values or {},
        **context,
    )


@router.get("/groups/{group_id}/members/{member_id}", response_class=HTMLResponse)
async def account_page(group_id: UUID, member_id: UUID, visit: CoordinatorVisit) -> Response:
    return await _render_account(visit, group_id, member_id)


async def _submit(
    visit: Visit,
    group_id: UUID,
    member_id: UUID,
    form: str,
    values: dict[str, str],
    action: Any,
) -> Response:
    """Run a form's action; on success back to the account with a notice, else the same page
    with the message and the form as typed."""
    visit.check_csrf(values.pop("csrf_token", ""))
    try:
        await action()
    except FormProblem as problem:
        message, status = visit.t(problem.key, **problem.values), 422
    except ServiceRefused as refused:
        message = visit.refusal(refused)
        status = refused.status_code if refused.status_code in (400, 409, 422) else 400
    else:
        return back_to(f"/groups/{group_id}/members/{member_id}", done=f"account.done_{form}")
    return await _render_account(
        visit, group_id, member_id, form=form, values=values, message=message, status_code=status
    )


def _money(amount: str, currency: str, *, signed: bool = False) -> dict[str, Any]:
    """A typed amount as the services take it: minor units and currency."""
    return {"amount": typed_amount(amount, currency, signed=signed), "currency": currency}


def _link(value: str) -> dict[str, str]:
    kind, _, target = value.partition(":")
    if kind not in ("order", "subscription") or not target:
        return {}
    try:
        return {f"{kind}_id": str(UUID(target))}
    except ValueError:
        raise FormProblem("account.bad_link") from None


def _method(value: str) -> str:
    if value not in MANUAL_METHODS:
        raise FormProblem("account.choose_method")
    return value


@router.post("/groups/{group_id}/members/{member_id}/payments")
async def record_payment(
    group_id: UUID,
    member_id: UUID,
    visit: CoordinatorVisit,
    method: FormText = "",
    amount: FormText = "",
    paid_on: FormText = "",
    label: FormText = "",
    link: FormText = "",
    client_key: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    currency = group_of(visit).currency
    values = {"method": method, "amount": amount, "paid_on": paid_on, "label": label, "link": link}

    async def action() -> None:
        body = {
            "method": _method(method),
            "amount": _money(amount, currency),
            "paid_on": typed_date(paid_on),
            "label": label.strip() or None,
            **_link(link),
            "client_key": client_key or None,
        }
        await visit.apis.post("payments", f"/groups/{group_id}/members/{member_id}/payments", json=body)

    return await _submit(visit, group_id, member_id, "payment", {**values, "csrf_token": csrf_token}, action)


@router.post("/groups/{group_id}/members/{member_id}/refunds")
async def record_refund(
    group_id: UUID,
    member_id: UUID,
    visit: CoordinatorVisit,
    method: FormText = "",
    amount: FormText = "",
    reason: FormText = "",
    paid_on: FormText = "",
    label: FormText = "",
    client_key: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    currency = group_of(visit).currency
    values = {"method": method, "amount": amount, "reason": reason, "paid_on": paid_on, "label": label}

    async def action() -> None:
        body = {
            "method": _method(method),
            "amount": _money(amount, currency),
            "reason": _required(reason, "account.reason_required"),
            "paid_on": typed_date(paid_on),
            "label": label.strip() or None,
            "client_key": client_key or None,
        }
        await visit.apis.post("payments", f"/groups/{group_id}/members/{member_id}/refunds", json=body)

    return await _submit(visit, group_id, member_id, "refund", {**values, "csrf_token": csrf_token}, action)


def _required(text: str, key: str) -> str:
    if not text.strip():
        raise FormProblem(key)
    return text.strip()


@router.post("/groups/{group_id}/members/{member_id}/opening-balance")
async def record_opening_balance(
    group_id: UUID,
    member_id: UUID,
    visit: CoordinatorVisit,
    amount: FormText = "",
    memo: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    currency = group_of(visit).currency
    values = {"amount": amount, "memo": memo}

    async def action() -> None:
        body = {
            "amount": _money(amount, currency, signed=True),
            "memo": memo.strip(),
        }
        try:
            await visit.apis.post("ledger", f"/groups/{group_id}/members/{member_id}/opening-balance", json=body)
        except ServiceRefused as refused:
            if refused.status_code == 409:  # once per member (R15): another amount needs a reversal first
                raise FormProblem("account.opening_exists") from None
            raise

    return await _submit(visit, group_id, member_id, "opening_balance", {**values, "csrf_token": csrf_token}, action)


@router.post("/groups/{group_id}/members/{member_id}/corrections")
async def record_correction(
    group_id: UUID,
    member_id: UUID,
    visit: CoordinatorVisit,
    amount: FormText = "",
    reason: FormText = "",
    client_key: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    currency = group_of(visit).currency
    values = {"amount": amount, "reason": reason}

    async def action() -> None:
        body = {
            "amount": _money(amount, currency, signed=True),
            "reason": _required(reason, "account.reason_required"),
        }
        # Its Idempotency-Key comes from the form's client_key (PersonApis).
        await visit.apis.post("ledger", f"/groups/{group_id}/members/{member_id}/corrections", json=body)

    return await _submit(visit, group_id, member_id, "correction", {**values, "csrf_token": csrf_token}, action)


# --- bulk opening balances -----------------------------------------------------------------


def _preview_rows(checked: dict[str, Any], names: dict[UUID, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for transaction in checked["transactions"]:
        leg = next(posting for posting in transaction["postings"] if posting["member_id"])
        member = names.get(UUID(leg["member_id"]), {})
        rows.append(
            {
                "name": member.get("name"),
                "email": member.get("email"),
                "amount": leg["amount"],
                "replayed": transaction["replayed"],
            }
        )
    return rows


def _file_errors(refused: ServiceRefused, names: dict[UUID, dict[str, Any]]) -> list[str]:
    """The ledger's errors by line, with member ids replaced by names where known."""
    listed = refused.context.get("errors")
    errors = [str(error) for error in listed] if isinstance(listed, list) else []
    for member_id, member in names.items():
        errors = [error.replace(str(member_id), member["name"]) for error in errors]
    more = refused.context.get("more_errors")
    return errors + ([f"… (+{more})"] if isinstance(more, int) and more > 0 else [])


@router.get("/groups/{group_id}/opening-balances", response_class=HTMLResponse)
async def opening_balances_page(group_id: UUID, visit: CoordinatorVisit) -> Response:
    names = await member_names(visit, group_id)
    return visit.render("coordinator/opening_balances.html", members=_sorted_members(names), preview=None, errors=[])


def _sorted_members(names: dict[UUID, dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(names.values(), key=lambda member: member["name"].casefold())


@router.post("/groups/{group_id}/opening-balances", response_class=HTMLResponse)
async def opening_balances_upload(
    group_id: UUID,
    visit: CoordinatorVisit,
    file: Annotated[UploadFile | None, File()] = None,
    content: Annotated[str, Form(max_length=UPLOAD_MAX_BYTES)] = "",
    apply: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    """First the file is checked (the ledger's `check=true`) and shown as names and amounts;
    the preview page carries the same content back, and only "apply" records it."""
    visit.check_csrf(csrf_token)
    names = await member_names(visit, group_id)
    members = _sorted_members(names)
    text = content
    if file is not None and file.filename:
        raw = await file.read(UPLOAD_MAX_BYTES + 1)
        if len(raw) > UPLOAD_MAX_BYTES:
            return visit.render(
                "coordinator/opening_balances.html",
                status_code=413,
                message=visit.t("opening.too_big"),
                error=True,
                members=members,
                preview=None,
                errors=[],
            )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return visit.render(
                "coordinator/opening_balances.html",
                status_code=422,
                message=visit.t("opening.not_utf8"),
                error=True,
                members=members,
                preview=None,
                errors=[],
            )
    if not text.strip():
        return visit.render(
            "coordinator/opening_balances.html",
            status_code=422,
            message=visit.t("opening.no_file"),
            error=True,
            members=members,
            preview=None,
            errors=[],
        )
    confirmed = apply == "yes"
    try:
        answer = await visit.apis.call(
            "ledger",
            "POST",
            f"/groups/{group_id}/opening-balances",
            params={"check": None if confirmed else "true"},
            content=text.encode(),
            headers={"Content-Type": "text/csv"},
        )
    except ServiceRefused as refused:
        return visit.render(
            "coordinator/opening_balances.html",
            status_code=422,
            message=visit.refusal(refused),
            error=True,
            members=members,
            preview=None,
            errors=_file_errors(refused, names),
        )
    if confirmed:
        return back_to(f"/groups/{group_id}/balances", done="opening.done")
    return visit.render(
        "coordinator/opening_balances.html",
        members=members,
        content=text,
        preview=_preview_rows(answer.body, names),
        checked=answer.body,
        errors=[],
    )
