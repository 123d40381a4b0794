"""Pure ledger rules: what a transaction is, when it balances, what each event posts, when a
hold is granted, how amounts are read from and written to CSV. No I/O here.

Sign convention: amounts are signed as the account holder sees them. A member's balance is
positive when the group owes the member (credit) and negative when the member owes the group.
Every transaction's postings sum to zero per currency (double entry, SPEC B4), so the sum of
all balances of a group (the trial balance) is always zero.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from cagette_contracts import (
    AccountType,
    CardDisputeFundsReinstated,
    CardDisputeFundsWithdrawn,
    CardFeeCharged,
    Money,
    OrderAmended,
    OrderConfirmed,
    OrderLineUndelivered,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
    PaymentReversed,
    SubscriptionAmended,
    SubscriptionConfirmed,
    TransactionKind,
    minor_unit_exponent,
)
from cagette_contracts.money import MAX_MINOR_UNITS
from cagette_runtime.errors import Invalid

GROUP_ACCOUNT_TYPES = tuple(t for t in AccountType if t != AccountType.MEMBER)


# What a transaction records (stored, exported, and in TransactionPosted.kind): the contract's closed set.
Kind = TransactionKind


@dataclass(frozen=True)
class AccountRef:
    """Names an account without knowing its id: (group, type, member for member accounts)."""

    group_id: UUID
    type: AccountType
    member_id: UUID | None = None

    def __post_init__(self) -> None:
        if (self.type == AccountType.MEMBER) != (self.member_id is not None):
            raise Invalid("a member account needs a member id, and only a member account has one")


@dataclass(frozen=True)
class Leg:
    account: AccountRef
    amount: Money


@dataclass(frozen=True)
class TransactionDraft:
    group_id: UUID
    kind: str
    idempotency_key: str
    legs: tuple[Leg, ...]
    memo: str = ""
    reverses: UUID | None = None
    source_event_id: UUID | None = None
    reason: str | None = None
    recorded_by: UUID | None = None
    # The cause's correlation id, for the transaction row and its events (None: the action in
    # progress). Not part of the content: a replay may come with another one.
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if not self.idempotency_key or len(self.idempotency_key) > 200:
            raise Invalid("a transaction needs an idempotency key of 1 to 200 characters")
        if len(self.legs) < 2:
            raise Invalid("a transaction needs at least two postings")
        currencies = {leg.amount.currency for leg in self.legs}
        if len(currencies) != 1:
            raise Invalid(f"a transaction posts in one currency, got {sorted(currencies)}")
        if any(leg.amount.is_zero for leg in self.legs):
            raise Invalid("a posting amount cannot be zero")
        if any(leg.account.group_id != self.group_id for leg in self.legs):
            raise Invalid("every posting must be on an account of the transaction's group")
        if sum(leg.amount.amount for leg in self.legs) != 0:
            raise Invalid("the postings of a transaction must sum to zero")
        if len({leg.account for leg in self.legs}) != len(self.legs):
            raise Invalid("a transaction posts at most once to each account")

    @property
    def currency(self) -> str:
        return self.legs[0].amount.currency

    def fingerprint(self) -> str:
        """Digest of the content, to tell a faithful replay from a reused key."""
        content = {
            "group": str(self.group_id),
            "kind": self.kind,
            "reverses": str(self.reverses) if self.reverses else None,
            "reason": self.reason,
            "legs": sorted(
                (leg.account.type.value, str(leg.account.member_id), leg.amount.amount, leg.amount.currency)
                for leg in self.legs
            ),
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def member_legs(self) -> list[Leg]:
        return [leg for leg in self.legs if leg.account.type == AccountType.MEMBER]


def member_account(group_id: UUID, member_id: UUID) -> AccountRef:
    return AccountRef(group_id, AccountType.MEMBER, member_id)


def group_account(group_id: UUID, account_type: AccountType) -> AccountRef:
    if account_type == AccountType.MEMBER:
        raise Invalid("a group account cannot be of type member")
    return AccountRef(group_id, account_type)


def _member_against(
    member: AccountRef,
    member_amount: Money,
    against: AccountType,
    kind: Kind,
    key: str,
    memo: str,
    *,
    source_event_id: UUID | None = None,
    reason: str | None = None,
    recorded_by: UUID | None = None,
) -> TransactionDraft:
    """Two legs: `member_amount` on the member's account (signed as the member sees it), the
    opposite on the group account `against`."""
    return TransactionDraft(
        group_id=member.group_id,
        kind=kind.value,
        idempotency_key=key,
        legs=(Leg(member, member_amount), Leg(group_account(member.group_id, against), -member_amount)),
        memo=memo,
        source_event_id=source_event_id,
        reason=reason,
        recorded_by=recorded_by,
    )


def _positive(amount: Money, what: str) -> Money:
    if amount.amount <= 0:
        raise Invalid(f"{what} must be a positive amount, got {amount}")
    return amount


class _MemberEvent(Protocol):
    """An event about one member of one group (the orders' and payments' events)."""

    @property
    def event_id(self) -> UUID: ...
    @property
    def group_id(self) -> UUID: ...
    @property
    def member_id(self) -> UUID: ...


def _sale(event: _MemberEvent, total: Money, what: str, kind: Kind, key: str, memo: str) -> TransactionDraft:
    """What a member owes for `event`: a debit of `total` (positive) against the group's sales."""
    member = member_account(event.group_id, event.member_id)
    debit = -_positive(total, what)
    return _member_against(member, debit, AccountType.SALES, kind, key, memo, source_event_id=event.event_id)


