"""Ledger HTTP API: balances, statements, the group balances page, CSV exports, coordinators'
adjustments (opening balances, corrections, reversals) and the audit. See services/ledger/README.md.

Auth (runtime Principal): a member reads only their own account, a coordinator everything of
their group, nobody crosses groups; adjustments need the coordinator role, the audit a
platform administrator.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import Row, Select, Uuid, any_, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import AccountType, Money
from cagette_contracts.inputs import MULTI_LINE, Cursor, Reason, RequestBody, UtcDatetime, check_text
from cagette_runtime import idempotency
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.errors import Invalid, NotFound, Refused
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page, PageRequest
from cagette_runtime.rows import record

from . import domain, operations, wording
from .audit import run_audit
from .domain import EntryStatus, HoldStatus
from .posting import PostedTransaction
from .tables import accounts, holds, members, pending_entries, postings, transactions

router = APIRouter(route_class=idempotency.IdempotentRoute)
_Route = TypeVar("_Route", bound=Callable[..., Any])


# --- reading ---------------------------------------------------------------------------------


class MemberBalance(BaseModel):
    group_id: UUID
    member_id: UUID
    balance: Money = Field(description="Posted balance: positive = credit with the group, negative = owes it")
    pending: Money = Field(description="Declared payments not yet received (not in the balance)")
    held: Money = Field(description="Active money-pot holds")
    available: Money = Field(description="balance - held; pending credits never count")


class BalanceAt(BaseModel):
    group_id: UUID
    member_id: UUID
    at: datetime
    balance: Money


@dataclass(frozen=True)
class _Account:
    account_id: UUID | None  # None: the group is known, the member has no account yet (all zero)
    currency: str
    balance: int


async def _member_account(session: AsyncSession, group_id: UUID, member_id: UUID) -> _Account:
    """The member's account; 404 when the ledger does not know the group."""
    row = (
        await session.execute(
            select(accounts.c.account_id, accounts.c.currency, accounts.c.balance).where(
                accounts.c.group_id == group_id,
                accounts.c.type == AccountType.MEMBER.value,
                accounts.c.member_id == member_id,
            )
        )
    ).first()
    if row is not None:
        return _Account(row.account_id, row.currency, row.balance)
    group = await operations.find_group(session, group_id)
    if group is None:
        raise NotFound(f"the ledger knows no group {group_id}")
    return _Account(None, group.currency, 0)


@dataclass(frozen=True)
class AccountSums:
    pending: int = 0
    held: int = 0


async def _account_sums(session: AsyncSession, account_ids: list[UUID]) -> dict[UUID, AccountSums]:
    """Pending entries and active holds of these accounts only (two indexed queries), never a sum
    over every account of the ledger."""
    if not account_ids:
        return {}
    pending = await session.execute(
        select(pending_entries.c.account_id, func.sum(pending_entries.c.amount))
        .where(pending_entries.c.account_id.in_(account_ids), pending_entries.c.status == EntryStatus.PENDING)
        .group_by(pending_entries.c.account_id)
    )
    held = await session.execute(
        select(holds.c.account_id, func.sum(holds.c.amount))
        .where(
            holds.c.account_id.in_(account_ids), holds.c.status == HoldStatus.ACTIVE, holds.c.expires_at > func.now()
        )
        .group_by(holds.c.account_id)
    )
    pending_of = {account_id: int(amount) for account_id, amount in pending}
    held_of = {account_id: int(amount) for account_id, amount in held}
    return {a: AccountSums(pending_of.get(a, 0), held_of.get(a, 0)) for a in account_ids}


