"""Consumers: keep the local copy of the facts, decide (domain) and log the emails to send.

Everything runs in the consumer's one transaction per message (runtime inbox), so the facts and
the pending deliveries commit together or not at all; SMTP happens later, in the sender task.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import ColumnElement, Table, and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import (
    BalanceBackToNonNegative,
    BalanceChanged,
    BalanceWentNegative,
    CardPaymentDisputed,
    CardPaymentFailed,
    CardSettingsChanged,
    Event,
    GroupSettingsChanged,
    InvitationCreated,
    MemberJoined,
    MemberUpdated,
    Money,
    OrderAmended,
    OrderConfirmed,
    OrderLine,
    OrderLineUndelivered,
    PasswordResetRequested,
    PaymentCancelled,
    PaymentDeclared,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
    PaymentReversed,
    SubscriptionAmended,
    SubscriptionConfirmed,
    TransactionPosted,
)
from cagette_runtime.consumer import Consumer, EventHandlers, parse_event
from cagette_runtime.db import AnyRow
from cagette_runtime.rows import record

from . import domain
from .delivery import enqueue
from .domain import Email, Kind, Trigger, instructions_for, instructions_trigger
from .settings import NotificationSettings
from .smtp import sender_domain
from .store import (
    NotYetKnown,
    columns_of,
    keep_newest,
    load_balance,
    load_coordinators,
    load_group,
    load_member,
    load_recipient,
    lock,
    members_without_role,
    save_balance,
)
from .tables import (
    awaiting_posting,
    declared_payments,
    group_directory,
    known_amendments,
    known_orders,
    known_subscriptions,
    ledger_postings,
    member_directory,
)
from .webhooks import WEBHOOKS_QUEUE, record_deliveries

log = logging.getLogger(__name__)

# What members are told about with a money-pot balance in the email (B7).
OrderEvent = OrderConfirmed | OrderAmended | SubscriptionConfirmed | SubscriptionAmended
E = TypeVar("E", OrderConfirmed, OrderAmended, SubscriptionConfirmed, SubscriptionAmended)
OrderHandler = Callable[[AsyncSession, E], Awaitable[None]]


async def posting_known_or_wait(session: AsyncSession, event: OrderEvent) -> bool:
    """Whether the ledger's posting of `event` is known; if not, the event waits for it (it is
    handled again when the ledger's TransactionPosted for it arrives)."""
    await lock(session, f"posting:{event.event_id}")
    known = await session.scalar(
        select(ledger_postings.c.source_event_id).where(ledger_postings.c.source_event_id == event.event_id)
    )
    if known is None:
        await session.execute(
            pg_insert(awaiting_posting)
            .values(event_id=event.event_id, body=event.model_dump(mode="json"))
            .on_conflict_do_nothing()
        )
        log.info("%s %s waits for the ledger's posting of it", event.routing_key(), event.event_id)
    return known is not None


async def posted_balance(session: AsyncSession, event: OrderEvent) -> Money | None:
    """For a money-pot order event: the member's balance right after the ledger posted it (B7),
    never a figure computed from an older balance."""
    if event.payment_method != PaymentMethod.MONEY_POT:
        return None
    row = (
        await session.execute(
            select(ledger_postings.c.balance_after, ledger_postings.c.currency).where(
                ledger_postings.c.source_event_id == event.event_id
            )
        )
    ).first()
    return Money(amount=row.balance_after, currency=row.currency) if row is not None else None


def _lines_json(lines: list[OrderLine]) -> list[dict]:
    return [line.model_dump(mode="json") for line in lines]


def _lines(data: list[dict]) -> list[OrderLine]:
    return [OrderLine.model_validate(item) for item in data]


# An email about an order, an amendment, a subscription or a payment, all said but how to pay:
# `email(source_event_id, group, member, instructions=...)` (a partial of a domain function).
EmailAbout = Callable[..., list[Email]]


def _kept(**totals: Money) -> dict[str, Any]:
    """Money as the known_* tables keep it: a `<name>_amount` column each, one `currency`."""
    currency = next(iter(totals.values())).currency
    return {f"{name}_amount": money.amount for name, money in totals.items()} | {"currency": currency}


