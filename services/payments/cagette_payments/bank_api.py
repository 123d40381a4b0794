"""Bank statement routes (own router): CSV mapping, statement import, review list, standing
references, EPC QR codes for transfers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Money
from cagette_runtime import epc_qr, idempotency
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.db import Database
from cagette_runtime.errors import Conflict, Invalid, Refused
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page

from . import bank, bank_store, store, usecases
from .adapters.statements import detect_format
from .domain import references
from .domain.methods import Method
from .domain.statements import Format
from .domain.states import State

router = APIRouter(route_class=idempotency.IdempotentRoute, tags=["bank statements"])

MAX_STATEMENT_BYTES = 10 * 1024 * 1024  # a year of a busy account's statements is well under 1 MB


class TooLarge(Refused):
    status_code = 413
    code = "too_large"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Column = Annotated[str, Field(min_length=1, max_length=100)]


class CsvMappingIn(Body):
    booking_date: Column = Field(description="header of the booking date column")
    amount: Column | None = Field(default=None, description="one signed amount column ...")
    credit: Column | None = Field(default=None, description="... or a credit column and a debit column")
    debit: Column | None = None
    currency: Column | None = Field(default=None, description="none: the group's currency")
    counterparty: Column | None = None
    label: Column | None = None
    bank_reference: Column | None = Field(default=None, description="the bank's own id of a line, if it has one")
    delimiter: Literal[",", ";", "\t", "|"] = ";"
    decimal_separator: Literal[",", "."] = ","
    thousands_separator: Literal["", " ", ".", ",", "'"] = ""
    date_format: Literal["%d/%m/%Y", "%d.%m.%Y", "%Y-%m-%d", "%d-%m-%Y", "%m/%d/%Y", "%d/%m/%y"] = "%d/%m/%Y"
    encoding: Literal["utf-8", "latin-1", "cp1252"] = "utf-8"
    skip_lines: Annotated[int, Field(ge=0, le=20)] = 0


class BankSettingsIn(Body):
    csv_mapping: CsvMappingIn | None


class Assign(Body):
    member_id: UUID
    payment_id: UUID | None = Field(default=None, description="a declared payment of the member this line pays")
    note: Annotated[str, Field(max_length=500)] = ""


class Ignore(Body):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class ImportReportOut(BaseModel):
    import_id: UUID
    format: str
    statement_id: str | None
    lines: int
    matched: int
    amount_corrected: int
    top_up: int
    to_review: int
    debit: int
    already_imported: int
    ignored: int


class BankLineOut(BaseModel):
    line_id: UUID
    import_id: UUID
    line_number: int
    booking_date: date
    value_date: date | None
    amount: Money = Field(description="signed: credits positive, debits negative")
    counterparty: str
    counterparty_iban: str | None
    label: str
    creditor_reference: str | None
    bank_reference: str | None
    reference: str | None = Field(description="the RF reference matched (or the mistyped one), in groups of four")
    outcome: str = Field(description="matched, amount_corrected, top_up, to_review, assigned, ignored or debit")
    review_reason: str | None
    suggested_payment_id: UUID | None
    payment_id: UUID | None
    member_id: UUID | None
    member_name: str | None = Field(description="whose money it is, in words (null until matched or assigned)")
    reviewed_by: UUID | None
    reviewed_at: datetime | None
    review_note: str | None


class StandingReferenceOut(BaseModel):
    member_id: UUID
    reference: str = Field(description="RF reference for money-pot top-ups by transfer, in groups of four")
    iban: str | None
    bic: str | None
    beneficiary: str


class TransferInstructionsOut(BaseModel):
    payment_id: UUID | None
    beneficiary: str
    iban: str
    bic: str | None
    amount: Money | None
    reference: str
    epc_payload: str | None = Field(description="EPC069-12 SEPA QR payload; null outside EUR and SEPA")


async def lines_json(session: AsyncSession, group_id: UUID, rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The lines as answered, each with its member's name."""
    names = await store.member_names(session, group_id, list({row.member_id for row in rows if row.member_id}))
    return [{**line_json(row), "member_name": names.get(row.member_id)} for row in rows]


