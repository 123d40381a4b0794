"""Pure ledger rules: what a transaction is, when it balances, what each event posts.

Sign convention: amounts are signed as the account holder sees them. A member's balance is
positive when the group owes the member (credit) and negative when the member owes the group.
Every transaction's postings sum to zero per currency (double entry, SPEC B4), so the sum of
all balances of a group (the trial balance) is always zero.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from uuid import UUID

from cagette_contracts import AccountType, Money, OrderConfirmed
from cagette_runtime.errors import Invalid


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

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise Invalid("a transaction needs an idempotency key")
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

    @property
    def currency(self) -> str:
        return self.legs[0].amount.currency

    def fingerprint(self) -> str:
        """Digest of the content, to tell a faithful replay from a reused key."""
        content = {
            "group": str(self.group_id),
            "kind": self.kind,
            "reverses": str(self.reverses) if self.reverses else None,
            "legs": sorted(
                (leg.account.type.value, str(leg.account.member_id), leg.amount.amount, leg.amount.currency)
                for leg in self.legs
            ),
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def member_account(group_id: UUID, member_id: UUID) -> AccountRef:
    return AccountRef(group_id, AccountType.MEMBER, member_id)


def group_account(group_id: UUID, account_type: AccountType) -> AccountRef:
    return AccountRef(group_id, account_type)


def order_confirmed(event: OrderConfirmed) -> TransactionDraft:
    """An order debits the member and credits the group's sales (SPEC R3)."""
    return TransactionDraft(
        group_id=event.group_id,
        kind="order",
        idempotency_key=f"order:{event.order_id}:confirmed",
        legs=(
            Leg(member_account(event.group_id, event.member_id), -event.total),
            Leg(group_account(event.group_id, AccountType.SALES), event.total),
        ),
        memo=f"order {event.order_id}",
        source_event_id=event.event_id,
    )


def crossed_zero(previous: Money, current: Money) -> str | None:
    """'negative' when a balance goes below zero, 'non_negative' when it comes back, else None."""
    if previous.amount >= 0 > current.amount:
        return "negative"
    if previous.amount < 0 <= current.amount:
        return "non_negative"
    return None
