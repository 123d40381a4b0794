"""The ledger's use cases, each inside the caller's database transaction (adapters: the message
handlers, the hold request/reply endpoint and the HTTP API call these)."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    AccountType,
    HoldDecision,
    Money,
    PaymentCancelled,
    PaymentDeclared,
    PaymentMethod,
    PaymentReceived,
    PaymentReversed,
    PlaceHold,
)
from cagette_contracts.common import DEFAULT_TIME_ZONE
from cagette_runtime import clock, outbox
from cagette_runtime.db import AnyRow
from cagette_runtime.errors import Conflict, Invalid, NotFound, NotYet
from cagette_runtime.rows import field_names, record

from . import domain, wording
from .domain import AccountRef, EntryStatus, HoldStatus, Leg, TransactionDraft
from .posting import PostedTransaction, lock_accounts, post, post_many
from .tables import accounts, groups, holds, pending_entries, postings, transactions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    group_id: UUID
    currency: str
    allow_negative_money_pot: bool
    payments_enabled: bool = True
    language: str = "fr"
    time_zone: str = DEFAULT_TIME_ZONE


_GROUP_COLUMNS = [groups.c[name] for name in field_names(Group)]


async def find_group(session: AsyncSession, group_id: UUID) -> Group | None:
    row = (await session.execute(select(*_GROUP_COLUMNS).where(groups.c.group_id == group_id))).first()
    return record(Group, row) if row else None


async def find_groups(session: AsyncSession, group_ids: set[UUID]) -> list[Group]:
    if not group_ids:
        return []
    rows = (await session.execute(select(*_GROUP_COLUMNS).where(groups.c.group_id.in_(group_ids)))).all()
    return [record(Group, row) for row in rows]


async def require_group(session: AsyncSession, group_id: UUID) -> Group:
    group = await find_group(session, group_id)
    if group is None:
        raise NotFound(f"the ledger knows no group {group_id} (it learns groups from the orders service)")
    return group


async def check_currency(session: AsyncSession, group_id: UUID, currency: str) -> None:
    group = await find_group(session, group_id)
    if group is not None and group.currency != currency:
        raise Invalid(f"group {group_id} keeps its accounts in {group.currency}, not {currency}")


async def post_and_publish(session: AsyncSession, draft: TransactionDraft) -> PostedTransaction:
    """Post `draft` (idempotently) and, the first time only, queue its events in the outbox."""
    await check_currency(session, draft.group_id, draft.currency)
    posted = await post(session, draft)
    if not posted.replayed:
        await outbox.add(session, *posted.events())
    return posted


async def post_many_and_publish(
    session: AsyncSession, drafts: list[TransactionDraft], order_ids: list[UUID | None]
) -> list[PostedTransaction]:
    """Post many drafts (currencies already checked) with their events, in a fixed number of
    statements; those with an order id (see domain.hold_key) capture its active holds."""
    posted = await post_many(session, drafts)
    events = [event for result in posted if not result.replayed for event in result.events()]
    await outbox.add(session, *events)
    captures = [
        {"order": order_id, "tx": result.transaction_id}
        for order_id, result in zip(order_ids, posted, strict=True)
        if order_id is not None
    ]
    if captures:
        await session.execute(
            update(holds)
            .where(holds.c.order_id == bindparam("order"), holds.c.status == HoldStatus.ACTIVE)
            .values(status=HoldStatus.CAPTURED, resolved_at=func.now(), transaction_id=bindparam("tx")),
            captures,
        )
    return posted


async def member_account_id(session: AsyncSession, group_id: UUID, member_id: UUID) -> UUID | None:
    return await session.scalar(
        select(accounts.c.account_id).where(
            accounts.c.group_id == group_id,
            accounts.c.type == AccountType.MEMBER.value,
            accounts.c.member_id == member_id,
        )
    )


async def open_member_account(session: AsyncSession, group_id: UUID, member_id: UUID, currency: str) -> UUID:
    await session.execute(
        pg_insert(accounts)
        .values(
            account_id=uuid.uuid4(),
            group_id=group_id,
            type=AccountType.MEMBER.value,
            member_id=member_id,
            currency=currency,
        )
        .on_conflict_do_nothing(constraint="accounts_one_per_owner")
    )
    account_id = await member_account_id(session, group_id, member_id)
    assert account_id is not None
    return account_id


# --- orders ----------------------------------------------------------------------------------


async def confirm_order(session: AsyncSession, draft: TransactionDraft, order_id: UUID) -> PostedTransaction:
    """Post what an order, a subscription or an addition to either owes; an active hold placed
    for it (PlaceHold.order_id = `order_id`) becomes that posted debit."""
    posted = await post_and_publish(session, draft)
    await session.execute(
        update(holds)
        .where(holds.c.order_id == order_id, holds.c.status == HoldStatus.ACTIVE)
        .values(status=HoldStatus.CAPTURED, resolved_at=func.now(), transaction_id=posted.transaction_id)
    )
    return posted


# --- payments --------------------------------------------------------------------------------


async def declare_payment(session: AsyncSession, event: PaymentDeclared) -> None:
    """A pending credit (R16): shown in the history, never in the balance. Ignored when the
    payment was already received or cancelled (messages may arrive out of order), and for the
    money pot, which moves no money."""
    if event.method == PaymentMethod.MONEY_POT:
        log.info("payment %s is a money-pot payment: nothing pending", event.payment_id)
        return
    account_id = await _entry_account(session, event)
    await session.execute(
        _new_entry(event, account_id, EntryStatus.PENDING, event.reference).on_conflict_do_nothing(
            index_elements=[pending_entries.c.payment_id]
        )
    )


async def _entry_account(session: AsyncSession, event: PaymentDeclared | PaymentCancelled) -> UUID:
    """The member's account a pending entry of `event`'s payment stands on (opened if need be)."""
    await check_currency(session, event.group_id, event.amount.currency)
    return await open_member_account(session, event.group_id, event.member_id, event.amount.currency)


def _new_entry(
    event: PaymentDeclared | PaymentReceived | PaymentCancelled,
    account_id: UUID,
    status: EntryStatus,
    reference: str | None,
    **resolution: object,
) -> Insert:
    """The pending entry of `event`'s payment; `resolution` (resolved_at, ...) for one recorded
    already resolved."""
    return pg_insert(pending_entries).values(
        payment_id=event.payment_id,
        group_id=event.group_id,
        member_id=event.member_id,
        account_id=account_id,
        amount=event.amount.amount,
        currency=event.amount.currency,
        method=event.method.value,
        reference=reference,
        order_id=event.order_id,
        status=status,
        declared_at=event.occurred_at,
        **resolution,
    )


async def receive_payment(session: AsyncSession, event: PaymentReceived) -> PostedTransaction:
    """Post the credit, against the clearing account of the method actually used; a pending entry
    for the same payment becomes posted (with the received amount and method, which may differ
    from the declared ones, R20)."""
    group = await find_group(session, event.group_id)
    draft = domain.payment_received(event)
    draft = dataclasses.replace(draft, memo=wording.received(event, group.language if group else "fr"))
    posted = await post_and_publish(session, draft)
    entry = (
        await session.execute(
            select(pending_entries.c.status, pending_entries.c.transaction_id, pending_entries.c.method)
            .where(pending_entries.c.payment_id == event.payment_id)
            .with_for_update()
        )
    ).first()
    if entry is None:
        # A manual entry (or the declaration is still on its way): record it as resolved so a
        # late declaration does not show a pending entry for money already received.
        account_id = posted.legs[0].account_id if posted.legs[0].account.member_id else posted.legs[1].account_id
        entry_row = _new_entry(
            event,
            account_id,
            EntryStatus.POSTED,
            event.reference,
            resolved_at=func.now(),
            transaction_id=posted.transaction_id,
            resolution="received",
        )
        await session.execute(entry_row.on_conflict_do_nothing(index_elements=[pending_entries.c.payment_id]))
    elif entry.status == EntryStatus.PENDING:
        await session.execute(
            update(pending_entries)
            .where(pending_entries.c.payment_id == event.payment_id)
            .values(
                status=EntryStatus.POSTED,
                resolved_at=func.now(),
                transaction_id=posted.transaction_id,
                resolution=f"received {Money(amount=event.amount.amount, currency=event.amount.currency)}"
                f" by {event.method.value}"
                + (f" (declared {entry.method})" if entry.method != event.method.value else ""),
            )
        )
    # status voided: the money arrived after all; the credit is posted, the voided entry stays.
    return posted


async def cancel_payment(session: AsyncSession, event: PaymentCancelled) -> None:
    """Void the pending entry. A cancellation that overtakes its declaration leaves a voided
    entry, so the late declaration shows nothing pending."""
    entry = (
        await session.execute(
            select(pending_entries.c.status).where(pending_entries.c.payment_id == event.payment_id).with_for_update()
        )
    ).first()
    resolution = f"cancelled: {event.reason}".strip(": ")
    if entry is None:
        account_id = await _entry_account(session, event)
        await session.execute(
            _new_entry(event, account_id, EntryStatus.VOIDED, None, resolved_at=func.now(), resolution=resolution)
        )
    elif entry.status == EntryStatus.PENDING:
        await session.execute(
            update(pending_entries)
            .where(pending_entries.c.payment_id == event.payment_id)
            .values(status=EntryStatus.VOIDED, resolved_at=func.now(), resolution=resolution)
        )
    elif entry.status == EntryStatus.POSTED:
        raise Invalid(
            f"payment {event.payment_id} was already received and posted; undo it with a refund or a reversal"
        )


# --- adjustments -----------------------------------------------------------------------------


async def require_member_account(session: AsyncSession, group_id: UUID, member_id: UUID) -> UUID:
    account_id = await member_account_id(session, group_id, member_id)
    if account_id is None:
        raise NotFound(f"unknown account: member {member_id} has no account in group {group_id}")
    return account_id


async def adjust(session: AsyncSession, draft: TransactionDraft) -> PostedTransaction:
    """Post a coordinator's adjustment: the group and the member's account must exist and the
    amount must be in the group's currency."""
    group = await require_group(session, draft.group_id)
    if draft.currency != group.currency:
        raise Invalid(f"group {group.group_id} keeps its accounts in {group.currency}, not {draft.currency}")
    for leg in draft.member_legs():
        assert leg.account.member_id is not None
        await require_member_account(session, draft.group_id, leg.account.member_id)
    return await post_and_publish(session, draft)