def _money(row: Mapping[Any, Any], name: str) -> Money:
    return Money(amount=row[f"{name}_amount"], currency=row["currency"])


@dataclass(frozen=True)
class Basket:
    """An order or an amendment: its row as kept, what the member pays for it, the declared
    payments that pay it, and its email (all but how to pay: that depends on the payment)."""

    table: Table
    row: dict[str, Any]
    to_pay: Money
    declared: ColumnElement[bool]
    email: EmailAbout


def ordered(event: OrderConfirmed) -> Basket:
    row = columns_of(
        known_orders, event, lines=_lines_json(event.lines), confirmed_at=event.occurred_at, **_kept(total=event.total)
    )
    declared = and_(declared_payments.c.order_id == event.order_id, declared_payments.c.amendment_id.is_(None))
    return Basket(known_orders, row, event.total, declared, order_confirmation(row))


def added(event: OrderAmended) -> Basket:
    totals = _kept(added_total=event.added_total, new_total=event.new_total)
    row = columns_of(
        known_amendments, event, added_lines=_lines_json(event.added_lines), amended_at=event.occurred_at, **totals
    )
    declared = declared_payments.c.amendment_id == event.amendment_id
    return Basket(known_amendments, row, event.added_total, declared, amendment_confirmation(row))


def known(order: Mapping[Any, Any]) -> domain.KnownOrder:
    """A known_orders row as the domain knows the order."""
    return record(domain.KnownOrder, order, total=_money(order, "total"))


def order_confirmation(order: Mapping[Any, Any]) -> EmailAbout:
    """The confirmation email of a known_orders row."""
    distribution = domain.distribution_of(order["distribution_starts_at"], order["distribution_place"])
    return partial(domain.order_confirmed, order=known(order), lines=_lines(order["lines"]), distribution=distribution)


def amendment_confirmation(amendment: Mapping[Any, Any]) -> EmailAbout:
    """The email of a known_amendments row."""
    return partial(
        domain.order_amended,
        order_id=amendment["order_id"],
        added_lines=_lines(amendment["added_lines"]),
        added_total=_money(amendment, "added_total"),
        new_total=_money(amendment, "new_total"),
        amended_at=amendment["amended_at"],
    )


def declared_payment(event: PaymentDeclared | PaymentReceived) -> dict[str, Any]:
    """The payment as kept in declared_payments (a received one not declared before gets one too)."""
    amount = event.amount
    return columns_of(
        declared_payments, event, amount=amount.amount, currency=amount.currency, declared_at=event.occurred_at
    )