def line_json(row: Row) -> dict[str, Any]:
    return {
        **{name: getattr(row, name) for name in BankLineOut.model_fields if hasattr(row, name)},
        "amount": {"amount": row.amount, "currency": row.currency},
        "reference": references.format_reference(row.reference) if row.reference else None,
    }


async def read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > MAX_STATEMENT_BYTES:
        raise TooLarge(f"the file is {int(declared)} bytes, more than the {MAX_STATEMENT_BYTES} a statement may be")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_STATEMENT_BYTES:
            raise TooLarge(f"the file is more than the {MAX_STATEMENT_BYTES} bytes a statement may be")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data.strip():
        raise Invalid("the request body is empty: send the statement file as the body")
    return data


@router.get("/groups/{group_id}/bank-settings", summary="The group's saved CSV column mapping")
async def get_bank_settings(group_id: UUID, principal: CurrentPrincipal, database: DatabaseDep) -> dict[str, Any]:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        found = await bank_store.get_settings(session, group_id)
        return {"csv_mapping": found.csv_mapping if found is not None else None}


@router.put("/groups/{group_id}/bank-settings", summary="Save how the group's bank writes its CSV export")
async def put_bank_settings(
    group_id: UUID, body: BankSettingsIn, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    mapping = body.csv_mapping.model_dump() if body.csv_mapping is not None else None
    async with database.transaction() as session:
        await bank.save_csv_mapping(session, principal, group_id, mapping)
    return {"csv_mapping": mapping}


@router.post(
    "/groups/{group_id}/bank-statements",
    dependencies=[idempotency.REQUIRED],
    status_code=201,
    response_model=ImportReportOut,
    summary="Import a statement file (the body): camt.053/052, MT940 or CSV with the saved mapping",
)
async def import_statement(
    group_id: UUID,
    principal: CurrentPrincipal,
    request: Request,
    database: DatabaseDep,
    format: Annotated[Format | None, Query(description="default: detected from the content")] = None,
    file_name: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
) -> dict[str, Any]:
    principal.require_coordinator(group_id)
    data = await read_limited(request)
    async with database.transaction() as session:
        report = await bank.import_statement(
            session, principal, group_id, data, fmt=format or detect_format(data), file_name=file_name
        )
    return report.as_dict()


@router.get(
    "/groups/{group_id}/bank-statements",
    summary="The group's imports, newest first, with their reports",
    responses=PAGINATED,
)
async def list_imports(
    group_id: UUID, principal: CurrentPrincipal, database: DatabaseDep, page: Page, response: Response
) -> list[dict[str, Any]]:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        rows = await bank_store.list_imports(session, group_id, page)
    return [
        {
            "import_id": row.import_id,
            "format": row.format,
            "statement_id": row.statement_id,
            "file_name": row.file_name,
            "first_booking_date": row.first_booking_date,
            "last_booking_date": row.last_booking_date,
            "report": row.report,
            "imported_by": row.imported_by,
            "imported_at": row.imported_at,
        }
        for row in page.finish(rows, lambda row: (row.imported_at, row.import_id), response)
    ]


@router.get(
    "/groups/{group_id}/bank-lines",
    response_model=list[BankLineOut],
    summary="Statement lines: `outcome=to_review` is the review list; debits are listed as `debit`",
)
async def list_lines(
    group_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    outcome: Annotated[
        Literal["matched", "amount_corrected", "top_up", "to_review", "assigned", "ignored", "debit"] | None, Query()
    ] = None,
    import_id: UUID | None = None,
) -> list[dict[str, Any]]:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        rows = await bank_store.list_lines(session, group_id, outcome=outcome, import_id=import_id)
        return await lines_json(session, group_id, rows)


@router.post(
    "/groups/{group_id}/bank-lines/{line_id}/assign",
    dependencies=[idempotency.REQUIRED],
    response_model=BankLineOut,
    summary="Assign a line to review to a member (and optionally one of their declared payments)",
)
async def assign_line(
    group_id: UUID, line_id: UUID, body: Assign, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        row = await bank.assign_line(
            session, principal, group_id, line_id, member_id=body.member_id, payment_id=body.payment_id, note=body.note
        )
        [line] = await lines_json(session, group_id, [row])
        return line


@router.post(
    "/groups/{group_id}/bank-lines/{line_id}/ignore", response_model=BankLineOut, summary="Ignore a line to review"
)
async def ignore_line(
    group_id: UUID, line_id: UUID, body: Ignore, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        row = await bank.ignore_line(session, principal, group_id, line_id, reason=body.reason)
        [line] = await lines_json(session, group_id, [row])
        return line


# -- standing references and transfer instructions ------------------------------------------


@router.get(
    "/groups/{group_id}/members/{member_id}/standing-reference",
    response_model=StandingReferenceOut,
    summary="The member's own RF reference for money-pot top-ups by transfer (the member or a coordinator)",
)
async def standing_reference(
    group_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        reference = await bank.member_standing_reference(session, principal, group_id, member_id)
        group = await store.get_group(session, group_id)
        assert group is not None
        return {
            "member_id": member_id,
            "reference": references.format_reference(reference),
            "iban": group.transfer_iban,
            "bic": group.transfer_bic,
            "beneficiary": group.name,
        }


async def _instructions(
    database: Database, principal: CurrentPrincipal, group_id: UUID, payment_id: UUID
) -> tuple[dict[str, Any], epc_qr.Transfer]:
    """The instructions of a declared transfer the caller may see, and the transfer for its QR code."""
    async with database.transaction() as session:
        payment = await usecases.visible_payment(session, principal, group_id, payment_id)
        if payment.method != Method.TRANSFER.value or payment.reference is None:
            raise Conflict(f"payment {payment_id} is not a transfer with a reference")
        if payment.state != State.DECLARED.value:
            raise Conflict(f"payment {payment_id} is {payment.state}: there is nothing left to transfer")
        group = await store.get_group(session, group_id)
        if group is None or not group.transfer_iban:
            raise Conflict(f"group {group_id} has no bank account (IBAN) for transfers")
        amount = Money(amount=payment.amount, currency=payment.currency)
        transfer = epc_qr.Transfer(
            beneficiary=group.name,
            iban=group.transfer_iban,
            bic=group.transfer_bic,
            amount=amount,
            reference=payment.reference,
        )
        body = {
            "payment_id": payment_id,
            "beneficiary": group.name,
            "iban": group.transfer_iban,
            "bic": group.transfer_bic,
            "amount": amount,
            "reference": references.format_reference(payment.reference),
            "epc_payload": epc_qr.payload(transfer) if epc_qr.applies(transfer) else None,
        }
        return body, transfer


@router.get(
    "/groups/{group_id}/payments/{payment_id}/transfer-instructions",
    response_model=TransferInstructionsOut,
    summary="What to transfer for a declared transfer: account, amount, reference, EPC QR payload",
)
async def transfer_instructions(
    group_id: UUID, payment_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    body, _ = await _instructions(database, principal, group_id, payment_id)
    return body


@router.get(
    "/groups/{group_id}/payments/{payment_id}/epc-qr",
    summary="The EPC QR code (SEPA QR / GiroCode) a banking app scans for this transfer: PNG or SVG",
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}},
)
async def transfer_qr(
    group_id: UUID,
    payment_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    image: Annotated[Literal["png", "svg"], Query()] = "png",
) -> Response:
    body, transfer = await _instructions(database, principal, group_id, payment_id)
    if body["epc_payload"] is None:
        raise Conflict("an EPC QR code is only for transfers in EUR to a SEPA account")
    if image == "svg":
        return Response(epc_qr.svg(transfer), media_type="image/svg+xml")
    return Response(epc_qr.png(transfer), media_type="image/png")