async def post_opening_balance(session: AsyncSession, draft: TransactionDraft) -> PostedTransaction:
    """One live opening balance per member: the same again replays, another amount is refused,
    unless the current one was reversed, in which case the new one is recorded after it."""
    ((keyed, _),) = await _keyed_openings(session, draft.group_id, [draft])
    return await adjust(session, keyed)  # another amount under a live key: post refuses it (409)


@dataclass(frozen=True)
class _RecordedOpening:
    fingerprint: str
    reversed: bool


async def _keyed_openings(
    session: AsyncSession, group_id: UUID, drafts: list[TransactionDraft]
) -> list[tuple[TransactionDraft, bool]]:
    """Each draft under the key its member's live opening balance takes (after every reversed
    one), and whether another amount is already recorded under it: one read of the group's
    opening balances, whatever their number."""
    reversal = transactions.alias("reversal")
    recorded = {
        row.idempotency_key: _RecordedOpening(row.fingerprint, row.reversed_by is not None)
        for row in (
            await session.execute(
                select(
                    transactions.c.idempotency_key,
                    transactions.c.fingerprint,
                    reversal.c.transaction_id.label("reversed_by"),
                )
                .outerjoin(reversal, reversal.c.reverses_transaction_id == transactions.c.transaction_id)
                .where(transactions.c.group_id == group_id, transactions.c.kind == domain.Kind.OPENING_BALANCE)
            )
        ).all()
    }
    keyed: list[tuple[TransactionDraft, bool]] = []
    for draft in drafts:
        key, n = draft.idempotency_key, 0
        while key in recorded and recorded[key].reversed:
            n += 1
            key = f"{draft.idempotency_key}:{n}"
        with_key = dataclasses.replace(draft, idempotency_key=key)
        keyed.append((with_key, key in recorded and recorded[key].fingerprint != with_key.fingerprint()))
    return keyed


