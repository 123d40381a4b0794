"""Events the orders service publishes (routing keys `orders.*`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import EmailStr, Field, WithJsonSchema, model_validator

from . import routing
from .common import (
    DEFAULT_TIME_ZONE,
    CatalogKind,
    FeeRate,
    Language,
    Part,
    PaymentMethod,
    PositiveQuantity,
    ProductUnit,
    Role,
)
from .envelope import Event, UtcDatetime
from .money import CurrencyCode, Money, MoneyError, PositiveMoney, line_amount, total


class GroupSettingsChanged(Event):
    """A group was created or its payment settings changed (full state, not a diff)."""

    event_type: Literal["orders.group.settings_changed"] = routing.GROUP_SETTINGS_CHANGED
    schema_version: Literal[1] = 1
    name: str
    currency: CurrencyCode
    language: Language = Language.FR
    time_zone: str = Field(
        default=DEFAULT_TIME_ZONE, max_length=64, description="IANA name: the group's dates are shown in it"
    )
    payments_enabled: bool
    payment_methods: list[PaymentMethod] = []
    allow_negative_money_pot: bool = False
    cheque_payee: str | None = None
    transfer_iban: str | None = None
    transfer_bic: str | None = None
    card_payments_configured: bool = Field(
        default=False, description="The group's card payments are set up (card may be offered only then)"
    )
    order_cutoff_hours: int = Field(
        default=0, ge=0, description="Orders close this many hours before a distribution starts"
    )


class MemberJoined(Event):
    event_type: Literal["orders.member.joined"] = routing.MEMBER_JOINED
    schema_version: Literal[1] = 1
    member_id: UUID
    role: Role
    name: str
    email: EmailStr
    language: Language = Language.FR


class MemberUpdated(Event):
    """A member's role or contact details changed (full state, not a diff)."""

    event_type: Literal["orders.member.updated"] = routing.MEMBER_UPDATED
    schema_version: Literal[1] = 1
    member_id: UUID
    role: Role
    name: str
    email: EmailStr
    language: Language = Language.FR


class MemberLeft(Event):
    """A member left the group or a coordinator removed them. Their account and history stay
    (the ledger keeps their balance); they hold no role in the group any more."""

    event_type: Literal["orders.member.left"] = routing.MEMBER_LEFT
    schema_version: Literal[1] = 1
    member_id: UUID
    removed: bool = Field(description="True when a coordinator removed them, false when they left")


class OrderLine(Part):
    product_id: UUID | None = None
    product_name: str
    quantity: PositiveQuantity
    unit_price: Money
    fee_rate: Decimal = Decimal(0)
    line_total: Money
    unit: str | None = Field(default=None, description="piece, kg or litre: what the quantity counts")

    @model_validator(mode="after")
    def _rounded_once(self) -> OrderLine:
        expected = line_amount(self.quantity, self.unit_price, self.fee_rate)
        if expected != self.line_total:
            raise MoneyError(f"line_total {self.line_total} differs from quantity x unit price = {expected}")
        return self


# When and where the member collects an order (shown in the emails about it).
DistributionStartsAt = Annotated[datetime | None, Field(description="When the distribution starts (UTC)")]
DistributionPlace = Annotated[str | None, Field(description="Where members collect their orders")]


def lines_total(lines: list[OrderLine], currency: str) -> Money:
    """What the lines come to: the sum of their totals (each rounded once, B1)."""
    return total([line.line_total for line in lines], currency)


def subscription_lines_total(lines: list[OrderLine], distribution_count: int, currency: str) -> Money:
    """What a subscription's lines (one distribution's products) come to over `distribution_count` distributions."""
    return Money(amount=lines_total(lines, currency).amount * distribution_count, currency=currency)


def check_new_total_includes(added_total: Money, new_total: Money) -> None:
    """An amendment's new total is the total before plus what it adds: never less, same currency."""
    if new_total.currency != added_total.currency or new_total < added_total:
        raise MoneyError("new_total must include added_total, in the same currency")


class OrderConfirmed(Event):
    """An order is confirmed: the member owes its total to the group (SPEC R3)."""

    event_type: Literal["orders.order.confirmed"] = routing.ORDER_CONFIRMED
    schema_version: Literal[1] = 1
    order_id: UUID
    member_id: UUID
    distribution_id: UUID | None = None
    distribution_starts_at: DistributionStartsAt = None
    distribution_place: DistributionPlace = None
    payment_method: PaymentMethod
    lines: list[OrderLine] = Field(min_length=1)
    total: PositiveMoney

    @model_validator(mode="after")
    def _total_is_sum_of_lines(self) -> OrderConfirmed:
        expected = lines_total(self.lines, self.total.currency)
        if expected != self.total:
            raise MoneyError(f"order total {self.total} differs from the sum of its lines {expected}")
        if self.total.amount <= 0:
            raise MoneyError("an order total must be positive")
        return self


