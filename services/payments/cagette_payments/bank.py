"""Bank statement use cases: import a file (all or nothing), match its credit lines by their RF
reference through the payment state machine, review what did not match, standing references.

Every money effect goes through the existing use cases (`usecases.confirm_payment`,
`record_payment`, `cancel_payment`), so the payment's transitions, its `payments.payment.*`
event (and so the ledger) and the basket figures are those of a coordinator doing it by hand.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import BankLineMatched, BankLineToReview, BankStatementImported, Money
from cagette_runtime import clock, outbox
from cagette_runtime.auth import Principal
from cagette_runtime.errors import Conflict, Invalid, NotFound
from cagette_runtime.rows import record

from . import bank_store, store, usecases
from .adapters.statements import CsvMapping, check_mapping, parse_statement
from .domain import references
from .domain.methods import Method
from .domain.statements import (
    Format,
    Outcome,
    StatementError,
    StatementLine,
    check_statement,
    compact_iban,
    find_references,
    line_keys,
    near_miss,
    without_texts,
)
from .domain.states import Kind, State

REPORT_KEYS = ("matched", "amount_corrected", "top_up", "to_review", "debit", "already_imported")


def refused(exc: StatementError) -> Invalid:
    if exc.line is not None:
        return Invalid(str(exc), line=exc.line)
    return Invalid(str(exc))


# -- settings -------------------------------------------------------------------------------


async def save_csv_mapping(
    session: AsyncSession, principal: Principal, group_id: UUID, mapping: dict[str, Any] | None
) -> None:
    principal.require_coordinator(group_id)
    await usecases.group_currency(session, group_id, for_writing=False)
    if mapping is not None:
        try:
            check_mapping(CsvMapping(**mapping))
        except StatementError as exc:
            raise refused(exc) from None
    await bank_store.save_settings(session, group_id, mapping, principal.user_id, clock.now())


# -- import ---------------------------------------------------------------------------------


@dataclass
class ImportReport:
    import_id: UUID
    format: str
    statement_id: str | None
    lines: int
    matched: int = 0
    amount_corrected: int = 0
    top_up: int = 0
    to_review: int = 0
    debit: int = 0
    already_imported: int = 0
    ignored: int = 0  # of the lines already imported, those a coordinator ignored

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["import_id"] = str(self.import_id)
        return body


async def import_statement(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    data: bytes,
    *,
    fmt: Format,
    file_name: str | None = None,
) -> ImportReport:
    """Read the file, check it is the group's account and currency, then each line once: a line an
    earlier import has is counted as already imported; a new credit is matched or left to review,
    a new debit listed. One transaction: a refusal anywhere imports nothing."""
    principal.require_coordinator(group_id)
    currency = await usecases.group_currency(session, group_id)
    group = await store.get_group(session, group_id)
    assert group is not None
    await bank_store.lock_group_imports(session, group_id)
    settings = await bank_store.get_settings(session, group_id)
    mapping = CsvMapping(**settings.csv_mapping) if settings is not None and settings.csv_mapping else None
    try:
        statement = parse_statement(data, fmt, currency=currency, mapping=mapping)
        check_statement(statement, group_iban=group.transfer_iban, currency=currency)
    except StatementError as exc:
        raise refused(exc) from None
    account = compact_iban(group.transfer_iban) or ""
    at = clock.now()
    report = ImportReport(uuid4(), statement.format, statement.statement_id, len(statement.lines))
    await bank_store.insert_import(
        session,
        {
            "import_id": report.import_id,
            "group_id": group_id,
            "format": statement.format,
            "iban": account,
            "statement_id": statement.statement_id,
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "file_name": file_name,
            "first_booking_date": min(line.booking_date for line in statement.lines),
            "last_booking_date": max(line.booking_date for line in statement.lines),
            "report": {},
            "imported_by": principal.user_id,
            "imported_at": at,
        },
    )
    for line, key in zip(statement.lines, line_keys(statement, account), strict=True):
        kept = asdict(without_texts(line))
        kept["line_number"] = kept.pop("number")  # the column's name
        line_id = uuid4()
        inserted = await bank_store.insert_line_once(
            session,
            {
                "line_id": line_id,
                "group_id": group_id,
                "line_key": key,
                "import_id": report.import_id,
                **kept,
                "outcome": Outcome.DEBIT.value if line.amount < 0 else Outcome.TO_REVIEW.value,
                "created_at": at,
            },
        )
        if inserted is not None:
            report.already_imported += 1
            report.ignored += inserted == Outcome.IGNORED.value
            continue
        if line.amount < 0:
            report.debit += 1
            continue
        outcome = await _match_credit(session, principal, Credit(group_id, report.import_id, line_id, line))
        setattr(report, outcome.value, getattr(report, outcome.value) + 1)
    await bank_store.finish_import(session, report.import_id, report.as_dict())
    await outbox.add(
        session,
        record(
            BankStatementImported,
            asdict(report),  # its counts under the same names, but for two
            **outbox.event_context(group_id),
            first_booking_date=min(line.booking_date for line in statement.lines),
            last_booking_date=max(line.booking_date for line in statement.lines),
            top_ups=report.top_up,
            debits=report.debit,
            imported_by=principal.user_id,
        ),
    )
    return report


@dataclass(frozen=True)
class Credit:
    """A credit line being settled or put to review: where it is, what the bank booked."""

    group_id: UUID
    import_id: UUID
    line_id: UUID
    line: StatementLine


@dataclass(frozen=True)
class Review:
    reason: str
    reference: str | None = None
    suggested_payment_id: UUID | None = None


async def _match_credit(session: AsyncSession, principal: Principal, credit: Credit) -> Outcome:
    """What one new credit line does: confirm the declared payment its reference names, credit the
    member whose standing reference it carries, or wait for a coordinator."""
    group_id, line = credit.group_id, credit.line
    found = find_references(line.creditor_reference, line.label)
    payments_found: list[Row] = []
    members_found: list[tuple[str, UUID]] = []
    for reference in found.valid:
        payment = await store.payment_by_reference(session, group_id, reference)  # this group's only
        if payment is not None:
            payments_found.append(payment)
        member_id = await bank_store.member_by_reference(session, group_id, reference)
        if member_id is not None:
            members_found.append((reference, member_id))
    decision: Review | None = None
    if len(payments_found) + len(members_found) > 1:
        decision = Review("the line carries several of the group's references: which one does it pay?")
    elif payments_found:
        payment = payments_found[0]
        decision = _payable(payment)
        if decision is None:
            return await _settle_declared(session, principal, credit, payment, assigned_by=None)
    elif members_found:
        reference, member_id = members_found[0]
        return await _settle_top_up(session, principal, credit, member_id, reference, assigned_by=None)
    elif found.valid:
        decision = Review(
            f"the reference {references.format_reference(found.valid[0])} is not one of the group's",
            reference=found.valid[0],
        )
    elif found.mistyped:
        typed = found.mistyped[0]
        near = [
            r.payment_id
            for r in await bank_store.declared_references(session, group_id)
            if near_miss(typed, r.reference)
        ]
        decision = Review(
            f"{typed} looks like a reference but its check digits are wrong (a typo?)",
            reference=typed,
            suggested_payment_id=near[0] if len(near) == 1 else None,
        )
    else:
        decision = Review("no RF reference in the line")
    await _to_review(session, credit, decision)
    return Outcome.TO_REVIEW


def _payable(payment: Row) -> Review | None:
    """Why a payment named by a line cannot simply be confirmed by it (None: it can)."""
    printed = references.format_reference(payment.reference)
    if payment.kind != Kind.PAYMENT.value or payment.state != State.DECLARED.value:
        return Review(
            f"the payment with reference {printed} is {payment.state} already", payment.reference, payment.payment_id
        )
    if payment.method != Method.TRANSFER.value:
        return Review(
            f"the payment with reference {printed} was declared as {payment.method}, and came by transfer",
            payment.reference,
            payment.payment_id,
        )
    return None


async def _to_review(session: AsyncSession, credit: Credit, review: Review) -> None:
    line = credit.line
    await bank_store.set_line_outcome(
        session,
        credit.line_id,
        outcome=Outcome.TO_REVIEW.value,
        review_reason=review.reason,
        reference=review.reference,
        suggested_payment_id=review.suggested_payment_id,
    )
    kept = without_texts(line)
    await outbox.add(
        session,
        BankLineToReview(
            **outbox.event_context(credit.group_id),
            line_id=credit.line_id,
            import_id=credit.import_id,
            amount=Money(amount=line.amount, currency=line.currency),
            booking_date=line.booking_date,
            counterparty=kept.counterparty,
            label=kept.label,
            reason=review.reason,
            suggested_payment_id=review.suggested_payment_id,
        ),
    )


async def _announce_match(
    session: AsyncSession,
    credit: Credit,
    *,
    payment_id: UUID,
    member_id: UUID,
    outcome: Outcome,
    reference: str | None,
    assigned_by: UUID | None,
) -> None:
    line = credit.line
    await bank_store.settle_payment(session, payment_id, credit.line_id, line.booking_date)
    await bank_store.set_line_outcome(
        session, credit.line_id, outcome=outcome.value, payment_id=payment_id, member_id=member_id, reference=reference
    )
    await outbox.add(
        session,
        BankLineMatched(
            **outbox.event_context(credit.group_id),
            line_id=credit.line_id,
            import_id=credit.import_id,
            payment_id=payment_id,
            member_id=member_id,
            outcome=outcome.value,  # type: ignore[arg-type]  # one of the four settled outcomes
            amount=Money(amount=line.amount, currency=line.currency),
            booking_date=line.booking_date,
            reference=references.format_reference(reference) if reference else None,
            bank_reference=without_texts(line).bank_reference,
            assigned_by=assigned_by,
        ),
    )


def _note(line: StatementLine) -> str:
    reference = f" ({line.bank_reference})" if line.bank_reference else ""
    return f"bank statement line of {line.booking_date.isoformat()}{reference}"


async def _settle_declared(
    session: AsyncSession, principal: Principal, credit: Credit, payment: Row, *, assigned_by: UUID | None
) -> Outcome:
    """The declared transfer confirmed as received, for the amount the bank booked."""
    line = credit.line
    received = Money(amount=line.amount, currency=line.currency)
    corrected = received.amount != payment.amount
    note = _note(line) + (
        f": {received} received, {Money(amount=payment.amount, currency=payment.currency)} declared"
        if corrected
        else ""
    )
    confirmation = usecases.Confirmation(amount=received if corrected else None, note=note)
    await usecases.confirm_payment(session, principal, credit.group_id, payment.payment_id, confirmation)
    outcome = Outcome.ASSIGNED if assigned_by else Outcome.AMOUNT_CORRECTED if corrected else Outcome.MATCHED
    await _announce_match(
        session,
        credit,
        payment_id=payment.payment_id,
        member_id=payment.member_id,
        outcome=outcome,
        reference=payment.reference,
        assigned_by=assigned_by,
    )
    return outcome


async def _settle_top_up(
    session: AsyncSession,
    principal: Principal,
    credit: Credit,
    member_id: UUID,
    reference: str | None,
    *,
    assigned_by: UUID | None,
    order_id: UUID | None = None,
    distribution_id: UUID | None = None,
) -> Outcome:
    """A received transfer for the member (their money pot when linked to nothing)."""
    line = credit.line
    entry = usecases.PaymentEntry(
        method=Method.TRANSFER,
        amount=Money(amount=line.amount, currency=line.currency),
        paid_on=line.booking_date,
        label=_note(line)[:200],
        order_id=order_id,
        distribution_id=distribution_id,
        client_key=f"bank-line-{credit.line_id}",
        source="bank",
    )
    recorded = await usecases.record_payment(session, principal, credit.group_id, member_id, entry)
    outcome = Outcome.ASSIGNED if assigned_by else Outcome.TOP_UP
    await _announce_match(
        session,
        credit,
        payment_id=recorded.payment.payment_id,
        member_id=member_id,
        outcome=outcome,
        reference=reference,
        assigned_by=assigned_by,
    )
    return outcome


# -- review ---------------------------------------------------------------------------------


async def _line_to_review(session: AsyncSession, principal: Principal, group_id: UUID, line_id: UUID) -> Row:
    principal.require_coordinator(group_id)
    await usecases.group_currency(session, group_id)
    await bank_store.lock_group_imports(session, group_id)
    row = await bank_store.get_line(session, group_id, line_id, lock=True)
    if row is None:
        raise NotFound(f"no bank statement line {line_id} in group {group_id}")
    if row.outcome != Outcome.TO_REVIEW.value:
        raise Conflict(f"bank line {line_id} is {row.outcome}: only a line to review can be assigned or ignored")
    return row


async def assign_line(
    session: AsyncSession,
    principal: Principal,
    group_id: UUID,
    line_id: UUID,
    *,
    member_id: UUID,
    payment_id: UUID | None,
    note: str,
) -> Row:
    """A coordinator says whose money a line is. With a declared payment of that member: a
    transfer is confirmed for the line's amount; a cheque, cash or on-the-spot payment is
    cancelled (it came by transfer) and a received transfer recorded for the same order. Without:
    a received transfer credited to the member's account."""
    row = await _line_to_review(session, principal, group_id, line_id)
    await usecases.require_member(session, group_id, member_id)
    credit = Credit(group_id, row.import_id, line_id, record(StatementLine, row, number=row.line_number))
    if payment_id is not None:
        payment = await store.get_payment(session, group_id, payment_id)
        if payment is None or payment.member_id != member_id or payment.kind != Kind.PAYMENT.value:
            raise Invalid(f"payment {payment_id} is not a payment of member {member_id} in group {group_id}")
        if payment.state != State.DECLARED.value:
            raise Conflict(f"payment {payment_id} is {payment.state}: only a declared payment can be settled by a line")
        if payment.method == Method.TRANSFER.value:
            await _settle_declared(session, principal, credit, payment, assigned_by=principal.user_id)
        else:
            await usecases.cancel_payment(
                session, principal, group_id, payment_id, reason=f"paid by bank transfer: {_note(credit.line)}"
            )
            await _settle_top_up(
                session,
                principal,
                credit,
                member_id,
                payment.reference,
                assigned_by=principal.user_id,
                order_id=payment.order_id if payment.amendment_id is None else None,
                distribution_id=payment.distribution_id,
            )
    else:
        await _settle_top_up(session, principal, credit, member_id, None, assigned_by=principal.user_id)
    await bank_store.set_line_outcome(
        session, line_id, reviewed_by=principal.user_id, reviewed_at=clock.now(), review_note=note or None
    )
    found = await bank_store.get_line(session, group_id, line_id)
    assert found is not None
    return found