def order_confirmed(event: OrderConfirmed) -> TransactionDraft:
    """An order debits the member and credits the group's sales (SPEC R3)."""
    key = f"order:{event.order_id}:confirmed"
    return _sale(event, event.total, "an order total", Kind.ORDER, key, f"order {event.order_id}")


def order_amended(event: OrderAmended) -> TransactionDraft:
    """Products added to an order (R6, add-only): an extra debit of the added total."""
    key = f"order:{event.order_id}:amendment:{event.amendment_id}"
    return _sale(event, event.added_total, "an amendment", Kind.ORDER_AMENDMENT, key, f"order {event.order_id} amended")


def order_line_undelivered(event: OrderLineUndelivered) -> TransactionDraft:
    """A product the producer could not deliver, taken off the order by a coordinator (R6):
    the member owes that much less. A new posting crediting the member against sales, never an
    edit of the order's (B4). Kind correction (R6: "a recorded correction"), with the reason and
    who recorded it: not kind reversal, which negates the whole of one transaction, once."""
    credit = _positive(event.amount, "an undelivered product's credit")
    key = f"order:{event.order_id}:undelivered:{event.removal_id}"
    memo = f"order {event.order_id} line {event.line_number} not delivered"
    member = member_account(event.group_id, event.member_id)
    return _member_against(
        member,
        credit,
        AccountType.SALES,
        Kind.CORRECTION,
        key,
        memo,
        source_event_id=event.event_id,
        reason=event.reason,
        recorded_by=event.removed_by,
    )


def subscription_confirmed(event: SubscriptionConfirmed) -> TransactionDraft:
    """A subscription contract: the debt is the contract total, recorded at once (R19)."""
    key = f"subscription:{event.subscription_id}:confirmed"
    memo = f"subscription {event.contract_name} ({event.distribution_count} distributions)"
    return _sale(event, event.total, "a subscription total", Kind.SUBSCRIPTION, key, memo)


def subscription_amended(event: SubscriptionAmended) -> TransactionDraft:
    """Products added to a subscription (add-only): an extra debit of the added lines x the
    distributions still to come."""
    key = f"subscription:{event.subscription_id}:amendment:{event.amendment_id}"
    memo = f"subscription {event.subscription_id} amended ({event.distribution_count} distributions)"
    return _sale(event, event.added_total, "a subscription amendment", Kind.SUBSCRIPTION_AMENDMENT, key, memo)


def hold_key(event: OrderConfirmed | OrderAmended | SubscriptionConfirmed | SubscriptionAmended) -> UUID:
    """The `order_id` the orders service put in its PlaceHold for what `event` confirms: the
    order (for the order and its additions) or the subscription (for it and its additions)."""
    if isinstance(event, OrderConfirmed | OrderAmended):
        return event.order_id
    return event.subscription_id


CLEARING_ACCOUNTS: dict[PaymentMethod, AccountType] = {
    PaymentMethod.CHEQUE: AccountType.CHEQUES,
    PaymentMethod.CASH: AccountType.CASH,
    PaymentMethod.TRANSFER: AccountType.TRANSFERS,
    PaymentMethod.CARD: AccountType.CARD_CLEARING,
}


def clearing_account(method: PaymentMethod) -> AccountType:
    """Where money paid by `method` is cleared. The money pot moves no money and "on the spot"
    is not a method money arrives by (the coordinator records the actual one, R17)."""
    try:
        return CLEARING_ACCOUNTS[method]
    except KeyError:
        raise Invalid(
            f"no money arrives by {method.value!r}: a received payment or refund needs the actual method "
            f"({', '.join(m.value for m in CLEARING_ACCOUNTS)})"
        ) from None


def _money_moved(
    event: PaymentReceived | PaymentRefunded, member_amount: Money, kind: Kind, key: str, memo: str
) -> TransactionDraft:
    """Money that came or went by `event.method`: on the member, against that method's clearing
    account."""
    member = member_account(event.group_id, event.member_id)
    against = clearing_account(event.method)
    return _member_against(
        member, member_amount, against, kind, key, memo, source_event_id=event.event_id, recorded_by=event.recorded_by
    )