class Handlers:
    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings
        self.domain = sender_domain(settings.smtp_sender)
        # The registry of the notifications.events consumer.
        self.events = EventHandlers(
            {
                GroupSettingsChanged: self.on_group,
                MemberJoined: self.on_member,
                MemberUpdated: self.on_member,
                OrderConfirmed: self.after_posting(self.on_order_confirmed),
                OrderAmended: self.after_posting(self.on_order_amended),
                SubscriptionConfirmed: self.after_posting(self.on_subscription),
                SubscriptionAmended: self.after_posting(self.on_subscription_amended),
                PaymentDeclared: self.on_payment_declared,
                PaymentReceived: self.on_payment_outcome,
                PaymentCancelled: self.on_payment_outcome,
                PaymentRefunded: self.on_payment_outcome,
                PaymentReversed: self.on_payment_reversed,
                OrderLineUndelivered: self.on_line_undelivered,
                CardPaymentFailed: self.on_payment_outcome,
                CardPaymentDisputed: self.on_card_payment_disputed,
                CardSettingsChanged: self.on_card_settings_changed,
                BalanceChanged: self.on_balance,
                BalanceWentNegative: self.on_balance,
                BalanceBackToNonNegative: self.on_balance,
                InvitationCreated: self.on_account_link,
                PasswordResetRequested: self.on_account_link,
                TransactionPosted: self.on_transaction_posted,
            }
        )

    async def send(self, session: AsyncSession, emails: list[Email]) -> None:
        await enqueue(session, emails, sender_domain=self.domain, timezone=self.settings.timezone)

    async def handle(self, session: AsyncSession, event: Event) -> None:
        await self.events.dispatch(session, event)

    @staticmethod
    def after_posting(handler: OrderHandler[E]) -> OrderHandler[E]:
        """`handler` for an order event, run at once unless it is a money-pot one whose posting
        the ledger has not announced yet: that one waits, and is handled when the
        TransactionPosted for it arrives (its email states the balance right after it, B7)."""

        async def run(session: AsyncSession, event: E) -> None:
            if event.payment_method == PaymentMethod.MONEY_POT and not await posting_known_or_wait(session, event):
                return
            await handler(session, event)

        return run

    # --- directory ---------------------------------------------------------------------

    async def on_group(self, session: AsyncSession, event: GroupSettingsChanged) -> None:
        group = columns_of(group_directory, event, updated_at=event.occurred_at)
        await keep_newest(session, group_directory, group, key=("group_id",))

    async def on_member(self, session: AsyncSession, event: MemberJoined | MemberUpdated) -> None:
        member = columns_of(member_directory, event, email=str(event.email), updated_at=event.occurred_at)
        await keep_newest(session, member_directory, member, key=("group_id", "member_id"))

    # --- accounts (web) -----------------------------------------------------------------

    async def on_account_link(self, session: AsyncSession, event: InvitationCreated | PasswordResetRequested) -> None:
        """The invitation or reset link goes to the address in the event (the person may not be
        in the member directory yet); the group's name signs it when the group is known."""
        try:
            group = await load_group(session, event.group_id)
        except NotYetKnown:
            group = domain.Group(event.group_id, "Cagette", "EUR", event.language.value)
        person = domain.Member(event.group_id, event.account_id, event.name, str(event.email), event.language.value)
        kind = Kind.ACCOUNT_INVITATION if isinstance(event, InvitationCreated) else Kind.PASSWORD_RESET
        await self.send(
            session,
            domain.account_link(kind, event.event_id, group, person, link=event.link, expires_at=event.expires_at),
        )

    # --- orders ------------------------------------------------------------------------

    async def on_order_confirmed(self, session: AsyncSession, event: OrderConfirmed) -> None:
        await self._confirm(session, event, ordered(event))

    async def on_order_amended(self, session: AsyncSession, event: OrderAmended) -> None:
        await self._confirm(session, event, added(event))

    async def _confirm(self, session: AsyncSession, event: OrderConfirmed | OrderAmended, basket: Basket) -> None:
        """Keep the order or amendment, and send its email. Money pot and card: now, with their
        balance or "paid". Cheque, transfer, cash, on the spot: the email goes with the declared
        payment (its RF reference); if the payments service declared it before we saw the order,
        send now."""
        await lock(session, f"order:{event.order_id}")
        await session.execute(pg_insert(basket.table).values(basket.row).on_conflict_do_nothing())
        if instructions_trigger(event.payment_method) == Trigger.CONFIRMED:
            paid = event.payment_method == PaymentMethod.CARD
            await self._send_about(session, event, basket.email, basket.to_pay, paid=paid)
            return
        for payment in (await session.execute(select(declared_payments).where(basket.declared))).all():
            await self._send_with_payment(session, payment, basket.email)

    async def _send_about(
        self, session: AsyncSession, event: OrderEvent, email: EmailAbout, to_pay: Money, *, paid: bool = False
    ) -> None:
        """`email` to the event's member, saying how to pay `to_pay` by the event's method (a money
        pot's: the balance right after the ledger posted it, B7)."""
        group, member = await load_recipient(session, event.group_id, event.member_id)
        balance_after = await posted_balance(session, event)
        instructions = instructions_for(group, event.payment_method, to_pay, balance_after=balance_after, paid=paid)
        await self.send(session, email(event.event_id, group, member, instructions=instructions))

    async def _send_with_payment(self, session: AsyncSession, payment: AnyRow, email: EmailAbout) -> None:
        """`email` to the payer of a declared payment, saying how to pay it (its RF reference)."""
        group, member = await load_recipient(session, payment.group_id, payment.member_id)
        amount = Money(amount=payment.amount, currency=payment.currency)
        instructions = instructions_for(group, PaymentMethod(payment.method), amount, reference=payment.reference)
        await self.send(session, email(payment.event_id, group, member, instructions=instructions))

    async def on_subscription(self, session: AsyncSession, event: SubscriptionConfirmed) -> None:
        subscription = columns_of(known_subscriptions, event)
        await session.execute(pg_insert(known_subscriptions).values(subscription).on_conflict_do_nothing())
        terms = domain.Subscription(event.contract_name, event.lines, event.distribution_count)
        email = partial(
            domain.subscription_confirmed, subscription=terms, total=event.total, confirmed_at=event.occurred_at
        )
        await self._send_about(session, event, email, event.total)

    async def on_subscription_amended(self, session: AsyncSession, event: SubscriptionAmended) -> None:
        contract_name = await self._contract_name(session, event.subscription_id)
        terms = domain.Subscription(contract_name, event.added_lines, event.distribution_count)
        email = partial(
            domain.subscription_amended,
            subscription=terms,
            added_total=event.added_total,
            new_total=event.new_total,
            amended_at=event.occurred_at,
        )
        await self._send_about(session, event, email, event.added_total)

    # --- payments ----------------------------------------------------------------------

    async def on_payment_declared(self, session: AsyncSession, event: PaymentDeclared) -> None:
        if instructions_trigger(event.method) == Trigger.CONFIRMED:
            return  # money pot / card: their confirmation goes out with OrderConfirmed / OrderAmended
        if event.order_id is not None:
            await lock(session, f"order:{event.order_id}")
        await session.execute(pg_insert(declared_payments).values(declared_payment(event)).on_conflict_do_nothing())
        payment = (
            await session.execute(select(declared_payments).where(declared_payments.c.payment_id == event.payment_id))
        ).one()
        if event.amendment_id is not None:
            amendment = (
                await session.execute(
                    select(known_amendments).where(known_amendments.c.amendment_id == event.amendment_id)
                )
            ).first()
            if amendment is not None:
                await self._send_with_payment(session, payment, amendment_confirmation(amendment._mapping))
            return  # otherwise sent when OrderAmended arrives
        if event.order_id is not None:
            order = await self._known_order(session, event.order_id)
            if order is not None:
                await self._send_with_payment(session, payment, order_confirmation(order._mapping))
            return  # otherwise sent when OrderConfirmed arrives
        # A payment not tied to an order: a subscription's, or one a coordinator expects.
        about = await self._contract_name(session, event.subscription_id) if event.subscription_id is not None else None
        instructions = partial(domain.payment_instructions, about=about, declared_at=event.occurred_at)
        await self._send_with_payment(session, payment, instructions)

    async def on_payment_outcome(
        self, session: AsyncSession, event: PaymentReceived | PaymentCancelled | PaymentRefunded | CardPaymentFailed
    ) -> None:
        if isinstance(event, PaymentRefunded) and event.reverses_payment_id is not None:
            # A correction (the payment was recorded on the wrong member), not a refund: no money
            # moved, so the member is not told of one; the statement shows the reversal.
            log.info(
                "payment %s reversed by %s: a correction, no refund email", event.reverses_payment_id, event.payment_id
            )
            return
        group, member = await load_recipient(session, event.group_id, event.member_id)
        facts: dict[str, object] = {"amount": event.amount, "date": event.occurred_at, "order_id": event.order_id}
        await self._record_outcome(session, event)
        match event:
            case PaymentReceived():
                kind = Kind.PAYMENT_RECEIVED
                facts |= {
                    "method": event.method,
                    "reference": event.reference or await self._reference(session, event.payment_id),
                    "label": event.label,
                    "declared_amount": event.declared_amount,
                }
            case PaymentCancelled():
                kind = Kind.PAYMENT_CANCELLED
                facts |= {
                    "method": event.method,
                    "reason": event.reason,
                    "reference": await self._reference(session, event.payment_id),
                }
            case PaymentRefunded():
                kind = Kind.PAYMENT_REFUNDED
                facts |= {"method": event.method, "reason": event.reason}
            case CardPaymentFailed():
                kind = Kind.CARD_PAYMENT_FAILED
                facts |= {"method": PaymentMethod.CARD, "reason": event.reason, "retry_url": event.retry_url}
        await self.send(session, domain.payment_event_email(kind, event.event_id, group, member, **facts))

    async def on_payment_reversed(self, session: AsyncSession, event: PaymentReversed) -> None:
        """A received payment recorded by mistake, reversed: a correction, not a refund. No money
        moved back, so the member is sent no refund email; their statement shows the reversal."""
        log.info("payment %s reversed (%s): a correction, no email", event.payment_id, event.reason)

    async def on_line_undelivered(self, session: AsyncSession, event: OrderLineUndelivered) -> None:
        """R6: the member is told which product was not delivered, why, and the amount credited."""
        group, member = await load_recipient(session, event.group_id, event.member_id)
        await self.send(
            session,
            domain.line_undelivered(
                event.event_id,
                group,
                member,
                order_id=event.order_id,
                product=domain.Undelivered(event.product_name, event.quantity, event.unit, event.quantity_left),
                reason=event.reason,
                amount=event.amount,
                new_total=event.new_total,
                method=event.payment_method,
                removed_at=event.occurred_at,
                distribution=domain.distribution_of(event.distribution_starts_at, event.distribution_place),
            ),
        )

    async def _record_outcome(self, session: AsyncSession, event: Event) -> None:
        """What became of the payment (pending payments defer balance reminders)."""
        match event:
            case PaymentReceived():
                settled = {
                    "status": "received",
                    "received_amount": event.amount.amount,
                    "settled_at": event.occurred_at,
                }
                await session.execute(
                    pg_insert(declared_payments)
                    .values(**declared_payment(event), **settled)
                    .on_conflict_do_update(index_elements=[declared_payments.c.payment_id], set_=settled)
                )
            case PaymentCancelled():
                await session.execute(
                    update(declared_payments)
                    .where(declared_payments.c.payment_id == event.payment_id)
                    .values(status="cancelled", settled_at=event.occurred_at)
                )

    async def coordinators_to_tell(self, session: AsyncSession, group_id: UUID, what: str) -> list[domain.Member]:
        """The group's coordinators, for an email about `what`. None in the directory: if some
        members' roles are not known (rows kept before migration 0004) one of them may be a
        coordinator, so retry, up to the delivery limit (then parked with the reason); if every
        role is known, the group has no coordinator: a warning, and nothing is recorded
        (retrying would not make one appear)."""
        coordinators = await load_coordinators(session, group_id)
        if not coordinators:
            unknown = await members_without_role(session, group_id)
            if unknown:
                raise NotYetKnown(
                    f"group {group_id} has no known coordinator for {what}: the role of "
                    f"{unknown} member(s) is not known yet (directory rows from before migration 0004)"
                )
            log.warning("%s but group %s has no coordinator: no email", what, group_id)
        return coordinators

    async def on_card_payment_disputed(self, session: AsyncSession, event: CardPaymentDisputed) -> None:
        """Flag the dispute to every coordinator of the group (issue 6), each in their language.
        The group and the disputing member must be known (else retried, like every email)."""
        group = await load_group(session, event.group_id)
        payer = await load_member(session, event.group_id, event.member_id)
        what = (
            f"card payment {event.payment_id} of member {event.member_id} disputed "
            f"(dispute {event.dispute_id}, {event.amount})"
        )
        coordinators = await self.coordinators_to_tell(session, event.group_id, what)
        if not coordinators:
            return
        row = await self._known_order(session, event.order_id) if event.order_id is not None else None
        order = known(row._mapping) if row is not None else None
        contract_name = None
        if event.subscription_id is not None:
            contract_name = await self._contract_name(session, event.subscription_id)
        await self.send(
            session,
            domain.card_payment_disputed(
                event.event_id,
                group,
                coordinators,
                payer=payer,
                dispute=record(domain.Dispute, dict(event)),
                disputed_at=event.occurred_at,
                order=order,
                contract_name=contract_name,
            ),
        )

    async def on_card_settings_changed(self, session: AsyncSession, event: CardSettingsChanged) -> None:
        """The group's card readiness changed on payments. When that is the change coordinators
        are told about (`account_change`: card payments stopped because of the group's Stripe
        account, or it takes them again; payments sets it once per change), each coordinator
        is emailed in their language. Every other announcement sends nothing."""
        if event.account_change is None:
            return
        group = await load_group(session, event.group_id)
        what = f"the group's Stripe account {event.account_change.value} ({event.account_problem or 'no problem'})"
        coordinators = await self.coordinators_to_tell(session, event.group_id, what)
        await self.send(
            session,
            domain.card_account_changed(
                event.event_id,
                group,
                coordinators,
                change=event.account_change,
                problem=event.account_problem,
                settings_url=event.settings_url,
                changed_at=event.occurred_at,
            ),
        )

    async def _reference(self, session: AsyncSession, payment_id: UUID) -> str | None:
        return await session.scalar(
            select(declared_payments.c.reference).where(declared_payments.c.payment_id == payment_id)
        )

    async def _contract_name(self, session: AsyncSession, subscription_id: UUID) -> str | None:
        return await session.scalar(
            select(known_subscriptions.c.contract_name).where(known_subscriptions.c.subscription_id == subscription_id)
        )

    async def _known_order(self, session: AsyncSession, order_id: UUID) -> AnyRow | None:
        return (await session.execute(select(known_orders).where(known_orders.c.order_id == order_id))).first()

    # --- balances ----------------------------------------------------------------------

    async def on_transaction_posted(self, session: AsyncSession, event: TransactionPosted) -> None:
        """Keep the member's balance right after the event this transaction posted; a money-pot
        order event that was waiting for it is handled now (B7)."""
        member_leg = next((line for line in event.postings if line.member_id is not None), None)
        if event.source_event_id is None or member_leg is None:
            return
        await lock(session, f"posting:{event.source_event_id}")
        await session.execute(
            pg_insert(ledger_postings)
            .values(
                source_event_id=event.source_event_id,
                member_id=member_leg.member_id,
                balance_after=member_leg.balance_after.amount,
                currency=member_leg.balance_after.currency,
                posted_at=event.occurred_at,
            )
            .on_conflict_do_nothing()
        )
        waiting = (
            await session.execute(
                delete(awaiting_posting)
                .where(awaiting_posting.c.event_id == event.source_event_id)
                .returning(awaiting_posting.c.body)
            )
        ).scalar()
        if waiting is not None:
            await self.handle(session, parse_event(json.dumps(waiting).encode()))

    async def on_balance(
        self, session: AsyncSession, event: BalanceChanged | BalanceWentNegative | BalanceBackToNonNegative
    ) -> None:
        """Keep the balance and the negative episode; the reminder itself is sent by the
        reminder scheduler once the grace period has passed (see domain.next_reminder)."""
        state = await load_balance(session, event.group_id, event.member_id, event.balance.currency, for_update=True)
        match event:
            case BalanceChanged():
                state = domain.balance_changed(state, event.balance, event.occurred_at)
            case BalanceWentNegative():
                state = domain.went_negative(state, event.balance, event.occurred_at, event.event_id)
            case BalanceBackToNonNegative():
                state = domain.back_to_non_negative(state, event.balance, event.occurred_at)
        await save_balance(session, event.group_id, event.member_id, state)


QUEUE_NAME = "notifications.events"


async def record_webhook_deliveries(session: AsyncSession, event: Event) -> None:
    await record_deliveries(session, event)


def consumers(settings: NotificationSettings) -> list[Consumer]:
    limit = settings.delivery_limit
    return [
        # Batched: the handlers write rows only (emails and webhook calls are sent by their own
        # loops from the rows), and these two queues take several events per order.
        Consumer(QUEUE_NAME, Handlers(settings).events, delivery_limit=limit, batched=True),
        # `Event`: any event, whatever its type; the queue is bound with what the enabled
        # endpoints want (webhooks.sync_bindings), not at declaration.
        Consumer(
            WEBHOOKS_QUEUE,
            {Event: record_webhook_deliveries},
            delivery_limit=limit,
            batched=True,
            bound_at_declaration=False,
        ),
    ]


__all__ = ["Handlers", "QUEUE_NAME", "WEBHOOKS_QUEUE", "consumers"]
