"""What to send, to whom, and when: pure functions over the local copy of the facts.

Nothing here touches the database, the broker or SMTP. The handlers load the facts, call these
functions, and store what they return; the renderer turns an `Email` into subject, text and HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from cagette_contracts import CardAccountChange, CardAccountProblem, Money, OrderLine, PaymentMethod
from cagette_runtime import epc_qr


class Kind(StrEnum):
    """What an email is about (the `kind` of the delivery log key)."""

    ORDER_CONFIRMED = "order_confirmed"
    ORDER_AMENDED = "order_amended"
    SUBSCRIPTION_CONFIRMED = "subscription_confirmed"
    SUBSCRIPTION_AMENDED = "subscription_amended"
    PAYMENT_INSTRUCTIONS = "payment_instructions"
    PAYMENT_RECEIVED = "payment_received"
    PAYMENT_CANCELLED = "payment_cancelled"
    CARD_PAYMENT_FAILED = "card_payment_failed"
    PAYMENT_REFUNDED = "payment_refunded"
    LINE_UNDELIVERED = "line_undelivered"  # a product the producer could not deliver, taken off the order (R6)
    BALANCE_REMINDER = "balance_reminder"
    BALANCE_DIGEST = "balance_digest"
    CARD_PAYMENT_DISPUTED = "card_payment_disputed"  # to the group's coordinators, not the member
    ACCOUNT_INVITATION = "account_invitation"  # from the web service: set a password
    PASSWORD_RESET = "password_reset"  # from the web service: choose a new password
    WEBHOOK_DISABLED = "webhook_disabled"  # to the coordinators, or a platform endpoint's owner: it was disabled
    # To the group's coordinators: card payments stopped because of the group's Stripe account, or
    # the account can take them again.
    CARD_PAYMENTS_STOPPED = "card_payments_stopped"
    CARD_PAYMENTS_RESUMED = "card_payments_resumed"


# Members may opt out of these; never of anything else (receipts, instructions, failures).
REMINDER_KINDS = frozenset({Kind.BALANCE_REMINDER, Kind.BALANCE_DIGEST})

# Methods whose payment the payments service declares (with an RF reference for cheque and
# transfer): their instructions email waits for PaymentDeclared. Money pot and card have no
# declared payment: their confirmation goes out on OrderConfirmed itself.
DECLARED_METHODS = frozenset(
    {PaymentMethod.CHEQUE, PaymentMethod.TRANSFER, PaymentMethod.CASH, PaymentMethod.ON_THE_SPOT}
)

SUPPORTED_LANGUAGES = ("fr", "en")


class Trigger(StrEnum):
    DECLARED = "declared"  # send on payments.payment.declared
    CONFIRMED = "confirmed"  # send on orders.order.confirmed / amended


def instructions_trigger(method: PaymentMethod) -> Trigger:
    return Trigger.DECLARED if method in DECLARED_METHODS else Trigger.CONFIRMED


@dataclass(frozen=True)
class Group:
    group_id: UUID
    name: str
    currency: str
    language: str
    cheque_payee: str | None = None
    transfer_iban: str | None = None
    transfer_bic: str | None = None
    # Dates in the group's emails are in this IANA time zone (None: the service's default).
    time_zone: str | None = None


@dataclass(frozen=True)
class Member:
    group_id: UUID
    member_id: UUID
    name: str
    email: str
    language: str
    reminders_opt_out: bool = False
    role: str | None = None  # "member" | "coordinator"; None: not known (kept before migration 0004)


def language_of(member: Member, group: Group) -> str:
    for candidate in (member.language, group.language):
        if candidate in SUPPORTED_LANGUAGES:
            return candidate
    return SUPPORTED_LANGUAGES[0]


def wants(member: Member, kind: Kind) -> bool:
    """Whether the member gets this kind of email: reminders may be refused, nothing else."""
    return not (kind in REMINDER_KINDS and member.reminders_opt_out)


# The Content-ID of the EPC QR code attached inline to a transfer instructions email.
EPC_QR_CID = "sepa-qr@cagette"


@dataclass(frozen=True)
class Instructions:
    """How to pay `amount`, by `method`: what the templates print for each method."""

    method: PaymentMethod
    amount: Money
    reference: str | None = None
    payee: str | None = None
    iban: str | None = None
    bic: str | None = None
    balance_after: Money | None = None  # money pot
    paid: bool = False  # card: already paid
    epc_payload: str | None = None  # transfer in EUR to a SEPA IBAN: the EPC QR code's content
    retry_url: str | None = None  # card: where to finish paying


def format_iban(iban: str | None) -> str | None:
    """An IBAN as people copy it: upper case, in groups of four ("FR76 3000 6000 ...")."""
    if not iban:
        return None
    compact = "".join(iban.split()).upper()
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def instructions_for(
    group: Group,
    method: PaymentMethod | None,
    amount: Money,
    *,
    reference: str | None = None,
    balance_after: Money | None = None,
    paid: bool = False,
    retry_url: str | None = None,
) -> Instructions | None:
    if method is None:
        return None
    epc_payload = None
    if method == PaymentMethod.TRANSFER and reference and group.transfer_iban:
        transfer = epc_qr.Transfer(group.name, group.transfer_iban, group.transfer_bic, amount, reference)
        epc_payload = epc_qr.payload(transfer) if epc_qr.applies(transfer) else None
    return Instructions(
        method=method,
        amount=amount,
        reference=reference,
        payee=(group.cheque_payee or group.name) if method == PaymentMethod.CHEQUE else None,
        iban=format_iban(group.transfer_iban) if method == PaymentMethod.TRANSFER else None,
        bic=group.transfer_bic if method == PaymentMethod.TRANSFER else None,
        balance_after=balance_after if method == PaymentMethod.MONEY_POT else None,
        paid=paid if method == PaymentMethod.CARD else False,
        retry_url=retry_url,
        epc_payload=epc_payload,
    )


@dataclass(frozen=True)
class Email:
    """One email to one member, before rendering: its template (the kind) and the facts it shows."""

    kind: Kind
    source_event_id: UUID
    group: Group
    member: Member
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def recipient(self) -> str:
        return self.member.email

    @property
    def epc_payload(self) -> str | None:
        """The EPC QR code the email carries inline, if its instructions have one."""
        instructions = self.facts.get("instructions")
        return instructions.epc_payload if isinstance(instructions, Instructions) else None

    @property
    def language(self) -> str:
        return language_of(self.member, self.group)


def to_member(kind: Kind, source_event_id: UUID, group: Group, member: Member, facts: dict[str, object]) -> list[Email]:
    """One email of `kind` to the member, unless they refused that kind (reminders only)."""
    return [Email(kind, source_event_id, group, member, facts)] if wants(member, kind) else []


# --- order, amendment and subscription confirmations -------------------------------------


@dataclass(frozen=True)
class Distribution:
    """When and where the member collects the order."""

    starts_at: datetime
    place: str


def distribution_of(starts_at: datetime | None, place: str | None) -> Distribution | None:
    return Distribution(starts_at, place) if starts_at is not None and place else None


@dataclass(frozen=True)
class KnownOrder:
    """An order as confirmed (what its email and a dispute email show of it)."""

    order_id: UUID
    total: Money
    confirmed_at: datetime


def order_confirmed(
    source_event_id: UUID,
    group: Group,
    member: Member,
    *,
    order: KnownOrder,
    lines: list[OrderLine],
    instructions: Instructions,
    distribution: Distribution | None = None,
) -> list[Email]:
    facts: dict[str, object] = {
        "order_id": order.order_id,
        "lines": lines,
        "total": order.total,
        "instructions": instructions,
        "date": order.confirmed_at,
        "distribution": distribution,
    }
    return to_member(Kind.ORDER_CONFIRMED, source_event_id, group, member, facts)


def order_amended(
    source_event_id: UUID,
    group: Group,
    member: Member,
    *,
    order_id: UUID,
    added_lines: list[OrderLine],
    added_total: Money,
    new_total: Money,
    instructions: Instructions,
    amended_at: datetime,
) -> list[Email]:
    facts: dict[str, object] = {
        "order_id": order_id,
        "lines": added_lines,
        "added_total": added_total,
        "new_total": new_total,
        "instructions": instructions,
        "date": amended_at,
    }
    return to_member(Kind.ORDER_AMENDED, source_event_id, group, member, facts)


@dataclass(frozen=True)
class Subscription:
    """What a subscription's emails show of it: its contract (None: not known), what it delivers
    at each distribution and at how many (an amendment's: what it adds, and to how many)."""

    contract_name: str | None
    lines: list[OrderLine]
    distribution_count: int


def _subscription_facts(
    subscription: Subscription, charged: Money, instructions: Instructions | None, date: datetime
) -> dict[str, object]:
    """What both subscription emails show; `charged` (the total, or the added total) is paid in
    equal parts per distribution."""
    per_distribution = Money(amount=charged.amount // subscription.distribution_count, currency=charged.currency)
    return {
        "contract_name": subscription.contract_name,
        "lines": subscription.lines,
        "distribution_count": subscription.distribution_count,
        "per_distribution": per_distribution,
        "instructions": instructions,
        "date": date,
    }


def subscription_confirmed(
    source_event_id: UUID,
    group: Group,
    member: Member,
    *,
    subscription: Subscription,
    total: Money,
    instructions: Instructions | None,
    confirmed_at: datetime,
) -> list[Email]:
    facts = {**_subscription_facts(subscription, total, instructions, confirmed_at), "total": total}
    return to_member(Kind.SUBSCRIPTION_CONFIRMED, source_event_id, group, member, facts)


def subscription_amended(
    source_event_id: UUID,
    group: Group,
    member: Member,
    *,
    subscription: Subscription,
    added_total: Money,
    new_total: Money,
    instructions: Instructions | None,
    amended_at: datetime,
) -> list[Email]:
    facts = _subscription_facts(subscription, added_total, instructions, amended_at)
    facts |= {"added_total": added_total, "new_total": new_total}
    return to_member(Kind.SUBSCRIPTION_AMENDED, source_event_id, group, member, facts)


def payment_instructions(
    source_event_id: UUID,
    group: Group,
    member: Member,
    *,
    instructions: Instructions,
    about: str | None,
    declared_at: datetime,
) -> list[Email]:
    """A declared payment not tied to an order (a subscription's, or entered by a coordinator)."""
    facts: dict[str, object] = {"instructions": instructions, "about": about, "date": declared_at}
    return to_member(Kind.PAYMENT_INSTRUCTIONS, source_event_id, group, member, facts)


@dataclass(frozen=True)
class Undelivered:
    """What a coordinator took off an order as not delivered (R6)."""

    product_name: str
    quantity: Decimal
    unit: str | None
    quantity_left: Decimal


def line_undelivered(
    source_event_id: UUID,
    group: Group,
    member: Member,
    *,
    order_id: UUID,
    product: Undelivered,
    reason: str,
    amount: Money,
    new_total: Money,
    method: PaymentMethod,
    removed_at: datetime,
    distribution: Distribution | None = None,
) -> list[Email]:
    """The member is told which product was not delivered, why, and how much less they owe (the
    amount credited to their account). Not a reminder: always sent."""
    facts: dict[str, object] = {
        "order_id": order_id,
        "product": product,
        "reason": reason,
        "amount": amount,
        "new_total": new_total,
        "method": method,
        "date": removed_at,
        "distribution": distribution,
    }
    return to_member(Kind.LINE_UNDELIVERED, source_event_id, group, member, facts)


# --- what happened to the money ---------------------------------------------------------


def payment_event_email(
    kind: Kind, source_event_id: UUID, group: Group, member: Member, **facts: object
) -> list[Email]:
    """Receipt, cancellation, card failure, refund: facts are amount, method, date and the rest."""
    if kind not in (Kind.PAYMENT_RECEIVED, Kind.PAYMENT_CANCELLED, Kind.CARD_PAYMENT_FAILED, Kind.PAYMENT_REFUNDED):
        raise ValueError(f"{kind} is not about a payment")
    return to_member(kind, source_event_id, group, member, dict(facts))


# --- card disputes (to the coordinators) -----------------------------------------------------


def account_link(
    kind: Kind,
    source_event_id: UUID,
    group: Group,
    person: Member,
    *,
    link: str,
    expires_at: datetime,
) -> list[Email]:
    """An invitation to set a password, or a password reset: the single-use link the web
    service created, to the person's own address (never refused: it is how they get in)."""
    return [Email(kind, source_event_id, group, person, {"link": link, "expires_at": expires_at})]


@dataclass(frozen=True)
class Dispute:
    """A card payment disputed with the card provider (a chargeback), as payments announced it."""

    payment_id: UUID
    amount: Money
    dispute_id: str
    provider_payment_id: str
    reason: str = ""
    status: str = ""
    order_id: UUID | None = None


def card_payment_disputed(
    source_event_id: UUID,
    group: Group,
    coordinators: list[Member],
    *,
    payer: Member,
    dispute: Dispute,
    disputed_at: datetime,
    order: KnownOrder | None = None,
    contract_name: str | None = None,
) -> list[Email]:
    """A card payment was disputed with the card provider (a chargeback): one email to each
    coordinator of the group, in their own language, saying who paid what for which order and
    that the dispute is answered in the card provider's dashboard.

    Not a reminder: coordinators cannot opt out of it (only reminders may be refused). Members
    who are not coordinators never get it (the disputing member neither, unless a coordinator)."""
    facts: dict[str, object] = {
        "payer": payer,
        "payment_id": dispute.payment_id,
        "amount": dispute.amount,
        "date": disputed_at,
        "dispute_id": dispute.dispute_id,
        "provider_payment_id": dispute.provider_payment_id,
        "reason": dispute.reason.strip(),
        "status": dispute.status.strip(),
        "order": order,
        "order_id": order.order_id if order is not None else dispute.order_id,
        "contract_name": contract_name,
    }
    return to_coordinators(Kind.CARD_PAYMENT_DISPUTED, source_event_id, group, coordinators, facts)


def to_coordinators(
    kind: Kind, source_event_id: UUID, group: Group, coordinators: list[Member], facts: dict[str, object]
) -> list[Email]:
    """One email of `kind` to each coordinator among `coordinators`, in their own language."""
    return [
        Email(kind, source_event_id, group, coordinator, dict(facts))
        for coordinator in coordinators
        if coordinator.role == "coordinator"
    ]


def card_account_changed(
    source_event_id: UUID,
    group: Group,
    coordinators: list[Member],
    *,
    change: CardAccountChange | None,
    problem: CardAccountProblem | None,
    settings_url: str | None,
    changed_at: datetime,
) -> list[Email]:
    """The payments service announced a change of the group's card readiness. Only the change it
    tells the coordinators about (`change`: set once when card payments stop because of the
    group's Stripe account, once when it can take them again) is emailed, to each coordinator;
    any other announcement (a coordinator's own setting, another problem while card payments
    are already stopped) sends nothing. Not a reminder: no opt-out."""
    if change is None:
        return []
    kind = Kind.CARD_PAYMENTS_STOPPED if change is CardAccountChange.BECAME_UNUSABLE else Kind.CARD_PAYMENTS_RESUMED
    facts: dict[str, object] = {
        "problem": problem.value if problem is not None else "",
        "settings_url": settings_url or "",
        "date": changed_at,
    }
    return to_coordinators(kind, source_event_id, group, coordinators, facts)


# --- balances ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceState:
    """What notifications knows of one member account in one group, from the ledger's events.

    A negative *episode* starts when the ledger says the balance went negative and ends when it
    says the balance is back to zero or more. One reminder per episode, then a digest every
    `interval` while it lasts (see `next_reminder`)."""

    currency: str
    balance: Money | None = None
    as_of: datetime | None = None  # occurred_at of the ledger event that gave `balance`
    negative_since: datetime | None = None
    episode_event_id: UUID | None = None  # the BalanceWentNegative that opened the episode
    episode_closed_at: datetime | None = None
    last_reminder_at: datetime | None = None  # None: the episode's reminder is not sent yet


def balance_changed(state: BalanceState, balance: Money, at: datetime) -> BalanceState:
    """Keep the newest figure (ledger events may arrive out of order)."""
    if state.as_of is not None and at < state.as_of:
        return state
    return replace(state, balance=balance, as_of=at)


def went_negative(state: BalanceState, balance: Money, at: datetime, event_id: UUID) -> BalanceState:
    """The ledger says the balance crossed below zero at `at`: a new episode, unless one is
    already open (one reminder per crossing, not per posting) or this crossing was already undone
    (its BalanceBackToNonNegative arrived first)."""
    state = balance_changed(state, balance, at)
    if state.negative_since is not None:
        return state
    if state.episode_closed_at is not None and at <= state.episode_closed_at:
        return state
    return replace(state, negative_since=at, episode_event_id=event_id, last_reminder_at=None)


def back_to_non_negative(state: BalanceState, balance: Money, at: datetime) -> BalanceState:
    state = balance_changed(state, balance, at)
    if state.negative_since is not None and at < state.negative_since:
        return state  # an older episode's end; the current one goes on
    closed = at if state.episode_closed_at is None else max(at, state.episode_closed_at)
    return replace(state, negative_since=None, episode_event_id=None, episode_closed_at=closed)


def next_reminder(
    state: BalanceState, now: datetime, *, grace: timedelta, interval: timedelta, pending: Money
) -> Kind | None:
    """Which reminder is due now, if any.

    - none unless an episode is open and the balance is still negative;
    - none while payments announced but not yet received (`pending`: a cheque to hand over at
      the distribution, a transfer on its way) cover what is owed: by R16 a cheque order makes
      the balance negative until the cheque is received, and its instructions email already
      said how to pay;
    - the episode's reminder once `grace` has passed since the crossing (time for the
      payments service's PaymentDeclared, which races the ledger's BalanceWentNegative);
    - then a digest every `interval`."""
    if state.negative_since is None or state.balance is None or not state.balance.is_negative:
        return None
    owed = -state.balance
    if pending.currency == owed.currency and pending >= owed:
        return None
    if state.last_reminder_at is None:
        return Kind.BALANCE_REMINDER if now - state.negative_since >= grace else None
    return Kind.BALANCE_DIGEST if now - state.last_reminder_at >= interval else None


def digest_event_id(account_key: str, negative_since: datetime, previous_reminder_at: datetime) -> UUID:
    """A stable id for the digest that follows a given reminder, keying the delivery log."""
    return uuid5(
        NAMESPACE_URL,
        f"cagette:notifications:digest:{account_key}:{negative_since.isoformat()}:{previous_reminder_at.isoformat()}",
    )


def _balance_facts(group: Group, balance: Money, pending: Money) -> dict[str, object]:
    owed = -balance
    left = owed - pending if pending.currency == owed.currency and pending.amount > 0 else owed
    return {"balance": balance, "owed": owed, "pending": pending, "left": left, "settle": settle_options(group, left)}


def balance_reminder(
    source_event_id: UUID, group: Group, member: Member, *, balance: Money, since: datetime, pending: Money
) -> list[Email]:
    facts = _balance_facts(group, balance, pending) | {"since": since}
    return to_member(Kind.BALANCE_REMINDER, source_event_id, group, member, facts)


def balance_digest(
    source_event_id: UUID,
    group: Group,
    member: Member,
    *,
    balance: Money,
    since: datetime,
    now: datetime,
    pending: Money,
) -> list[Email]:
    facts = _balance_facts(group, balance, pending) | {"since": since, "date": now, "days": (now - since).days}
    return to_member(Kind.BALANCE_DIGEST, source_event_id, group, member, facts)


def balance_email(
    kind: Kind, source_event_id: UUID, group: Group, member: Member, state: BalanceState, now: datetime, pending: Money
) -> list[Email]:
    assert state.balance is not None and state.negative_since is not None
    if kind == Kind.BALANCE_REMINDER:
        return balance_reminder(
            source_event_id, group, member, balance=state.balance, since=state.negative_since, pending=pending
        )
    return balance_digest(
        source_event_id, group, member, balance=state.balance, since=state.negative_since, now=now, pending=pending
    )


def settle_options(group: Group, owed: Money) -> list[Instructions]:
    """How a member can settle a negative balance: the group's cheque payee and IBAN, and cash."""
    options = [Instructions(PaymentMethod.CHEQUE, owed, payee=group.cheque_payee or group.name)]
    if group.transfer_iban:
        options.append(
            Instructions(PaymentMethod.TRANSFER, owed, iban=format_iban(group.transfer_iban), bic=group.transfer_bic)
        )
    options.append(Instructions(PaymentMethod.CASH, owed))
    return options


# --- webhooks ------------------------------------------------------------------------------

# Emails about no group (a platform endpoint) are filed under the nil group id, as web's
# password resets of an account in no group are, and signed "Cagette".
PLATFORM_GROUP_ID = UUID(int=0)


def platform_owner(email: str, language: str, user_id: UUID) -> tuple[Group, Member]:
    """The contact a platform administrator gave when registering a platform-wide endpoint."""
    group = Group(PLATFORM_GROUP_ID, "Cagette", "EUR", language)
    return group, Member(PLATFORM_GROUP_ID, user_id, "", email, language)


def webhook_disabled(
    endpoint_id: UUID,
    disabled_at: datetime,
    recipients: list[tuple[Group, Member]],
    *,
    url: str,
    failing_since: datetime,
    last_error: str,
) -> list[Email]:
    """The endpoint's owners told it was disabled: its group's coordinators, or a platform
    endpoint's owner. Keyed by the disabling, so an endpoint disabled again is told again."""
    source = uuid5(NAMESPACE_URL, f"cagette:notifications:webhook-disabled:{endpoint_id}:{disabled_at.isoformat()}")
    facts: dict[str, object] = {
        "url": url,
        "failing_since": failing_since,
        "endpoint_id": endpoint_id,
        "last_error": last_error,
    }
    return [
        Email(Kind.WEBHOOK_DISABLED, source, group, member, {**facts, "platform": group.group_id == PLATFORM_GROUP_ID})
        for group, member in recipients
    ]


# --- delivery retries --------------------------------------------------------------------


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait before the next SMTP attempt after `attempts` failed ones (exponential)."""
    return min(cap, base * 2 ** max(0, min(attempts - 1, 30)))