def payment_received(event: PaymentReceived) -> TransactionDraft:
    """Money arrived: credit the member, against the clearing account of the actual method."""
    amount = _positive(event.amount, "a payment")
    memo = " ".join(
        part for part in (f"{event.method.value} payment", event.label or "", event.reference or "") if part
    )
    key = f"payment:{event.payment_id}:received"
    return _money_moved(event, amount, Kind.PAYMENT, key, memo)


def payment_refunded(event: PaymentRefunded) -> TransactionDraft:
    """Money given back: debit the member, against the clearing account it leaves by."""
    amount = -_positive(event.amount, "a refund")
    memo = f"{event.method.value} refund {event.reason}".strip()
    return _money_moved(event, amount, Kind.REFUND, f"refund:{event.refund_id}", memo)


def payment_reversal_accounts(event: PaymentReversed) -> list[AccountRef]:
    """The accounts the reversal of a received payment posts to: the member's and the clearing
    account the payment came in by (to lock them with a batch's others)."""
    return [
        member_account(event.group_id, event.member_id),
        group_account(event.group_id, clearing_account(event.method)),
    ]


def card_fee_charged(event: CardFeeCharged) -> TransactionDraft:
    """The provider keeps its fee out of the card clearing account; the group bears it."""
    fee = _positive(event.amount, "a card fee")
    return TransactionDraft(
        group_id=event.group_id,
        kind=Kind.CARD_FEE.value,
        idempotency_key=f"card_fee:{event.payment_id}",
        legs=(
            Leg(group_account(event.group_id, AccountType.CARD_FEES), -fee),
            Leg(group_account(event.group_id, AccountType.CARD_CLEARING), fee),
        ),
        memo=f"card fee for payment {event.provider_payment_id}",
        source_event_id=event.event_id,
    )


def _card_dispute(
    event: CardDisputeFundsWithdrawn | CardDisputeFundsReinstated,
    member_amount: Money,
    fee: Money,
    kind: Kind,
    what: str,
) -> TransactionDraft:
    """A dispute's funds moving: `member_amount` on the member and `fee` on the group's card fees
    (no leg when zero), their opposite on card clearing."""
    legs = [
        Leg(member_account(event.group_id, event.member_id), member_amount),
        Leg(group_account(event.group_id, AccountType.CARD_CLEARING), -(member_amount + fee)),
    ]
    if not fee.is_zero:
        legs.append(Leg(group_account(event.group_id, AccountType.CARD_FEES), fee))
    return TransactionDraft(
        group_id=event.group_id,
        kind=kind.value,
        idempotency_key=f"card_dispute:{event.transaction_id}",
        legs=tuple(legs),
        memo=f"card dispute {event.dispute_id}: funds {what} payment {event.provider_payment_id}",
        source_event_id=event.event_id,
    )


def card_dispute_funds_withdrawn(event: CardDisputeFundsWithdrawn) -> TransactionDraft:
    """Dispute funds withdrawn: the provider took the amount back to the card holder and its fee
    out of card clearing. The member's payment no longer stands (the member owes it again: kind
    refund); the group's card-fee account bears the fee."""
    amount = _positive(event.amount, "withdrawn dispute funds")
    return _card_dispute(event, -amount, -event.fee, Kind.REFUND, "withdrawn from")


def card_dispute_funds_reinstated(event: CardDisputeFundsReinstated) -> TransactionDraft:
    """A won dispute: the amount (and any fee given back) returns to card clearing; the member's
    payment stands again (credited: kind payment)."""
    amount = _positive(event.amount, "reinstated dispute funds")
    return _card_dispute(event, amount, event.fee_returned, Kind.PAYMENT, "reinstated to")


def opening_balance(
    group_id: UUID, member_id: UUID, amount: Money, *, recorded_by: UUID | None, memo: str = "", key: str | None = None
) -> TransactionDraft:
    """ "Reprise de solde" (R15): the member's balance carried over, positive or negative, against
    opening-balance equity. One per member unless the caller gives its own key."""
    if amount.is_zero:
        raise Invalid("an opening balance of zero records nothing: leave the member at zero instead")
    key = key or f"opening_balance:{group_id}:{member_id}"
    equity, memo = AccountType.OPENING_BALANCE_EQUITY, memo or "opening balance"
    member = member_account(group_id, member_id)
    return _member_against(member, amount, equity, Kind.OPENING_BALANCE, key, memo, recorded_by=recorded_by)