async def post_opening_balances(
    session: AsyncSession, group_id: UUID, drafts: list[tuple[int, TransactionDraft]]
) -> list[PostedTransaction]:
    """Many opening balances at once, with post_opening_balance's rules, in a fixed number of
    statements whatever their count: one read of the group's recorded opening balances, then
    one post_many. `drafts` are (line number, draft); a line whose member already has another
    live opening balance refuses the whole set, every such line named."""
    keyed = await _keyed_openings(session, group_id, [draft for _, draft in drafts])
    errors = [
        f"line {line_number}: member {next(leg.account.member_id for leg in draft.member_legs())} already has"
        " another opening balance: reverse it before recording a new one"
        for (line_number, _), (draft, conflicting) in zip(drafts, keyed, strict=True)
        if conflicting
    ]
    if errors:
        raise OpeningBalancesRefused(errors)
    return await post_many_and_publish(session, [draft for draft, _ in keyed], [None] * len(keyed))


class OpeningBalancesRefused(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} opening balances refused")
        self.errors = errors


async def _legs(session: AsyncSession, group_id: UUID, transaction_id: UUID) -> list[Leg]:
    """A posted transaction's legs, in posting order (what its reversal negates)."""
    rows = (
        await session.execute(
            select(postings.c.amount, postings.c.currency, accounts.c.type, accounts.c.member_id)
            .join(accounts, accounts.c.account_id == postings.c.account_id)
            .where(postings.c.transaction_id == transaction_id)
            .order_by(postings.c.posting_id)
        )
    ).all()
    return [
        Leg(AccountRef(group_id, AccountType(row.type), row.member_id), Money(amount=row.amount, currency=row.currency))
        for row in rows
    ]


