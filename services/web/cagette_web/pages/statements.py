"""Bank statement import and review, for coordinators: upload the bank's statement (camt.053/052,
MT940, or CSV with the group's saved mapping), read the import's report, handle the lines the
payments service could not match (assign one to a member or to their payment, or ignore it with
a reason), and see the past imports. Payments reads, checks and matches the file; these pages
only send it and put its answers in words (names instead of ids, the locale's amounts)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Annotated, Any, ClassVar
from uuid import UUID

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from ..adapters import ServiceRefused
from .accounts import FormText, Typed, member_names
from .common import CoordinatorVisit, Visit, back_to

router = APIRouter(include_in_schema=False)

# Payments refuses more than 10 MiB; the page stops reading a little after that.
STATEMENT_MAX_BYTES = 10 * 1024 * 1024
FORMATS = ("camt", "mt940", "csv")
REPORT_FIGURES = ("lines", "matched", "amount_corrected", "top_up", "to_review", "debit", "already_imported")

# Payments' reasons (English, stable wording) as sentences of the visitor's language; the
# named groups are put into the translation. Anything else is shown as payments wrote it.
REVIEW_REASONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^the line carries several of the group's references"), "statements.reason.several"),
    (re.compile(r"^the reference (?P<reference>.+) is not one of the group's"), "statements.reason.not_ours"),
    (re.compile(r"^(?P<reference>\S+) looks like a reference but its check digits"), "statements.reason.mistyped"),
    (re.compile(r"^no RF reference in the line"), "statements.reason.none"),
    (
        re.compile(r"^the payment with reference (?P<reference>.+) is (?P<state>\w+) already"),
        "statements.reason.settled",
    ),
    (
        re.compile(r"^the payment with reference (?P<reference>.+) was declared as (?P<method>\w+), and came"),
        "statements.reason.other_method",
    ),
]
FILE_REFUSALS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"^the statement is for account (?P<found>\S+), not the group's account (?P<expected>\S+)"),
        "statements.refused.other_account",
    ),
    (
        re.compile(r"^the statement is in (?P<found>\w+), not the group's currency (?P<expected>\w+)"),
        "statements.refused.other_currency",
    ),
    (re.compile(r"^the group has no bank account"), "statements.refused.no_iban"),
    (re.compile(r"^the file is not a camt\.053/052 or MT940 statement"), "statements.refused.unknown_format"),
    (re.compile(r"^the statement has no lines"), "statements.refused.no_lines"),
]


def _in_words(visit: Visit, text: str, known: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, key in known:
        found = pattern.match(text)
        if found:
            values = found.groupdict()
            if "method" in values:
                values["method"] = visit.t(f"method.{values['method']}")
            if "state" in values:
                values["state"] = visit.t(f"statements.state.{values['state']}")
            return visit.t(key, **values)
    return None


async def _nothing() -> list[dict[str, Any]]:
    return []


def review_reason(visit: Visit, reason: str | None) -> str:
    if not reason:
        return ""
    return _in_words(visit, reason, REVIEW_REASONS) or reason


def file_refusal(visit: Visit, refused: ServiceRefused) -> str:
    """Why payments refused the file, in the visitor's language, with the line it names."""
    if refused.status_code == 413:
        return visit.t("statements.refused.too_big")
    sentence = _in_words(visit, refused.detail, FILE_REFUSALS) or visit.t(
        "statements.refused.file", reason=refused.detail
    )
    line = refused.context.get("line")
    return f"{sentence} {visit.t('statements.refused.at_line', line=line)}" if isinstance(line, int) else sentence


async def _payments_by_id(visit: Visit, group_id: UUID, payment_ids: set[str]) -> dict[str, dict[str, Any]]:
    found = await asyncio.gather(
        *(visit.apis.get("payments", f"/groups/{group_id}/payments/{payment_id}") for payment_id in sorted(payment_ids))
    )
    return {payment["payment_id"]: payment for payment in found}


