"""Events published on `cagette.events`. One class per (event type, schema version)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from . import routing
from .envelope import Event
from .money import CurrencyCode, Money, MoneyError, line_amount, total


class PaymentMethod(StrEnum):
    CHEQUE = "cheque"
    CASH = "cash"
    TRANSFER = "transfer"
    MONEY_POT = "money_pot"
    CARD = "card"
    ON_THE_SPOT = "on_the_spot"


class Role(StrEnum):
    MEMBER = "member"
    COORDINATOR = "coordinator"


class Language(StrEnum):
    FR = "fr"
    EN = "en"


PositiveQuantity = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=3)]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# ---------------------------------------------------------------- orders


class GroupSettingsChanged(Event):
    """A group was created or its payment settings changed (full state, not a diff)."""

    event_type: Literal["orders.group.settings_changed"] = routing.GROUP_SETTINGS_CHANGED
    schema_version: Literal[1] = 1
    name: str
    currency: CurrencyCode
    language: Language = Language.FR
    payments_enabled: bool
    payment_methods: list[PaymentMethod] = []
    allow_negative_money_pot: bool = False
    cheque_payee: str | None = None
    transfer_iban: str | None = None
    transfer_bic: str | None = None


class MemberJoined(Event):
    event_type: Literal["orders.member.joined"] = routing.MEMBER_JOINED
    schema_version: Literal[1] = 1
    member_id: UUID
    role: Role
    name: str
    email: EmailStr
    language: Language = Language.FR


class OrderLine(_Part):
    product_id: UUID | None = None
    product_name: str
    quantity: PositiveQuantity
    unit_price: Money
    fee_rate: Decimal = Decimal(0)
    line_total: Money

    @model_validator(mode="after")
    def _rounded_once(self) -> OrderLine:
        expected = line_amount(self.quantity, self.unit_price, self.fee_rate)
        if expected != self.line_total:
            raise MoneyError(f"line_total {self.line_total} differs from quantity x unit price = {expected}")
        return self


class OrderConfirmed(Event):
    """An order is confirmed: the member owes its total to the group (SPEC R3)."""

    event_type: Literal["orders.order.confirmed"] = routing.ORDER_CONFIRMED
    schema_version: Literal[1] = 1
    order_id: UUID
    member_id: UUID
    distribution_id: UUID | None = None
    payment_method: PaymentMethod
    lines: list[OrderLine] = Field(min_length=1)
    total: Money

    @model_validator(mode="after")
    def _total_is_sum_of_lines(self) -> OrderConfirmed:
        expected = total([line.line_total for line in self.lines], self.total.currency)
        if expected != self.total:
            raise MoneyError(f"order total {self.total} differs from the sum of its lines {expected}")
        if self.total.amount <= 0:
            raise MoneyError("an order total must be positive")
        return self


# ---------------------------------------------------------------- ledger


class AccountType(StrEnum):
    MEMBER = "member"
    SALES = "sales"
    CHEQUES = "cheques"
    CASH = "cash"
    TRANSFERS = "transfers"
    CARD_CLEARING = "card_clearing"
    CARD_FEES = "card_fees"
    OPENING_BALANCE_EQUITY = "opening_balance_equity"


class PostingLine(_Part):
    account_id: UUID
    account_type: AccountType
    member_id: UUID | None = None
    amount: Money = Field(description="Signed: positive credits the account as members see it")
    balance_after: Money


class TransactionPosted(Event):
    """One balanced ledger transaction was posted ("EntryPosted" in the brief)."""

    event_type: Literal["ledger.transaction.posted"] = routing.TRANSACTION_POSTED
    schema_version: Literal[1] = 1
    transaction_id: UUID
    kind: str
    idempotency_key: str
    reverses_transaction_id: UUID | None = None
    postings: list[PostingLine] = Field(min_length=2)


class BalanceChanged(Event):
    """A member's posted balance changed. Positive = credit with the group; negative = owes."""

    event_type: Literal["ledger.balance.changed"] = routing.BALANCE_CHANGED
    schema_version: Literal[1] = 1
    member_id: UUID
    account_id: UUID
    transaction_id: UUID
    previous_balance: Money
    balance: Money


class BalanceWentNegative(Event):
    event_type: Literal["ledger.balance.went_negative"] = routing.BALANCE_WENT_NEGATIVE
    schema_version: Literal[1] = 1
    member_id: UUID
    account_id: UUID
    transaction_id: UUID
    balance: Money


class BalanceBackToNonNegative(Event):
    event_type: Literal["ledger.balance.back_to_non_negative"] = routing.BALANCE_BACK_TO_NON_NEGATIVE
    schema_version: Literal[1] = 1
    member_id: UUID
    account_id: UUID
    transaction_id: UUID
    balance: Money


__all__ = [
    "AccountType",
    "BalanceBackToNonNegative",
    "BalanceChanged",
    "BalanceWentNegative",
    "CurrencyCode",
    "GroupSettingsChanged",
    "Language",
    "MemberJoined",
    "OrderConfirmed",
    "OrderLine",
    "PaymentMethod",
    "PostingLine",
    "Role",
    "TransactionPosted",
]