async def reverse(
    session: AsyncSession, group_id: UUID, transaction_id: UUID, *, reason: str, recorded_by: UUID | None
) -> PostedTransaction:
    original = (
        await session.execute(
            select(transactions.c.kind, transactions.c.group_id).where(transactions.c.transaction_id == transaction_id)
        )
    ).first()
    if original is None or original.group_id != group_id:
        raise NotFound(f"group {group_id} has no transaction {transaction_id}")
    legs = await _legs(session, group_id, transaction_id)
    draft = domain.reversal(
        transaction_id, group_id, legs, reason=reason, recorded_by=recorded_by, original_kind=original.kind
    )
    existing = await session.scalar(
        select(transactions.c.transaction_id).where(transactions.c.reverses_transaction_id == transaction_id)
    )
    if existing is not None:
        existing_key = await session.scalar(
            select(transactions.c.fingerprint).where(transactions.c.transaction_id == existing)
        )
        if existing_key != draft.fingerprint():
            raise Conflict(f"transaction {transaction_id} was already reversed by {existing}", reversal_id=existing)
    return await post_and_publish(session, draft)


async def reverse_payment(session: AsyncSession, event: PaymentReversed, *, memo: str) -> PostedTransaction | None:
    """payments.payment.reversed: the reversal of the payment's own posted transaction (every
    leg negated, kind reversal, pointing at it). Its posting not here yet: retried (NotYet). The
    transaction already reversed (the same event again, or a coordinator's reversal through the
    API): nothing more is posted."""
    original = (
        await session.execute(
            select(transactions.c.transaction_id, transactions.c.group_id).where(
                transactions.c.idempotency_key == f"payment:{event.payment_id}:received"
            )
        )
    ).first()
    if original is None:
        raise NotYet(f"payment {event.payment_id} is not posted yet: its reversal waits for it")
    if original.group_id != event.group_id:
        raise Invalid(f"payment {event.payment_id} was posted in another group")
    existing = await session.scalar(
        select(transactions.c.transaction_id).where(transactions.c.reverses_transaction_id == original.transaction_id)
    )
    if existing is not None:
        log.info(
            "payment %s: transaction %s already reversed by %s", event.payment_id, original.transaction_id, existing
        )
        return None
    draft = domain.reversal(
        original.transaction_id,
        event.group_id,
        await _legs(session, event.group_id, original.transaction_id),
        reason=event.reason,
        recorded_by=event.recorded_by,
        original_kind=domain.Kind.PAYMENT.value,
    )
    draft = dataclasses.replace(draft, memo=memo, source_event_id=event.event_id)
    return await post_and_publish(session, draft)