@router.get("/groups/{group_id}/members/{member_id}/balance", response_model=MemberBalance, tags=["balances"])
async def member_balance(
    group_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> MemberBalance:
    """The member's posted balance, pending payments, active holds and available amount."""
    principal.require_self_or_coordinator(group_id, member_id)
    async with database.sessionmaker() as session:
        found = await _member_account(session, group_id, member_id)
        currency, balance, pending, held = found.currency, found.balance, 0, 0
        if found.account_id is not None:
            sums = (await _account_sums(session, [found.account_id]))[found.account_id]
            pending, held = sums.pending, sums.held

    def money(amount: int) -> Money:
        return Money(amount=amount, currency=currency)

    return MemberBalance(
        group_id=group_id,
        member_id=member_id,
        balance=money(balance),
        pending=money(pending),
        held=money(held),
        available=money(balance - held),
    )


@router.get("/groups/{group_id}/members/{member_id}/balance-at", response_model=BalanceAt, tags=["balances"])
async def member_balance_at(
    group_id: UUID,
    member_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    at: Annotated[UtcDatetime, Query(description="ISO 8601; naive means UTC")],
) -> BalanceAt:
    """The member's posted balance as it was at `at` (the running balance of the last posting
    at or before it)."""
    principal.require_self_or_coordinator(group_id, member_id)
    async with database.sessionmaker() as session:
        found = await _member_account(session, group_id, member_id)
        currency, balance = found.currency, 0
        if found.account_id is not None:
            balance = (
                await session.scalar(
                    select(postings.c.balance_after)
                    .where(postings.c.account_id == found.account_id, postings.c.posted_at <= at)
                    .order_by(postings.c.posting_id.desc())
                    .limit(1)
                )
                or 0
            )
    return BalanceAt(group_id=group_id, member_id=member_id, at=at, balance=Money(amount=balance, currency=currency))


class StatementEntry(BaseModel):
    status: str = Field(
        description="'posted', or 'pending' for a declared payment not yet received (not in the balance)"
    )
    at: datetime = Field(description="When it was posted (pending: when it was declared)")
    kind: str
    description: str
    amount: Money = Field(description="Signed as the member sees it: + credits the member")
    balance_after: Money | None = Field(description="Running balance after this entry; null when pending")
    transaction_id: UUID | None = None
    reverses_transaction_id: UUID | None = None
    reversed_by_transaction_id: UUID | None = None
    reason: str | None = None
    payment_id: UUID | None = None
    cursor: int | None = Field(default=None, description="Pass as `before` to get older entries")


class Statement(BaseModel):
    group_id: UUID
    member_id: UUID
    balance: Money
    entries: list[StatementEntry] = Field(description="Newest first; pending entries at the top of the first page")
    next_before: int | None = Field(description="Cursor of the next (older) page, null on the last page")


async def _statement(
    session: AsyncSession,
    group_id: UUID,
    member_id: UUID,
    *,
    limit: int | None,
    before: int | None,
    from_: datetime | None,
    to: datetime | None,
    kind: domain.Kind | None = None,
) -> Statement:
    found = await _member_account(session, group_id, member_id)
    currency, balance = found.currency, found.balance
    group = await operations.find_group(session, group_id)
    language = group.language if group else "fr"
    entries: list[StatementEntry] = []
    next_before = None
    if found.account_id is not None:
        account_id = found.account_id
        if before is None and kind in (None, domain.Kind.PAYMENT):
            pending_query = select(pending_entries).where(
                pending_entries.c.account_id == account_id, pending_entries.c.status == EntryStatus.PENDING
            )
            if from_ is not None:
                pending_query = pending_query.where(pending_entries.c.declared_at >= from_)
            if to is not None:
                pending_query = pending_query.where(pending_entries.c.declared_at < to)
            for row in (await session.execute(pending_query.order_by(pending_entries.c.declared_at.desc()))).all():
                entries.append(
                    StatementEntry(
                        status="pending",
                        at=row.declared_at,
                        kind="payment",
                        description=wording.pending(row.method, row.reference, language),
                        amount=Money(amount=row.amount, currency=row.currency),
                        balance_after=None,
                        payment_id=row.payment_id,
                    )
                )
        reversal = transactions.alias("reversal")
        query = (
            select(
                postings.c.posting_id,
                postings.c.amount,
                postings.c.balance_after,
                postings.c.posted_at,
                postings.c.currency,
                transactions.c.transaction_id,
                transactions.c.kind,
                transactions.c.memo,
                transactions.c.reason,
                transactions.c.reverses_transaction_id,
                reversal.c.transaction_id.label("reversed_by"),
                pending_entries.c.payment_id,
            )
            .join(transactions, transactions.c.transaction_id == postings.c.transaction_id)
            .outerjoin(reversal, reversal.c.reverses_transaction_id == transactions.c.transaction_id)
            .outerjoin(pending_entries, pending_entries.c.transaction_id == transactions.c.transaction_id)
            .where(postings.c.account_id == account_id)
            .order_by(postings.c.posting_id.desc())
        )
        if before is not None:
            query = query.where(postings.c.posting_id < before)
        if kind is not None:
            query = query.where(transactions.c.kind == kind.value)
        if from_ is not None:
            query = query.where(postings.c.posted_at >= from_)
        if to is not None:
            query = query.where(postings.c.posted_at < to)
        if limit is not None:
            query = query.limit(limit + 1)
        rows = (await session.execute(query)).all()
        if limit is not None and len(rows) > limit:
            rows = rows[:limit]
            next_before = rows[-1].posting_id
        for row in rows:
            entries.append(
                record(
                    StatementEntry,
                    row,
                    status="posted",
                    at=row.posted_at,
                    description=_described(row.kind, row.memo, row.reason, language),
                    amount=Money(amount=row.amount, currency=row.currency),
                    balance_after=Money(amount=row.balance_after, currency=row.currency),
                    reversed_by_transaction_id=row.reversed_by,
                    cursor=row.posting_id,
                )
            )
    return Statement(
        group_id=group_id,
        member_id=member_id,
        balance=Money(amount=balance, currency=currency),
        entries=entries,
        next_before=next_before,
    )


def _described(kind: str, memo: str, reason: str | None, language: str) -> str:
    """Opening balances and a coordinator's corrections are worded when read (their memo is the
    coordinator's); a correction worded when posted (a product not delivered, R6) keeps its words."""
    if kind == "opening_balance":
        return wording.opening_balance("" if memo == "opening balance" else memo, language)
    if kind == "correction" and memo == "correction":
        return wording.correction(reason or memo, language)
    return memo


@router.get("/groups/{group_id}/members/{member_id}/statement", response_model=Statement, tags=["statements"])
async def member_statement(
    group_id: UUID,
    member_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[Cursor | None, Query(description="`next_before` of the previous page")] = None,
    from_: Annotated[UtcDatetime | None, Query(alias="from", description="Inclusive, ISO 8601")] = None,
    to: Annotated[UtcDatetime | None, Query(description="Exclusive, ISO 8601")] = None,
    kind: Annotated[
        domain.Kind | None, Query(description="only entries of this kind, e.g. opening_balance for the payment history")
    ] = None,
) -> Statement:
    """The member's account history, newest first, with the running balance after each entry."""
    principal.require_self_or_coordinator(group_id, member_id)
    async with database.snapshot() as session:  # the balance and the entries from one state
        return await _statement(session, group_id, member_id, limit=limit, before=before, from_=from_, to=to, kind=kind)


STATEMENT_CSV_COLUMNS = [
    "date",
    "status",
    "kind",
    "description",
    "amount",
    "balance_after",
    "currency",
    "transaction_id",
    "reverses_transaction_id",
    "reason",
    "payment_id",
]
BALANCES_CSV_COLUMNS = ["member_id", "name", "email", "standing", "balance", "pending", "held", "available", "currency"]


def _text_cell(value: str | None) -> str:
    """Free text (descriptions, reasons) can never start a spreadsheet formula."""
    value = value or ""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


CSV_BATCH = 500  # rows read per query while a CSV export streams


def _csv_stream(batches: AsyncIterator[list[list[str]]], columns: list[str], filename: str) -> StreamingResponse:
    """A CSV written as its batches are read: memory stays one batch whatever the export's size."""

    async def body() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(columns)
        async for rows in batches:
            writer.writerows(rows)
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue().encode("utf-8")

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/groups/{group_id}/members/{member_id}/statement.csv",
    tags=["statements"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def member_statement_csv(
    group_id: UUID,
    member_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    from_: Annotated[UtcDatetime | None, Query(alias="from")] = None,
    to: Annotated[UtcDatetime | None, Query()] = None,
) -> Response:
    """The whole statement (or a date range) as CSV; columns in services/ledger/README.md."""
    principal.require_self_or_coordinator(group_id, member_id)
    async with database.sessionmaker() as session:
        await _member_account(session, group_id, member_id)  # a 404 before the download starts

    async def batches() -> AsyncIterator[list[list[str]]]:
        before: int | None = None
        while True:
            async with database.snapshot() as session:
                statement = await _statement(
                    session, group_id, member_id, limit=CSV_BATCH, before=before, from_=from_, to=to
                )
            yield [_statement_cells(e) for e in statement.entries]
            if statement.next_before is None:
                return
            before = statement.next_before

    return _csv_stream(batches(), STATEMENT_CSV_COLUMNS, f"statement-{member_id}.csv")


def _statement_cells(e: StatementEntry) -> list[str]:
    return [
        e.at.astimezone(UTC).isoformat(),
        e.status,
        e.kind,
        _text_cell(e.description),
        e.amount.decimal_text(),
        e.balance_after.decimal_text() if e.balance_after else "",
        e.amount.currency,
        str(e.transaction_id or ""),
        str(e.reverses_transaction_id or ""),
        _text_cell(e.reason),
        str(e.payment_id or ""),
    ]


class MemberLine(BaseModel):
    member_id: UUID
    name: str | None = Field(description="As the orders service announced it; null until it has")
    email: str | None
    standing: domain.Standing
    balance: Money
    pending: Money
    held: Money
    available: Money


class Totals(BaseModel):
    members: int
    in_debt: Money = Field(description="Sum of negative balances (what members owe)")
    in_credit: Money = Field(description="Sum of positive balances (what the group owes)")
    net: Money
    pending: Money
    counts: dict[domain.Standing, int]


class GroupBalances(BaseModel):
    group_id: UUID
    currency: str
    in_debt: list[MemberLine] = Field(description="Most owed first")
    balanced: list[MemberLine]
    in_credit: list[MemberLine] = Field(description="Smallest credit first (the page is ordered by balance)")
    totals: Totals


def _member_accounts(group_id: UUID) -> Select[Any]:
    return (
        select(accounts.c.account_id, accounts.c.member_id, accounts.c.balance, accounts.c.currency)
        .add_columns(members.c.name, members.c.email)
        .outerjoin(members, (members.c.group_id == accounts.c.group_id) & (members.c.member_id == accounts.c.member_id))
        .where(accounts.c.group_id == group_id, accounts.c.type == AccountType.MEMBER.value)
    )


async def _lines_of(session: AsyncSession, rows: Sequence[Row[Any]]) -> list[MemberLine]:
    sums = await _account_sums(session, [row.account_id for row in rows])
    lines = []
    for row in rows:

        def money(amount: int, currency: str = row.currency) -> Money:
            return Money(amount=int(amount), currency=currency)

        found = sums[row.account_id]
        lines.append(
            MemberLine(
                member_id=row.member_id,
                name=row.name,
                email=row.email,
                standing=domain.standing(row.balance),
                balance=money(row.balance),
                pending=money(found.pending),
                held=money(found.held),
                available=money(row.balance - found.held),
            )
        )
    return lines


async def _member_lines(session: AsyncSession, group_id: UUID, page: PageRequest) -> list[MemberLine]:
    """One page of the group's member lines, most owed first (by balance, then member id)."""
    rows = (
        await session.execute(page.apply(_member_accounts(group_id), accounts.c.balance, accounts.c.member_id))
    ).all()
    return await _lines_of(session, rows)


async def _totals(session: AsyncSession, group_id: UUID, currency: str) -> Totals:
    """The whole group's figures in two aggregate queries, whatever the page shown."""
    member_accounts = (accounts.c.group_id == group_id) & (accounts.c.type == AccountType.MEMBER.value)
    balance = accounts.c.balance
    figures = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(balance).filter(balance < 0), 0),
                func.coalesce(func.sum(balance).filter(balance > 0), 0),
                func.coalesce(func.sum(balance), 0),
                func.count().filter(balance < 0),
                func.count().filter(balance == 0),
                func.count().filter(balance > 0),
            ).where(member_accounts)
        )
    ).one()
    # Pending entries are members' only: summed by group through their own index, no join (a join
    # to accounts is planned as a nested loop over every account when statistics are missing).
    pending = await session.scalar(
        select(func.coalesce(func.sum(pending_entries.c.amount), 0)).where(
            pending_entries.c.group_id == group_id, pending_entries.c.status == EntryStatus.PENDING
        )
    )

    def money(amount: int) -> Money:
        return Money(amount=int(amount), currency=currency)

    members_count, in_debt, in_credit, net, debts, balanced, credits = figures
    return Totals(
        members=members_count,
        in_debt=money(in_debt),
        in_credit=money(in_credit),
        net=money(net),
        pending=money(pending or 0),
        counts={
            domain.Standing.IN_DEBT: debts,
            domain.Standing.BALANCED: balanced,
            domain.Standing.IN_CREDIT: credits,
        },
    )