async def _declared_payments(visit: Visit, group_id: UUID, members: dict[UUID, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every member's payments still awaited (what a line may pay), by member name: asked only
    while lines wait for review."""
    found = await asyncio.gather(
        *(visit.apis.get("payments", f"/groups/{group_id}/members/{member_id}/payments") for member_id in members)
    )
    return sorted(
        (
            {**payment, "member_name": member["name"]}
            for member, payments in zip(members.values(), found, strict=True)
            for payment in payments
            if payment["state"] == "declared" and payment["kind"] == "payment"
        ),
        key=lambda payment: (payment["member_name"].casefold(), payment["created_at"]),
    )


def _name(members: dict[UUID, dict[str, Any]], member_id: str | None) -> str | None:
    if not member_id:
        return None
    member = members.get(UUID(member_id))
    return member["name"] if member else None


async def _page_context(visit: Visit, group_id: UUID, shown_import: UUID | None) -> dict[str, Any]:
    base = f"/groups/{group_id}"
    members, imports, to_review = await asyncio.gather(
        member_names(visit, group_id),
        visit.apis.get("payments", f"{base}/bank-statements"),
        visit.apis.get("payments", f"{base}/bank-lines", outcome="to_review"),
    )
    # The reports are what each import did; what is left to handle there changes with the review.
    left = Counter(line["import_id"] for line in to_review)
    imports = [
        {**found, "imported_by_name": _name(members, found["imported_by"]), "left": left[found["import_id"]]}
        for found in imports
    ]
    report = next((found for found in imports if shown_import and found["import_id"] == str(shown_import)), None)
    import_lines: list[dict[str, Any]] = []
    if report is not None:
        import_lines = await visit.apis.get("payments", f"{base}/bank-lines", import_id=str(report["import_id"]))
    suggested, declared = await asyncio.gather(
        _payments_by_id(
            visit, group_id, {line["suggested_payment_id"] for line in to_review if line["suggested_payment_id"]}
        ),
        _declared_payments(visit, group_id, members) if to_review else _nothing(),
    )
    review = []
    for line in to_review:
        payment = suggested.get(line["suggested_payment_id"] or "")
        review.append(
            {
                **line,
                "reason_words": review_reason(visit, line["review_reason"]),
                "suggestion": {**payment, "member_name": _name(members, payment["member_id"])} if payment else None,
            }
        )
    shown_lines = [
        {
            **line,
            "member_name": _name(members, line["member_id"]),
            "reason_words": review_reason(visit, line["review_reason"]),
        }
        for line in import_lines
    ]
    return {
        "imports": imports,
        "report": report,
        # Lines payments suggested a payment for, whatever the review did with them since.
        "suggestions": sum(1 for line in shown_lines if line["suggested_payment_id"]),
        "declared": declared,
        "import_lines": shown_lines,
        "review": review,
        "members": sorted(members.values(), key=lambda member: member["name"].casefold()),
        "formats": FORMATS,
        "figures": REPORT_FIGURES,
    }


async def _render(
    visit: Visit,
    group_id: UUID,
    *,
    shown_import: UUID | None = None,
    typed: dict[str, str] | None = None,
    typed_line: str = "",
    message: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = await _page_context(visit, group_id, shown_import)
    return visit.render(
        "statements/bank.html",
        status_code=status_code,
        message=message,
        typed=typed or {},
        typed_line=typed_line,
        **context,
    )


@router.get("/groups/{group_id}/bank", response_class=HTMLResponse)
async def bank_page(group_id: UUID, visit: CoordinatorVisit, shown: UUID | None = None) -> Response:
    return await _render(visit, group_id, shown_import=shown)


def _refusal_status(refused: ServiceRefused) -> int:
    return refused.status_code if refused.status_code in (400, 409, 413, 422) else 400


@router.post("/groups/{group_id}/bank/statements", response_class=HTMLResponse)
async def upload_statement(
    group_id: UUID,
    visit: CoordinatorVisit,
    file: Annotated[UploadFile | None, File()] = None,
    file_format: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    visit.check_csrf(csrf_token)
    chosen = file_format if file_format in FORMATS else ""
    typed = {"format": chosen}
    if file is None or not file.filename:
        return await _render(visit, group_id, typed=typed, message=visit.t("statements.no_file"), status_code=422)
    data = await file.read(STATEMENT_MAX_BYTES + 1)
    if len(data) > STATEMENT_MAX_BYTES:
        message = visit.t("statements.refused.too_big")
        return await _render(visit, group_id, typed=typed, message=message, status_code=413)
    try:
        answer = await visit.apis.call(
            "payments",
            "POST",
            f"/groups/{group_id}/bank-statements",
            params={
                "format": chosen or None,
                "file_name": "".join(ch for ch in file.filename if ch.isprintable())[:200],
            },
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
    except ServiceRefused as refused:
        message = visit.t("statements.file_refused", file=file.filename) + " " + file_refusal(visit, refused)
        return await _render(visit, group_id, typed=typed, message=message, status_code=_refusal_status(refused))
    return back_to(f"/groups/{group_id}/bank", done="statements.imported", shown=str(answer.body["import_id"]))


class LineReview(BaseModel):
    """A review of a line payments could not match, as typed: what to ask payments
    (`/bank-lines/{line}/<action>`), or None when the form lacks its choice (`missing` says so)."""

    action: ClassVar[str]
    missing: ClassVar[str]
    csrf_token: Typed = ""

    def typed(self) -> dict[str, str]:
        return self.model_dump(exclude={"csrf_token"})

    def body(self) -> dict[str, Any] | None:
        raise NotImplementedError


async def _review(visit: Visit, group_id: UUID, line_id: UUID, form: LineReview) -> Response:
    visit.check_csrf(form.csrf_token)
    body = form.body()
    if body is None:
        message, status = visit.t(form.missing), 422
    else:
        try:
            await visit.apis.post("payments", f"/groups/{group_id}/bank-lines/{line_id}/{form.action}", json=body)
        except ServiceRefused as refused:
            already = refused.status_code == 409
            message = visit.t("statements.refused.already_reviewed") if already else visit.refusal(refused)
            status = _refusal_status(refused)
        else:
            return back_to(f"/groups/{group_id}/bank", done=f"statements.done_{form.action}")
    return await _render(
        visit, group_id, typed=form.typed(), typed_line=str(line_id), message=message, status_code=status
    )


class AssignForm(LineReview):
    """The line pays `payment:<member>:<payment>`, or tops up `member:<member>`."""

    action = "assign"
    missing = "statements.choose_target"
    target: Typed = ""
    note: Typed = ""

    def body(self) -> dict[str, Any] | None:
        kind, _, rest = self.target.partition(":")
        note = self.note.strip()
        try:
            if kind == "payment":
                member_id, _, payment_id = rest.partition(":")
                return {"member_id": str(UUID(member_id)), "payment_id": str(UUID(payment_id)), "note": note}
            if kind == "member":
                return {"member_id": str(UUID(rest)), "note": note}
        except ValueError:
            return None
        return None


@router.post("/groups/{group_id}/bank/lines/{line_id}/assign", response_class=HTMLResponse)
async def assign_line(
    group_id: UUID, line_id: UUID, visit: CoordinatorVisit, form: Annotated[AssignForm, Form()]
) -> Response:
    return await _review(visit, group_id, line_id, form)


class IgnoreForm(LineReview):
    action = "ignore"
    missing = "statements.reason_required"
    reason: Typed = ""

    def body(self) -> dict[str, Any] | None:
        return {"reason": self.reason.strip()} if self.reason.strip() else None


@router.post("/groups/{group_id}/bank/lines/{line_id}/ignore", response_class=HTMLResponse)
async def ignore_line(
    group_id: UUID, line_id: UUID, visit: CoordinatorVisit, form: Annotated[IgnoreForm, Form()]
) -> Response:
    return await _review(visit, group_id, line_id, form)