class OrderAmended(Event):
    """Products were added to a confirmed order (add-only, R6): the member owes `added_total` more."""

    event_type: Literal["orders.order.amended"] = routing.ORDER_AMENDED
    schema_version: Literal[1] = 1
    order_id: UUID
    amendment_id: UUID
    member_id: UUID
    distribution_id: UUID | None = None
    distribution_starts_at: DistributionStartsAt = None
    distribution_place: DistributionPlace = None
    payment_method: PaymentMethod
    added_lines: list[OrderLine] = Field(min_length=1)
    added_total: PositiveMoney
    new_total: PositiveMoney

    @model_validator(mode="after")
    def _added_total_is_sum_of_added_lines(self) -> OrderAmended:
        expected = lines_total(self.added_lines, self.added_total.currency)
        if expected != self.added_total:
            raise MoneyError(f"added total {self.added_total} differs from the sum of the added lines {expected}")
        if self.added_total.amount <= 0:
            raise MoneyError("an amendment adds a positive amount")
        check_new_total_includes(self.added_total, self.new_total)
        return self


# A quantity that may be zero ("0", "1.5"): on the wire a decimal string, never a float.
NonNegativeQuantity = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=3),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,3})?$"}, mode="serialization"),
]


class OrderLineUndelivered(Event):
    """A coordinator took `quantity` of one line of a confirmed order off it because the producer
    could not deliver it (R6: lowering an order is the coordinator's business, a recorded
    correction, with a reason). The member owes `amount` less: the line priced at what was left
    of it before, minus the line priced at `quantity_left` (so removing a line in several steps
    credits exactly its total, whatever the rounding). Once per `removal_id`."""

    event_type: Literal["orders.order.line_undelivered"] = routing.ORDER_LINE_UNDELIVERED
    schema_version: Literal[1] = 1
    order_id: UUID
    removal_id: UUID = Field(description="This removal: the key of its effects (one credit, one email)")
    member_id: UUID
    distribution_id: UUID | None = None
    distribution_starts_at: DistributionStartsAt = None
    distribution_place: DistributionPlace = None
    payment_method: PaymentMethod
    line_number: int = Field(ge=1, description="The order line's number (GET /groups/{g}/orders/{o})")
    product_id: UUID | None = None
    product_name: str
    unit: str | None = Field(default=None, description="piece, kg or litre: what the quantity counts")
    quantity: PositiveQuantity = Field(description="How much of the line was not delivered (this removal)")
    quantity_left: NonNegativeQuantity = Field(description="What is left of the line after this removal")
    unit_price: Money
    fee_rate: Decimal = Decimal(0)
    amount: PositiveMoney = Field(description="What the member owes less: credited to the member's account")
    new_total: Money = Field(description="What the order comes to after this removal (may be zero)")
    reason: str = Field(min_length=1, max_length=300, description="Why it was not delivered, as the coordinator wrote")
    removed_by: UUID = Field(description="The coordinator who recorded it")

    @model_validator(mode="after")
    def _amounts(self) -> OrderLineUndelivered:
        if self.amount.amount <= 0:
            raise MoneyError("an undelivered line credits a positive amount")
        if self.new_total.currency != self.amount.currency or self.new_total.amount < 0:
            raise MoneyError("new_total is the order's remaining total, in the same currency, never negative")
        if self.unit_price.currency != self.amount.currency:
            raise MoneyError("the unit price and the amount credited are in the same currency")
        return self


class SubscriptionConfirmed(Event):
    """A member subscribed to a contract: the debt is the contract total (R19)."""

    event_type: Literal["orders.subscription.confirmed"] = routing.SUBSCRIPTION_CONFIRMED
    schema_version: Literal[1] = 1
    subscription_id: UUID
    contract_id: UUID
    contract_name: str
    member_id: UUID
    payment_method: PaymentMethod | None = None
    lines: list[OrderLine] = Field(min_length=1, description="One distribution's products and quantities")
    distribution_count: int = Field(gt=0)
    distribution_ids: list[UUID] = []
    total: Money = Field(description="Per-distribution sum x distribution_count")

    @model_validator(mode="after")
    def _total_is_lines_times_distributions(self) -> SubscriptionConfirmed:
        expected = subscription_lines_total(self.lines, self.distribution_count, self.total.currency)
        if expected != self.total:
            raise MoneyError(f"subscription total {self.total} differs from lines x distributions = {expected}")
        return self


class OrderAwaitingPayment(Event):
    """A card order (or an amendment of one) waits for its card payment (R21): nothing is owed yet.

    Tells the payments service what to charge: `amount` for the order (no amendment_id) or for
    the added lines of the amendment. OrderConfirmed / OrderAmended follow once the card payment
    succeeded."""

    event_type: Literal["orders.order.awaiting_payment"] = routing.ORDER_AWAITING_PAYMENT
    schema_version: Literal[1] = 1
    order_id: UUID
    amendment_id: UUID | None = None
    member_id: UUID
    distribution_id: UUID | None = None
    distribution_starts_at: DistributionStartsAt = None
    distribution_place: DistributionPlace = None
    payment_method: PaymentMethod
    lines: list[OrderLine] = Field(min_length=1)
    amount: PositiveMoney

    @model_validator(mode="after")
    def _amount_is_sum_of_lines(self) -> OrderAwaitingPayment:
        expected = lines_total(self.lines, self.amount.currency)
        if expected != self.amount or self.amount.amount <= 0:
            raise MoneyError(f"amount {self.amount} must be the (positive) sum of the lines {expected}")
        return self