@router.get("/groups/{group_id}/balances", response_model=GroupBalances, tags=["balances"], responses=PAGINATED)
async def group_balances(
    group_id: UUID, principal: CurrentPrincipal, database: DatabaseDep, page: Page, response: Response
) -> GroupBalances:
    """The member balances page (R5): the group's totals, and one page of its members (most owed
    first, by balance), grouped in debt / balanced / in credit; `X-Next-Cursor` gives the next."""
    principal.require_coordinator(group_id)
    async with database.sessionmaker() as session:
        group = await operations.require_group(session, group_id)
        lines = await _member_lines(session, group_id, page)
        totals = await _totals(session, group_id, group.currency)
    shown = page.finish(lines, lambda line: (line.balance.amount, line.member_id), response)
    by = {s: [line for line in shown if line.standing == s] for s in domain.Standing}
    return GroupBalances(
        group_id=group_id,
        currency=group.currency,
        in_debt=by[domain.Standing.IN_DEBT],
        balanced=by[domain.Standing.BALANCED],
        in_credit=by[domain.Standing.IN_CREDIT],
        totals=totals,
    )


@router.get(
    "/groups/{group_id}/balances.csv",
    tags=["balances"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def group_balances_csv(group_id: UUID, principal: CurrentPrincipal, database: DatabaseDep) -> Response:
    """Every member's balance as CSV (most owed first); columns in services/ledger/README.md."""
    principal.require_coordinator(group_id)
    async with database.sessionmaker() as session:
        currency = (await operations.require_group(session, group_id)).currency

    async def batches() -> AsyncIterator[list[list[str]]]:
        after: tuple[int, UUID] | None = None
        by_balance = tuple_(accounts.c.balance, accounts.c.member_id)
        while True:
            query = _member_accounts(group_id).order_by(accounts.c.balance, accounts.c.member_id).limit(CSV_BATCH)
            if after is not None:
                query = query.where(by_balance > tuple_(*after))
            async with database.sessionmaker() as session:
                rows = (await session.execute(query)).all()
                lines = await _lines_of(session, rows)
            yield [_balance_cells(line, currency) for line in lines]
            if len(rows) < CSV_BATCH:
                return
            after = (rows[-1].balance, rows[-1].member_id)

    return _csv_stream(batches(), BALANCES_CSV_COLUMNS, f"balances-{group_id}.csv")


def _balance_cells(line: MemberLine, currency: str) -> list[str]:
    return [
        str(line.member_id),
        _text_cell(line.name or ""),
        _text_cell(line.email or ""),
        line.standing.value,
        line.balance.decimal_text(),
        line.pending.decimal_text(),
        line.held.decimal_text(),
        line.available.decimal_text(),
        currency,
    ]


class GroupAccount(BaseModel):
    account_id: UUID
    type: AccountType
    balance: Money


@router.get("/groups/{group_id}/accounts", response_model=list[GroupAccount], tags=["balances"])
async def group_accounts(group_id: UUID, principal: CurrentPrincipal, database: DatabaseDep) -> list[GroupAccount]:
    """The group's own accounts (sales, cheques, cash, transfers, card clearing, card fees,
    opening-balance equity) and their balances."""
    principal.require_coordinator(group_id)
    async with database.sessionmaker() as session:
        await operations.require_group(session, group_id)
        rows = (
            await session.execute(
                select(accounts)
                .where(accounts.c.group_id == group_id, accounts.c.member_id.is_(None))
                .order_by(accounts.c.type)
            )
        ).all()
    return [
        GroupAccount(
            account_id=r.account_id, type=AccountType(r.type), balance=Money(amount=r.balance, currency=r.currency)
        )
        for r in rows
    ]


# --- adjustments -----------------------------------------------------------------------------


class PostingView(BaseModel):
    account_id: UUID
    account_type: AccountType
    member_id: UUID | None
    amount: Money
    balance_after: Money


class TransactionView(BaseModel):
    transaction_id: UUID
    kind: str
    idempotency_key: str
    replayed: bool = Field(description="True when this key was already posted: the original result")
    reverses_transaction_id: UUID | None = None
    reason: str | None = None
    postings: list[PostingView]


def _transaction_view(posted: PostedTransaction) -> TransactionView:
    return TransactionView(
        transaction_id=posted.transaction_id,
        kind=posted.draft.kind,
        idempotency_key=posted.draft.idempotency_key,
        replayed=posted.replayed,
        reverses_transaction_id=posted.draft.reverses,
        reason=posted.draft.reason,
        postings=[record(PostingView, dict(leg.line())) for leg in posted.legs],
    )


def _view(posted: PostedTransaction) -> JSONResponse:
    view = _transaction_view(posted)
    return JSONResponse(status_code=200 if posted.replayed else 201, content=view.model_dump(mode="json"))


def _adjustment(path: str, **options: Any) -> Callable[[_Route], _Route]:
    """A route that posts one adjustment and answers it as a TransactionView (201; 200 replayed)."""
    return router.post(path, response_model=TransactionView, status_code=201, tags=["adjustments"], **options)


Memo = Annotated[str, Field(max_length=500), MULTI_LINE]


class OpeningBalanceRequest(RequestBody):
    amount: Money = Field(description="Signed: positive = the member has a credit, negative = owes the group")
    memo: Memo = ""


@_adjustment("/groups/{group_id}/members/{member_id}/opening-balance", dependencies=[idempotency.REQUIRED])
async def post_opening_balance(
    group_id: UUID, member_id: UUID, body: OpeningBalanceRequest, principal: CurrentPrincipal, database: DatabaseDep
) -> JSONResponse:
    """Record the member's opening balance ("reprise de solde", R15) against opening-balance
    equity. Once per member: the same amount again replays (200), another amount is 409; to
    change it, reverse it first, then post the right one."""
    principal.require_coordinator(group_id)
    draft = domain.opening_balance(group_id, member_id, body.amount, recorded_by=principal.user_id, memo=body.memo)
    async with database.transaction() as session:
        return _view(await operations.post_opening_balance(session, draft))


class CorrectionRequest(RequestBody):
    amount: Money = Field(description="Signed as the member sees it: + credits the member, - debits")
    reason: Reason
    against: AccountType = Field(default=AccountType.SALES, description="The group account on the other side")


@_adjustment("/groups/{group_id}/members/{member_id}/corrections")
async def post_correction(
    group_id: UUID,
    member_id: UUID,
    body: CorrectionRequest,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    idempotency_key: idempotency.RequiredKey,
) -> JSONResponse:
    """A correction of the member's balance, with a required reason. The `Idempotency-Key` also
    names the ledger transaction (per coordinator), so even a retry past the key's retention
    cannot post it twice."""
    principal.require_coordinator(group_id)
    if body.against == AccountType.MEMBER:
        raise Invalid("a correction is posted against a group account, not a member account")
    named = idempotency_key if len(idempotency_key) <= 100 else hashlib.sha256(idempotency_key.encode()).hexdigest()
    key = f"correction:{group_id}:{principal.user_id}:{named}"
    draft = domain.correction(
        group_id,
        member_id,
        body.amount,
        reason=body.reason,
        against=body.against,
        key=key,
        recorded_by=principal.user_id,
    )
    async with database.transaction() as session:
        return _view(await operations.adjust(session, draft))


class ReversalRequest(RequestBody):
    reason: Reason


@_adjustment("/groups/{group_id}/transactions/{transaction_id}/reversal", dependencies=[idempotency.REQUIRED])
async def post_reversal(
    group_id: UUID, transaction_id: UUID, body: ReversalRequest, principal: CurrentPrincipal, database: DatabaseDep
) -> JSONResponse:
    """Undo a transaction with a reversing one that points at it (nothing is ever edited)."""
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        return _view(
            await operations.reverse(
                session, group_id, transaction_id, reason=body.reason, recorded_by=principal.user_id
            )
        )


class ImportResult(BaseModel):
    checked: bool = Field(default=False, description="True for a check (`?check=true`): nothing was recorded")
    imported: int = Field(description="New opening balances (to be recorded, for a check)")
    replayed: int = Field(description="Lines already recorded with the same amount")
    transactions: list[TransactionView]


class _Rehearsed(Exception):
    """A check went through every step of the import: its transaction is rolled back."""

    def __init__(self, posted: list[PostedTransaction]) -> None:
        super().__init__("checked")
        self.posted = posted


@router.post(
    "/groups/{group_id}/opening-balances",
    dependencies=[idempotency.REQUIRED],
    response_model=ImportResult,
    tags=["adjustments"],
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}},
)
async def import_opening_balances(
    group_id: UUID,
    principal: CurrentPrincipal,
    request: Request,
    database: DatabaseDep,
    check: Annotated[
        bool,
        Query(description="true: go through every step and refusal, answer what would be recorded, record nothing"),
    ] = False,
) -> ImportResult:
    """Opening balances of many members from CSV (columns `member_id,amount[,memo]`, amount in
    major units like `-12.50`), all or nothing: any bad line refuses the whole file (422 with
    every error by line) and records nothing. With `check=true` the same import is run and
    rolled back: the preview a coordinator confirms before importing (its transaction ids are
    not kept, except for lines already recorded)."""
    principal.require_coordinator(group_id)
    raw = await request.body()  # bounded by the service's body size limit
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the file must be UTF-8 text") from None
    try:
        async with database.transaction() as session:
            posted = await _import_opening_balances(session, group_id, content, principal.user_id)
            if check:
                raise _Rehearsed(posted)
    except _Rehearsed as rehearsed:
        posted = rehearsed.posted
    return ImportResult(
        checked=check,
        imported=sum(not p.replayed for p in posted),
        replayed=sum(p.replayed for p in posted),
        transactions=[_transaction_view(p) for p in posted],
    )