def correction(
    group_id: UUID,
    member_id: UUID,
    amount: Money,
    *,
    reason: str,
    against: AccountType,
    key: str,
    recorded_by: UUID | None,
) -> TransactionDraft:
    """A coordinator's correction of a member's balance: signed as the member sees it, with a
    reason, against a group account (sales by default)."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("a correction needs a reason")
    if amount.is_zero:
        raise Invalid("a correction of zero changes nothing")
    member = member_account(group_id, member_id)
    return _member_against(
        member, amount, against, Kind.CORRECTION, key, "correction", reason=reason, recorded_by=recorded_by
    )


def reversal(
    original_id: UUID, group_id: UUID, legs: list[Leg], *, reason: str, recorded_by: UUID | None, original_kind: str
) -> TransactionDraft:
    """The transaction that undoes `original_id`: every leg negated, pointing at it."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("a reversal needs a reason")
    if original_kind == Kind.REVERSAL.value:
        raise Invalid("a reversal cannot itself be reversed: post a correction instead")
    return TransactionDraft(
        group_id=group_id,
        kind=Kind.REVERSAL.value,
        idempotency_key=f"reversal:{original_id}",
        legs=tuple(Leg(leg.account, -leg.amount) for leg in legs),
        memo=f"reversal of {original_kind} {original_id}",
        reverses=original_id,
        reason=reason,
        recorded_by=recorded_by,
    )


def crossed_zero(previous: Money, current: Money) -> str | None:
    """'negative' when a balance goes below zero, 'non_negative' when it comes back, else None."""
    if previous.amount >= 0 > current.amount:
        return "negative"
    if previous.amount < 0 <= current.amount:
        return "non_negative"
    return None


# --- holds (R13, B2) -----------------------------------------------------------------------


@dataclass(frozen=True)
class HoldVerdict:
    granted: bool
    available_after: int
    reason: str | None = None


def decide_hold(*, balance: int, active_holds: int, amount: int, allow_negative: bool) -> HoldVerdict:
    """Grant a money-pot hold when the group allows negative pots or when what is available
    (posted balance minus active holds; pending credits never count) covers it."""
    if amount <= 0:
        raise Invalid("a hold must be a positive amount")
    available = balance - active_holds
    if allow_negative or available >= amount:
        return HoldVerdict(True, available - amount)
    return HoldVerdict(False, available, "insufficient available balance and the group refuses negative money pots")


def hold_fingerprint(group_id: UUID, member_id: UUID, order_id: UUID, amount: Money) -> str:
    """What makes two requests with one hold_id the same hold. Not its expiry nor its deadline:
    a retry asks again with the same hold_id and a later expiry and deadline."""
    content = [str(group_id), str(member_id), str(order_id), amount.amount, amount.currency]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


# --- balances page, CSV amounts ------------------------------------------------------------


class HoldStatus(StrEnum):
    """A money-pot hold (R13, B2): granted holds are active until captured (their order was
    confirmed), released or expired; a refused one stays refused."""

    ACTIVE = "active"
    REFUSED = "refused"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


class EntryStatus(StrEnum):
    """A pending entry (R16): a declared payment, pending until posted (received) or voided."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


def sql_in(values: type[StrEnum]) -> str:
    """`'a', 'b', ...`: the enum's values for a CHECK constraint (the same text as the migrations')."""
    return ", ".join(repr(member.value) for member in values)


class Standing(StrEnum):
    IN_DEBT = "in_debt"
    BALANCED = "balanced"
    IN_CREDIT = "in_credit"


def standing(balance: int) -> Standing:
    """R4: zero is settled, positive is a credit with the group, negative is owed to it."""
    if balance < 0:
        return Standing.IN_DEBT
    if balance > 0:
        return Standing.IN_CREDIT
    return Standing.BALANCED


# ASCII digits only (`\\d` would take any Unicode digit), and never more than an amount can hold.
_DECIMAL = re.compile(r"([+-]?)([0-9]{1,15})(?:[.,]([0-9]{1,15}))?")


def parse_decimal_amount(text: str, currency: str) -> Money:
    """'-12.50' (or '-12,50') in major units -> Money(-1250, EUR). Refuses more decimals than the
    currency has, and anything that is not a plain decimal number. No float, no rounding."""
    match = _DECIMAL.fullmatch(text.strip())
    if match is None:
        raise Invalid(f"{text[:40]!r} is not an amount: write it like -12.50")
    sign, units, fraction = match.groups()
    exponent = minor_unit_exponent(currency)
    fraction = fraction or ""
    if len(fraction) > exponent:
        raise Invalid(f"{text!r} has more decimals than {currency} allows ({exponent})")
    minor = int(units) * 10**exponent + (int(fraction.ljust(exponent, "0")) if exponent else 0)
    if minor > MAX_MINOR_UNITS:
        raise Invalid(f"{text!r} is out of range")
    return Money(amount=-minor if sign == "-" else minor, currency=currency)