async def ignore_line(
    session: AsyncSession, principal: Principal, group_id: UUID, line_id: UUID, *, reason: str
) -> Row:
    if not reason.strip():
        raise Invalid("say why the line is ignored")
    await _line_to_review(session, principal, group_id, line_id)
    await bank_store.set_line_outcome(
        session,
        line_id,
        outcome=Outcome.IGNORED.value,
        reviewed_by=principal.user_id,
        reviewed_at=clock.now(),
        review_note=reason.strip(),
    )
    found = await bank_store.get_line(session, group_id, line_id)
    assert found is not None
    return found


# -- standing references --------------------------------------------------------------------


async def member_standing_reference(
    session: AsyncSession, principal: Principal, group_id: UUID, member_id: UUID
) -> str:
    """The member's own reference for money-pot top-ups (drawn on first use)."""
    principal.require_self_or_coordinator(group_id, member_id)
    await usecases.group_currency(session, group_id)
    await usecases.require_member(session, group_id, member_id)
    return await bank_store.ensure_standing_reference(session, group_id, member_id, clock.now())


def count_outcomes(rows: list[Row]) -> dict[str, int]:
    counts = Counter(row.outcome for row in rows)
    return {key: counts.get(key, 0) for key in (*REPORT_KEYS[:-1], "assigned", "ignored")}