class OrderAbandoned(Event):
    """A card order that waited for its payment (orders.order.awaiting_payment) was abandoned
    by its member or a coordinator before it was paid: it ends here, nothing was owed."""

    event_type: Literal["orders.order.abandoned"] = routing.ORDER_ABANDONED
    schema_version: Literal[1] = 1
    order_id: UUID
    member_id: UUID
    distribution_id: UUID | None = None
    abandoned_by: UUID = Field(description="Who abandoned it: the member or a coordinator")


class SubscriptionAmended(Event):
    """Products were added to a subscription (add-only, R6/R19): the member owes `added_total` more,
    = the added lines x `distribution_count` (the subscription's distributions still to come)."""

    event_type: Literal["orders.subscription.amended"] = routing.SUBSCRIPTION_AMENDED
    schema_version: Literal[1] = 1
    subscription_id: UUID
    amendment_id: UUID
    contract_id: UUID
    member_id: UUID
    payment_method: PaymentMethod | None = None
    added_lines: list[OrderLine] = Field(min_length=1, description="Per distribution")
    distribution_count: int = Field(gt=0)
    added_total: PositiveMoney
    new_total: PositiveMoney

    @model_validator(mode="after")
    def _added_total_is_lines_times_distributions(self) -> SubscriptionAmended:
        expected = subscription_lines_total(self.added_lines, self.distribution_count, self.added_total.currency)
        if expected != self.added_total or expected.amount <= 0:
            raise MoneyError(
                f"added total {self.added_total} must be the (positive) added lines x distributions = {expected}"
            )
        check_new_total_includes(self.added_total, self.new_total)
        return self


class CatalogProduct(Part):
    """A product as its catalog offers it: what one unit costs, before the fee."""

    product_id: UUID
    name: str
    unit: ProductUnit = Field(description="What the quantity counts: piece, kg or litre")
    unit_price: PositiveMoney = Field(description="Price of one unit, in minor units of the group's currency")
    fee_rate: FeeRate = Field(description='Fee added to the price, e.g. "0.02" for 2%; "0" for none')


class CatalogRef(Part):
    catalog_id: UUID
    name: str
    kind: CatalogKind


class CatalogCreated(Event):
    """A coordinator created a catalog (products ordered per distribution) or a subscription
    contract (kind `subscription`, R19), with the products it offers from the start. Products
    added to it later are each an orders.product.created."""

    event_type: Literal["orders.catalog.created"] = routing.CATALOG_CREATED
    schema_version: Literal[1] = 1
    catalog_id: UUID
    name: str
    kind: CatalogKind
    products: list[CatalogProduct] = Field(max_length=500, description="In the order the coordinator listed them")


class ProductCreated(Event):
    """A coordinator added a product to an existing catalog (the catalog's first products come
    with orders.catalog.created)."""

    event_type: Literal["orders.product.created"] = routing.PRODUCT_CREATED
    schema_version: Literal[1] = 1
    catalog: CatalogRef
    product: CatalogProduct


class DistributionCreated(Event):
    """A coordinator planned a distribution: when and where members collect their orders, the
    catalogs it delivers, when orders open and close. Orders really close at `orders_close_at`
    or the group's cut-off before `starts_at` (orders.group.settings_changed's
    `order_cutoff_hours`), whichever is first."""

    event_type: Literal["orders.distribution.created"] = routing.DISTRIBUTION_CREATED
    schema_version: Literal[1] = 1
    distribution_id: UUID
    starts_at: UtcDatetime = Field(description="When the distribution starts (UTC)")
    place: str = Field(description="Where members collect their orders")
    catalogs: list[CatalogRef] = Field(min_length=1, description="The catalogs (and contracts) it delivers")
    orders_open_at: UtcDatetime
    orders_close_at: UtcDatetime

    @model_validator(mode="after")
    def _times_in_order(self) -> DistributionCreated:
        if not self.orders_open_at < self.orders_close_at <= self.starts_at:
            raise ValueError("orders open before they close, and close no later than the distribution starts")
        return self


__all__ = [
    "CatalogCreated",
    "CatalogProduct",
    "CatalogRef",
    "DistributionCreated",
    "ProductCreated",
    "OrderAbandoned",
    "MemberUpdated",
    "OrderAwaitingPayment",
    "SubscriptionAmended",
    "OrderAmended",
    "OrderLineUndelivered",
    "SubscriptionConfirmed",
    "GroupSettingsChanged",
    "MemberJoined",
    "MemberLeft",
    "OrderConfirmed",
    "OrderLine",
]