async def _import_opening_balances(
    session: AsyncSession, group_id: UUID, content: str, recorded_by: UUID | None
) -> list[PostedTransaction]:
    group = await operations.require_group(session, group_id)
    rows = parse_opening_balances(content, group_id, group.currency, recorded_by)
    # One query for every member of the file.
    member_ids = [leg.account.member_id for _, draft in rows for leg in draft.member_legs()]
    known = set(
        (
            await session.scalars(
                select(accounts.c.member_id).where(
                    accounts.c.group_id == group_id,
                    accounts.c.type == AccountType.MEMBER.value,
                    accounts.c.member_id == any_(bindparam("member_ids", member_ids, type_=ARRAY(Uuid))),
                )
            )
        ).all()
    )
    errors = [
        f"line {line_number}: unknown account: member {leg.account.member_id} has no account in group {group_id}"
        for line_number, draft in rows
        for leg in draft.member_legs()
        if leg.account.member_id not in known
    ]
    if errors:
        raise refused_file(errors)
    # Set-wise: the accounts are locked in the global order by one statement (concurrent imports
    # never deadlock) and every line is posted by a fixed number of statements.
    try:
        return await operations.post_opening_balances(session, group_id, rows)
    except operations.OpeningBalancesRefused as refused:
        raise refused_file(refused.errors) from None


