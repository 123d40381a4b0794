"""Events the orders service publishes (routing keys `orders.*`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import EmailStr, Field, model_validator

from . import routing
from .common import Language, Part, PaymentMethod, PositiveQuantity, Role
from .envelope import Event
from .money import CurrencyCode, Money, MoneyError, line_amount, total

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


class OrderLine(Part):
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


__all__ = [
    "GroupSettingsChanged",
    "MemberJoined",
    "OrderConfirmed",
    "OrderLine",
]
