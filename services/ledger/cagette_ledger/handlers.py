"""What the ledger does with each event it consumes, inside an idempotent inbox consumer (a
duplicate has no effect, a refusal is parked): `POSTINGS`, the registry of the one consumer
(`POSTINGS.dispatch` handles one event), and `dispatch_batch` for a delivered batch committed in
one database transaction (see batching.py), which posts runs of posting events together and hands
every other event to the same registry."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    CardDisputeFundsReinstated,
    CardDisputeFundsWithdrawn,
    CardFeeCharged,
    Event,
    GroupSettingsChanged,
    MemberJoined,
    MemberUpdated,
    OrderAmended,
    OrderConfirmed,
    OrderLineUndelivered,
    PaymentCancelled,
    PaymentDeclared,
    PaymentReceived,
    PaymentRefunded,
    PaymentReversed,
    SubscriptionAmended,
    SubscriptionConfirmed,
)
from cagette_runtime.consumer import Consumer, EventHandlers
from cagette_runtime.correlation import reset_correlation_id, set_correlation_id
from cagette_runtime.errors import Invalid
from cagette_runtime.upserts import newest_wins

from . import domain, operations, wording
from .posting import lock_accounts
from .tables import accounts, groups, members

if TYPE_CHECKING:
    from cagette_runtime.service import Service

log = logging.getLogger(__name__)

POSTINGS_QUEUE = "ledger.postings"


async def on_group_settings_changed(session: AsyncSession, event: GroupSettingsChanged) -> None:
    current = (
        await session.execute(
            select(groups.c.currency, groups.c.settings_occurred_at).where(groups.c.group_id == event.group_id)
        )
    ).first()
    if current is not None and current.settings_occurred_at >= event.occurred_at:
        return  # an older state arriving late: the newer one already applies
    if current is not None and current.currency != event.currency:
        has_accounts = await session.scalar(
            select(func.count()).select_from(accounts).where(accounts.c.group_id == event.group_id)
        )
        if has_accounts:
            raise Invalid(
                f"group {event.group_id} already keeps accounts in {current.currency}; "
                f"changing its currency to {event.currency} is not supported"
            )
    values = {
        "currency": event.currency,
        "payments_enabled": event.payments_enabled,
        "allow_negative_money_pot": event.allow_negative_money_pot,
        "settings_occurred_at": event.occurred_at,
        "language": event.language.value,
        "time_zone": event.time_zone,
    }
    # Settings events carry full state: the newest wins, whatever the delivery order.
    await session.execute(newest_wins(groups, {"group_id": event.group_id}, values, "settings_occurred_at"))


async def on_member(session: AsyncSession, event: MemberJoined | MemberUpdated) -> None:
    """Keep the member's name and email (full state: the newest wins) for the coordinators' lists."""
    values = {"name": event.name, "email": str(event.email), "updated_at": event.occurred_at}
    key = {"group_id": event.group_id, "member_id": event.member_id}
    await session.execute(newest_wins(members, key, values, "updated_at"))


def in_words(event: Event, draft: domain.TransactionDraft, group: operations.Group | None) -> domain.TransactionDraft:
    """The draft with the statement words for it in the group's language."""
    memo = wording.memo_for(event, group.language, group.time_zone) if group else wording.memo_for(event, "fr")
    return dataclasses.replace(draft, memo=memo) if memo else draft


async def on_member_joined(session: AsyncSession, event: MemberJoined) -> None:
    """Open the member's account (at zero) so coordinators can adjust it before any order."""
    await on_member(session, event)
    group = await operations.find_group(session, event.group_id)
    if group is not None:
        await operations.open_member_account(session, event.group_id, event.member_id, group.currency)
    # Otherwise the account opens with the member's first posting, in that posting's currency.


# What orders publishes for money owed; each turns the hold placed for it (if any) into its debit.
ORDER_EVENTS = (OrderConfirmed, OrderAmended, SubscriptionConfirmed, SubscriptionAmended)
MoneyOwed = OrderConfirmed | OrderAmended | SubscriptionConfirmed | SubscriptionAmended
# Events that are one posting each and nothing else (plus the capture of a hold): each maps to the
# draft it posts, and a run of them is posted together by dispatch_batch.
_DRAFTS: dict[type[Event], Callable[[Any], domain.TransactionDraft]] = {
    OrderConfirmed: domain.order_confirmed,
    OrderAmended: domain.order_amended,
    SubscriptionConfirmed: domain.subscription_confirmed,
    SubscriptionAmended: domain.subscription_amended,
    PaymentRefunded: domain.payment_refunded,
    OrderLineUndelivered: domain.order_line_undelivered,
    CardFeeCharged: domain.card_fee_charged,
    CardDisputeFundsWithdrawn: domain.card_dispute_funds_withdrawn,
    CardDisputeFundsReinstated: domain.card_dispute_funds_reinstated,
}
POSTING_EVENTS = tuple(_DRAFTS)


def payments_off(event: Event, group: operations.Group | None) -> bool:
    """R1: with payment management off, orders carry no money tracking at all."""
    if isinstance(event, ORDER_EVENTS) and group is not None and not group.payments_enabled:
        log.info("group %s has payments off: %s not posted", event.group_id, event.routing_key())
        return True
    return False