OPENING_BALANCES_MAX_ROWS = 10_000
ERRORS_LISTED = 20


def refused_file(errors: list[str]) -> Invalid:
    """The whole file refused: the first errors by line, and how many more there are."""
    return Invalid(
        "the file was refused, nothing was recorded",
        errors=errors[:ERRORS_LISTED],
        more_errors=max(len(errors) - ERRORS_LISTED, 0),
    )


def parse_opening_balances(
    content: str, group_id: UUID, currency: str, recorded_by: UUID | None
) -> list[tuple[int, domain.TransactionDraft]]:
    """CSV text -> (line number, draft) per row; every problem reported at once, by line."""
    reader = csv.DictReader(io.StringIO(content, newline=""))
    errors: list[str] = []
    drafts: list[tuple[int, domain.TransactionDraft]] = []
    seen: dict[UUID, int] = {}
    try:
        fields = [f.strip() for f in reader.fieldnames or []]
        if "member_id" not in fields or "amount" not in fields:
            raise Invalid("the CSV needs a header line with the columns member_id,amount (and optionally memo)")
        reader.fieldnames = fields
        for row in reader:
            line = reader.line_num
            if len(seen) >= OPENING_BALANCES_MAX_ROWS:
                raise Invalid(f"the file has more than {OPENING_BALANCES_MAX_ROWS} opening balances: split it")
            try:
                member_id = UUID((row.get("member_id") or "").strip())
            except ValueError:
                errors.append(f"line {line}: member_id {(row.get('member_id') or '')[:40]!r} is not a UUID")
                continue
            if member_id in seen:
                errors.append(f"line {line}: member {member_id} already appears on line {seen[member_id]}")
                continue
            seen[member_id] = line
            try:
                memo = check_text((row.get("memo") or "").strip(), multiline=True)
                if len(memo) > 500:
                    raise Invalid("the memo is longer than 500 characters")
                amount = domain.parse_decimal_amount(row.get("amount") or "", currency)
                drafts.append(
                    (line, domain.opening_balance(group_id, member_id, amount, recorded_by=recorded_by, memo=memo))
                )
            except ValueError as exc:
                errors.append(f"line {line}: the memo {exc}")
            except Refused as exc:
                errors.append(f"line {line}: {exc.reason}")
    except csv.Error as exc:
        # A bare CR in an unquoted field, a field over the csv module's limit: the rest of the
        # file cannot be read reliably.
        errors.append(f"line {reader.line_num + 1}: not readable as CSV ({exc})")
    if errors:
        raise refused_file(errors)
    if not drafts:
        raise Invalid("the file has no opening balances")
    return drafts


# --- audit -----------------------------------------------------------------------------------


@router.get("/admin/audit", tags=["operations"])
async def audit(
    principal: CurrentPrincipal, database: DatabaseDep, group_id: Annotated[UUID | None, Query()] = None
) -> JSONResponse:
    """Check the ledger's invariants (platform administrators). 200 with ok=true when every
    check passed, 409 with the breaches otherwise."""
    principal.require_platform_admin()
    database = database
    async with database.engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="REPEATABLE READ")
        async with connection.begin():
            report = await run_audit(AsyncSession(bind=connection), group_id)
    return JSONResponse(status_code=200 if report.ok else 409, content=report.as_dict())