# --- holds -----------------------------------------------------------------------------------


async def active_holds_total(session: AsyncSession, account_id: UUID) -> int:
    """Sum of the account's holds that still count: active and not past their expiry."""
    total = await session.scalar(
        select(func.coalesce(func.sum(holds.c.amount), 0)).where(
            holds.c.account_id == account_id, holds.c.status == HoldStatus.ACTIVE, holds.c.expires_at > func.now()
        )
    )
    return int(total or 0)


def _decision_from_row(row: AnyRow) -> HoldDecision:
    return HoldDecision(
        hold_id=row.hold_id,
        granted=row.granted,
        available=Money(amount=row.available_after, currency=row.currency),
        reason=row.reason,
    )


def _as_utc(moment: datetime) -> datetime:
    """The contract does not insist on an offset: a naive time means UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _past_deadline(request: PlaceHold) -> bool:
    return request.grant_before is not None and _as_utc(request.grant_before) <= clock.now()


async def place_hold(session: AsyncSession, request: PlaceHold) -> HoldDecision:
    """Grant or refuse a hold atomically: the member's account row is locked while the
    available amount is computed and the hold recorded, so two concurrent holds can never
    together overdraw.

    The asker derives the hold_id from its order attempt, so a retry asks again with the same
    one. The same hold_id asked again (same group, member, order and amount; its expiry and
    deadline may be later) gets the stored decision: the same grant (nothing more is held) or
    the same refusal. A hold that no longer counts (released, or past its expiry) is not
    granted again: the refusal says so, and the asker's next attempt uses a new hold_id (a
    decided hold never changes; the database refuses it). The same hold_id with other content
    is refused, naming the hold it was used for (never a replacement). A request that arrives
    at or after its `grant_before` is refused and changes nothing: its asker stopped waiting
    (checked on receipt, and again under the lock just before the hold is written)."""
    amount = request.amount
    request = request.model_copy(update={"expires_at": _as_utc(request.expires_at)})
    fingerprint = domain.hold_fingerprint(request.group_id, request.member_id, request.order_id, amount)

    def refuse(reason: str, available: int = 0, *, decided: bool = True) -> HoldDecision:
        return HoldDecision(
            hold_id=request.hold_id,
            granted=False,
            available=Money(amount=available, currency=amount.currency),
            reason=reason,
            decided=decided,
        )

    def too_late() -> HoldDecision:
        # Not a verdict on the member's money: the asker may ask again (with a new deadline).
        return refuse(
            f"the request arrived after its deadline ({request.grant_before}): its asker stopped waiting, "
            "nothing was held",
            decided=False,
        )

    async def stored() -> HoldDecision | None:
        row = (await session.execute(select(holds).where(holds.c.hold_id == request.hold_id))).first()
        if row is None:
            return None
        if row.fingerprint != fingerprint:
            return refuse(
                f"hold id {request.hold_id} was already used for a different hold "
                f"(order {row.order_id}, {row.amount} {row.currency}); nothing more was held",
                row.available_after,
            )
        ended = row.status in (HoldStatus.RELEASED, HoldStatus.EXPIRED) or (
            row.status == HoldStatus.ACTIVE and row.expires_at <= clock.now()
        )
        if ended:
            status = HoldStatus.EXPIRED if row.status == HoldStatus.ACTIVE else row.status
            return refuse(
                f"hold {request.hold_id} was granted, then {status}: ask again with a new hold id", decided=False
            )
        return _decision_from_row(row)

    if _past_deadline(request):
        return too_late()
    if (decision := await stored()) is not None:
        return decision
    if amount.amount <= 0:
        return refuse(f"a hold must be a positive amount, got {amount}")
    group = await find_group(session, request.group_id)
    if group is None:
        return refuse(f"the ledger knows no group {request.group_id} yet", decided=False)
    if group.currency != amount.currency:
        return refuse(f"group {group.group_id} keeps its accounts in {group.currency}, not {amount.currency}")
    if request.expires_at <= clock.now():
        return refuse("the hold had already expired when it arrived")

    await open_member_account(session, group.group_id, request.member_id, group.currency)
    ref = domain.member_account(group.group_id, request.member_id)
    locked = await lock_accounts(session, [ref], group.currency)
    account_id, balance = locked[ref]
    # Under the lock: a concurrent request for the same hold_id may have finished first.
    if (decision := await stored()) is not None:
        return decision
    if _past_deadline(request):
        return too_late()
    held = await active_holds_total(session, account_id)
    verdict = domain.decide_hold(
        balance=balance, active_holds=held, amount=amount.amount, allow_negative=group.allow_negative_money_pot
    )
    stored_row = (
        await session.execute(
            holds.insert()
            .values(
                # The request's and the verdict's own fields, under the names the table keeps.
                **request.model_dump(include={"hold_id", "group_id", "member_id", "order_id", "expires_at"}),
                **dataclasses.asdict(verdict),
                account_id=account_id,
                amount=amount.amount,
                currency=amount.currency,
                fingerprint=fingerprint,
                status=HoldStatus.ACTIVE if verdict.granted else HoldStatus.REFUSED,
            )
            .returning(holds)
        )
    ).one()
    # The answer a replay of this request gets too: the stored decision.
    return _decision_from_row(stored_row)


async def release_hold(session: AsyncSession, hold_id: UUID, reason: str = "") -> str:
    """Void an active hold (its order will not be confirmed). Returns the hold's status after."""
    row = (await session.execute(select(holds.c.status).where(holds.c.hold_id == hold_id).with_for_update())).first()
    if row is None:
        raise NotFound(f"no hold {hold_id}")
    if row.status != HoldStatus.ACTIVE:
        return row.status
    await session.execute(
        update(holds).where(holds.c.hold_id == hold_id).values(status=HoldStatus.RELEASED, resolved_at=func.now())
    )
    log.info("hold %s released: %s", hold_id, reason)
    return HoldStatus.RELEASED


async def expire_holds(session: AsyncSession, now: datetime | None = None) -> int:
    """Mark active holds past their expiry as expired (reading already ignores them)."""
    cutoff = now or clock.now()
    result = await session.execute(
        update(holds)
        .where(holds.c.status == HoldStatus.ACTIVE, holds.c.expires_at <= cutoff)
        .values(status=HoldStatus.EXPIRED, resolved_at=func.now())
        .returning(holds.c.hold_id)
    )
    return len(result.all())