async def on_money_owed(session: AsyncSession, event: MoneyOwed) -> None:
    """An order, a subscription or an addition to either: the member's debit, which the hold
    placed for it (if any) becomes."""
    group = await operations.find_group(session, event.group_id)
    if not payments_off(event, group):
        draft = in_words(event, _DRAFTS[type(event)](event), group)
        await operations.confirm_order(session, draft, domain.hold_key(event))


async def on_posting(
    session: AsyncSession,
    event: PaymentRefunded
    | OrderLineUndelivered
    | CardFeeCharged
    | CardDisputeFundsWithdrawn
    | CardDisputeFundsReinstated,
) -> None:
    group = await operations.find_group(session, event.group_id)
    await operations.post_and_publish(session, in_words(event, _DRAFTS[type(event)](event), group))


async def on_payment_reversed(session: AsyncSession, event: PaymentReversed) -> None:
    """A received payment recorded by mistake: the reversal of its own transaction (kind
    reversal, pointing at it), in the statement's words for a reversal, not a refund."""
    group = await operations.find_group(session, event.group_id)
    memo = wording.reversed_payment(event, group.language if group else "fr")
    await operations.reverse_payment(session, event, memo=memo)


# The ledger.postings consumer: one queue for everything that touches balances, so one group's
# events keep their order.
POSTINGS = EventHandlers(
    {
        GroupSettingsChanged: on_group_settings_changed,
        MemberJoined: on_member_joined,
        MemberUpdated: on_member,
        OrderConfirmed: on_money_owed,
        OrderAmended: on_money_owed,
        SubscriptionConfirmed: on_money_owed,
        SubscriptionAmended: on_money_owed,
        PaymentDeclared: operations.declare_payment,
        PaymentReceived: operations.receive_payment,
        PaymentCancelled: operations.cancel_payment,
        PaymentRefunded: on_posting,
        PaymentReversed: on_payment_reversed,
        OrderLineUndelivered: on_posting,
        CardFeeCharged: on_posting,
        CardDisputeFundsWithdrawn: on_posting,
        CardDisputeFundsReinstated: on_posting,
    }
)


async def dispatch_batch(session: AsyncSession, events: list[Event]) -> None:
    """The same effects as `POSTINGS.dispatch` on each event in order, with the consecutive
    posting events posted together (a fixed number of statements per run, not per event)."""
    known: dict[UUID, operations.Group | None] = {}

    async def group_of(group_id: UUID) -> operations.Group | None:
        if group_id not in known:
            known[group_id] = await operations.find_group(session, group_id)
        return known[group_id]

    run: list[tuple[Event, domain.TransactionDraft]] = []

    async def flush() -> None:
        if run:
            await operations.post_many_and_publish(
                session,
                [draft for _, draft in run],
                [domain.hold_key(event) if isinstance(event, ORDER_EVENTS) else None for event, _ in run],
            )
            run.clear()

    missing = {event.group_id for event in events} - known.keys()
    for found in await operations.find_groups(session, missing):
        known[found.group_id] = found
    for group_id in missing:
        known.setdefault(group_id, None)
    await lock_batch_accounts(session, events)

    for event in events:
        if isinstance(event, POSTING_EVENTS):
            group = await group_of(event.group_id)
            if payments_off(event, group):
                continue
            # Posted together, each with its own cause's correlation id (not the batch's first).
            draft = replace(in_words(event, _DRAFTS[type(event)](event), group), correlation_id=event.correlation_id)
            if group is not None and group.currency != draft.currency:
                raise Invalid(f"group {event.group_id} keeps its accounts in {group.currency}, not {draft.currency}")
            run.append((event, draft))
        else:
            await flush()
            token = set_correlation_id(event.correlation_id)
            try:
                await POSTINGS.dispatch(session, event)
            finally:
                reset_correlation_id(token)
            known.pop(event.group_id, None)  # settings may have changed
    await flush()


async def lock_batch_accounts(session: AsyncSession, events: list[Event]) -> None:
    """Lock every account the batch will post to, up front and in the global lock order, so
    batches of competing consumers never deadlock whatever mix of events they carry (the later
    locks of the same rows by this transaction do not wait)."""
    wanted: dict[domain.AccountRef, str] = {}
    for event in events:
        try:
            if isinstance(event, POSTING_EVENTS):
                draft = _DRAFTS[type(event)](event)
            elif isinstance(event, PaymentReceived):
                draft = domain.payment_received(event)
            elif isinstance(event, PaymentReversed):
                for account in domain.payment_reversal_accounts(event):
                    wanted.setdefault(account, event.amount.currency)
                continue
            else:
                continue
        except Invalid:
            continue  # refused when it is processed
        for leg in draft.legs:
            wanted.setdefault(leg.account, draft.currency)
    if wanted:
        await lock_accounts(session, wanted)


def consumers(service: Service) -> list[Consumer]:
    return [Consumer(POSTINGS_QUEUE, POSTINGS, delivery_limit=service.settings.delivery_limit)]
