"""A member's account, for coordinators: the balance in words, the ledger statement with pending
entries marked (R16), the payment history, and the forms to record a payment by hand (R22), a
refund, an opening balance (R15) and a correction; the bulk opening-balance upload (CSV) with a
preview before it is applied."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any, ClassVar
from uuid import UUID

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from ..adapters import ServiceName, ServiceRefused
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
        form=form,
        values=values or {},
        **context,
    )


@router.get("/groups/{group_id}/members/{member_id}", response_class=HTMLResponse)
async def account_page(group_id: UUID, member_id: UUID, visit: CoordinatorVisit) -> Response:
    return await _render_account(visit, group_id, member_id)


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


def _required(text: str, key: str) -> str:
    if not text.strip():
        raise FormProblem(key)
    return text.strip()


Typed = Annotated[str, Field(max_length=500)]


class AccountForm(BaseModel):
    """One of the account page's forms, as typed: what it asks which service to record, at
    the page's own path on that service (`/groups/{g}/members/{m}/<path>`)."""

    form: ClassVar[str]  # which form on the page (shown again when refused), and its notice
    service: ClassVar[ServiceName]
    path: ClassVar[str]
    csrf_token: Typed = ""

    def typed(self) -> dict[str, str]:
        """The values to fill the form with again."""
        return self.model_dump(exclude={"csrf_token", "client_key"})

    def body(self, currency: str) -> dict[str, Any]:
        """The request's body (a FormProblem for a value the page refuses itself)."""
        raise NotImplementedError

    async def record(self, visit: Visit, path: str, currency: str) -> None:
        await visit.apis.post(self.service, path, json=self.body(currency))


async def _submit(visit: Visit, group_id: UUID, member_id: UUID, form: AccountForm) -> Response:
    """Record a form's content; on success back to the account with a notice, else the same
    page with the message and the form as typed."""
    visit.check_csrf(form.csrf_token)
    account = f"/groups/{group_id}/members/{member_id}"
    try:
        await form.record(visit, f"{account}/{form.path}", group_of(visit).currency)
    except FormProblem as problem:
        message, status = visit.t(problem.key, **problem.values), 422
    except ServiceRefused as refused:
        message = visit.refusal(refused)
        status = refused.status_code if refused.status_code in (400, 409, 422) else 400
    else:
        return back_to(account, done=f"account.done_{form.form}")
    return await _render_account(
        visit, group_id, member_id, form=form.form, values=form.typed(), message=message, status_code=status
    )


class HandedOver(AccountForm):
    """Money handed over by hand (R22): a payment received or a refund given."""

    service = "payments"
    method: Typed = ""
    amount: Typed = ""
    paid_on: Typed = ""
    label: Typed = ""
    client_key: Typed = ""

    def body(self, currency: str) -> dict[str, Any]:
        return {
            "method": _method(self.method),
            "amount": _money(self.amount, currency),
            "paid_on": typed_date(self.paid_on),
            "label": self.label.strip() or None,
            "client_key": self.client_key or None,
        }


class PaymentForm(HandedOver):
    form = "payment"
    path = "payments"
    link: Typed = ""  # the order or subscription it pays, if any

    def body(self, currency: str) -> dict[str, Any]:
        return {**super().body(currency), **_link(self.link)}


@router.post("/groups/{group_id}/members/{member_id}/payments")
async def record_payment(
    group_id: UUID, member_id: UUID, visit: CoordinatorVisit, form: Annotated[PaymentForm, Form()]
) -> Response:
    return await _submit(visit, group_id, member_id, form)


class RefundForm(HandedOver):
    form = "refund"
    path = "refunds"
    reason: Typed = ""

    def body(self, currency: str) -> dict[str, Any]:
        return {**super().body(currency), "reason": _required(self.reason, "account.reason_required")}


@router.post("/groups/{group_id}/members/{member_id}/refunds")
async def record_refund(
    group_id: UUID, member_id: UUID, visit: CoordinatorVisit, form: Annotated[RefundForm, Form()]
) -> Response:
    return await _submit(visit, group_id, member_id, form)


class LedgerEntryForm(AccountForm):
    """An amount the ledger records on the member's account, either sign."""

    service = "ledger"
    amount: Typed = ""

    def signed_amount(self, currency: str) -> dict[str, Any]:
        return _money(self.amount, currency, signed=True)


class OpeningBalanceForm(LedgerEntryForm):
    form = "opening_balance"
    path = "opening-balance"
    memo: Typed = ""

    def body(self, currency: str) -> dict[str, Any]:
        return {"amount": self.signed_amount(currency), "memo": self.memo.strip()}

    async def record(self, visit: Visit, path: str, currency: str) -> None:
        try:
            await super().record(visit, path, currency)
        except ServiceRefused as refused:
            if refused.status_code == 409:  # once per member (R15): another amount needs a reversal first
                raise FormProblem("account.opening_exists") from None
            raise


@router.post("/groups/{group_id}/members/{member_id}/opening-balance")
async def record_opening_balance(
    group_id: UUID, member_id: UUID, visit: CoordinatorVisit, form: Annotated[OpeningBalanceForm, Form()]
) -> Response:
    return await _submit(visit, group_id, member_id, form)


class CorrectionForm(LedgerEntryForm):
    form = "correction"
    path = "corrections"
    reason: Typed = ""
    client_key: Typed = ""  # its Idempotency-Key (PersonApis reads it from the form)

    def body(self, currency: str) -> dict[str, Any]:
        return {"amount": self.signed_amount(currency), "reason": _required(self.reason, "account.reason_required")}


@router.post("/groups/{group_id}/members/{member_id}/corrections")
async def record_correction(
    group_id: UUID, member_id: UUID, visit: CoordinatorVisit, form: Annotated[CorrectionForm, Form()]
) -> Response:
    return await _submit(visit, group_id, member_id, form)


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

    def refused(status_code: int, message: str, errors: list[str] | None = None) -> Response:
        """The upload page again, saying why (and the file's errors by line, if any)."""
        return visit.render(
            "coordinator/opening_balances.html",
            status_code=status_code,
            message=message,
            members=members,
            preview=None,
            errors=errors or [],
        )

    text = content
    if file is not None and file.filename:
        raw = await file.read(UPLOAD_MAX_BYTES + 1)
        if len(raw) > UPLOAD_MAX_BYTES:
            return refused(413, visit.t("opening.too_big"))
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return refused(422, visit.t("opening.not_utf8"))
    if not text.strip():
        return refused(422, visit.t("opening.no_file"))
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
    except ServiceRefused as refusal:
        return refused(422, visit.refusal(refusal), _file_errors(refusal, names))
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
