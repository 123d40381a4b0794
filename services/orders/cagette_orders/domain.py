"""Pure order rules, no I/O: group payment settings (R1, R9, R13, R17, R18), catalogs and units,
distributions and their cut-off, baskets priced once per line (B1), add-only changes (R6),
how each payment method settles an order (R8, R12-R14, R21), products a coordinator takes off an
order because they were not delivered (R6) and subscription totals (R19).

Everything here raises `Invalid` (422) or `Conflict` (409) with a reason a member can act on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from uuid import UUID, uuid5

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from cagette_contracts import CatalogKind as CatalogKind  # re-exported: the API's catalog kinds
from cagette_contracts import (
    Money,
    OrderLine,
    PaymentMethod,
    ProductUnit,
    Role,
    line_amount,
    total,
)
from cagette_contracts.card_limits import card_amount_refusal
from cagette_runtime.errors import Conflict, Invalid

MAX_CUTOFF_HOURS = 24 * 30


# ------------------------------------------------------------------ group settings


@dataclass(frozen=True)
class PaymentSettings:
    """A group's payment settings.

    `card_configured` is the group's card readiness as announced by the payments service
    (payments.card_settings.changed: the platform's provider keys are set and the group's card
    settings are enabled). Card may be newly offered only while it is on. When it goes off, card
    is removed from the methods (`without_card`), except when card is the only method with payments
    on: the methods are then kept and card orders are refused (`settlement`) until it is back.
    """

    payments_enabled: bool
    payment_methods: tuple[PaymentMethod, ...]
    allow_negative_money_pot: bool = False
    cheque_payee: str | None = None
    transfer_iban: str | None = None
    transfer_bic: str | None = None
    card_configured: bool = False
    order_cutoff_hours: int = 0

    def validated(self, previous: PaymentSettings | None = None) -> PaymentSettings:
        """These settings, normalised, or Invalid with the reason they cannot be used.

        `previous`: the group's current settings. Card offered while card payments are not ready
        is accepted only if the methods stay exactly as they were (the kept-card case above), so a
        coordinator can still change other settings."""
        methods = tuple(dict.fromkeys(self.payment_methods))
        if not 0 <= self.order_cutoff_hours <= MAX_CUTOFF_HOURS:
            raise Invalid(f"the order cut-off must be between 0 and {MAX_CUTOFF_HOURS} hours before a distribution")
        if not self.payments_enabled:
            return PaymentSettings(
                False,
                methods,
                self.allow_negative_money_pot,
                self.cheque_payee,
                self.transfer_iban,
                self.transfer_bic,
                self.card_configured,
                self.order_cutoff_hours,
            )
        if not methods:
            raise Invalid("with payments on, offer at least one payment method")
        if PaymentMethod.MONEY_POT in methods and len(methods) > 1:
            raise Invalid("the money pot cannot be combined with another payment method (R18)")
        if PaymentMethod.CHEQUE in methods and not (self.cheque_payee or "").strip():
            raise Invalid("cheques need a payee to write on them")
        iban, bic = self.transfer_iban, self.transfer_bic
        if PaymentMethod.TRANSFER in methods:
            if not iban:
                raise Invalid("bank transfers need the group's IBAN")
            try:
                iban = IBAN(iban).compact
                bic = BIC(bic).compact if bic else None
            except SchwiftyException as exc:
                raise Invalid(f"invalid bank details: {exc}") from None
        kept = previous is not None and tuple(dict.fromkeys(previous.payment_methods)) == methods
        if PaymentMethod.CARD in methods and not self.card_configured and not kept:
            raise Invalid(
                "card payments are offered only once the group's card payments are configured: a coordinator "
                "enables them on the payments service (PUT /groups/{g}/card-settings), which tells this service"
            )
        return PaymentSettings(
            self.payments_enabled,
            methods,
            self.allow_negative_money_pot,
            (self.cheque_payee or "").strip() or None,
            iban,
            bic,
            self.card_configured,
            self.order_cutoff_hours,
        )

    def without_card(self) -> PaymentSettings:
        """These settings once card payments stopped being ready: card removed from the methods,
        unless that leaves no method with payments on (then kept; card orders are refused)."""
        remaining = tuple(m for m in self.payment_methods if m is not PaymentMethod.CARD)
        methods = remaining if remaining or not self.payments_enabled else self.payment_methods
        return PaymentSettings(
            self.payments_enabled,
            methods,
            self.allow_negative_money_pot,
            self.cheque_payee,
            self.transfer_iban,
            self.transfer_bic,
            False,
            self.order_cutoff_hours,
        )

    def check_method(self, method: PaymentMethod | None) -> None:
        """R8: with payments on, an order needs one of the offered methods."""
        if self.payments_enabled:
            self.offered_method(method)

    def offered_method(self, method: PaymentMethod | None) -> PaymentMethod:
        """`method` if the group offers it, or Invalid (R8: with payments on, no order without one)."""
        if method is None:
            raise Invalid("choose a payment method: with payments on, an order without one is not recorded (R8)")
        if method not in self.payment_methods:
            offered = ", ".join(m.value for m in self.payment_methods)
            raise Invalid(f"this group does not offer {method.value}; it offers {offered}")
        return method


def check_currency_change(old: str, new: str, *, has_priced_things: bool) -> None:
    if old != new and has_priced_things:
        raise Conflict(f"the group's currency cannot change from {old} to {new} once it has products or orders")


# ------------------------------------------------------------------ catalogs


# The closed sets the catalog events publish too (cagette_contracts.common): one definition.
Unit = ProductUnit
WEIGHED_UNITS = frozenset({Unit.KG, Unit.LITRE})


MAX_FEE_RATE = Decimal("0.5")


def check_product(name: str, unit_price: Money, fee_rate: Decimal) -> None:
    if not name.strip():
        raise Invalid("a product needs a name")
    if unit_price.amount <= 0:
        raise Invalid(f"{name}: the unit price must be positive")
    if not Decimal(0) <= fee_rate <= MAX_FEE_RATE:
        raise Invalid(f"{name}: the fee rate must be between 0 and {MAX_FEE_RATE}")


@dataclass(frozen=True)
class Product:
    product_id: UUID
    catalog_id: UUID
    name: str
    unit: Unit
    unit_price: Money
    fee_rate: Decimal = Decimal(0)


def check_quantity(product: Product, quantity: Decimal) -> None:
    """Quantities are positive; only weighed products (kg, litre) take fractions."""
    if quantity <= 0:
        raise Invalid(f"{product.name}: the quantity must be positive, got {quantity}")
    if product.unit not in WEIGHED_UNITS and quantity != quantity.to_integral_value():
        raise Invalid(f"{product.name} is sold by the piece: the quantity must be a whole number, got {quantity}")


# ------------------------------------------------------------------ distributions


@dataclass(frozen=True)
class Distribution:
    distribution_id: UUID
    starts_at: datetime
    orders_open_at: datetime
    orders_close_at: datetime
    catalog_ids: frozenset[UUID] = frozenset()

    def closes_at(self, cutoff_hours: int) -> datetime:
        """Orders close at the distribution's closing time or the group's cut-off, whichever is first."""
        return min(self.orders_close_at, self.starts_at - timedelta(hours=cutoff_hours))

    def check_open(self, now: datetime, cutoff_hours: int) -> None:
        if now < self.orders_open_at:
            raise Conflict(f"orders for this distribution open at {self.orders_open_at.isoformat()}")
        closes = self.closes_at(cutoff_hours)
        if now >= closes:
            raise Conflict(f"orders for this distribution closed at {closes.isoformat()} (cut-off)")

    def is_open(self, now: datetime, cutoff_hours: int) -> bool:
        return self.orders_open_at <= now < self.closes_at(cutoff_hours)


def check_distribution_times(starts_at: datetime, orders_open_at: datetime, orders_close_at: datetime) -> None:
    if not orders_open_at < orders_close_at:
        raise Invalid("orders must open before they close")
    if orders_close_at > starts_at:
        raise Invalid("orders must close no later than the distribution starts")


# ------------------------------------------------------------------ baskets and pricing


@dataclass(frozen=True)
class LineRequest:
    product_id: UUID
    quantity: Decimal


@dataclass(frozen=True)
class PricedLine:
    product: Product
    quantity: Decimal
    line_total: Money


def plain(quantity: Decimal) -> Decimal:
    """The quantity without trailing zeros or exponent: 2.000 -> 2, 0.500 -> 0.5."""
    if quantity == quantity.to_integral_value():
        return quantity.quantize(Decimal(1))
    return quantity.normalize()


def price_line(product: Product, quantity: Decimal) -> PricedLine:
    """One line rounded once (B1); a line that rounds to nothing is refused."""
    check_quantity(product, quantity)
    quantity = plain(quantity)
    amount = line_amount(quantity, product.unit_price, product.fee_rate)
    if amount.amount <= 0:
        raise Invalid(f"{product.name}: {quantity} {product.unit.value} rounds to nothing")
    return PricedLine(product, quantity, amount)


def quantities(lines: Iterable[LineRequest]) -> dict[UUID, Decimal]:
    """Product -> quantity of a requested basket, refusing a product listed twice."""
    result: dict[UUID, Decimal] = {}
    for line in lines:
        if line.product_id in result:
            raise Invalid(f"product {line.product_id} is listed twice; give its total quantity once")
        result[line.product_id] = line.quantity
    return result


def price_basket(
    wanted: Mapping[UUID, Decimal],
    products: Mapping[UUID, Product],
    allowed_catalogs: frozenset[UUID],
    currency: str,
) -> tuple[list[PricedLine], Money]:
    """The priced lines of `wanted` and their sum. Every product must exist in the group and be
    sold through one of `allowed_catalogs` (the catalogs delivered at the distribution)."""
    if not wanted:
        raise Invalid("a basket needs at least one product")
    priced = []
    for product_id, quantity in wanted.items():
        product = products.get(product_id)
        if product is None:
            raise Invalid(f"unknown product {product_id}")
        if product.catalog_id not in allowed_catalogs:
            raise Invalid(f"{product.name} is not sold for this distribution")
        if product.unit_price.currency != currency:
            raise Invalid(f"{product.name} is priced in {product.unit_price.currency}, the group uses {currency}")
        priced.append(price_line(product, quantity))
    return priced, total([line.line_total for line in priced], currency)


def basket_of(lines: Iterable[OrderLine]) -> tuple[dict[UUID, Decimal], dict[UUID, str]]:
    """Product -> quantity and product -> name of recorded lines (R6 compares a wanted basket
    with these). A line recorded before catalogs existed has no product and is left out."""
    held: dict[UUID, Decimal] = {}
    names: dict[UUID, str] = {}
    for line in lines:
        if line.product_id is not None:
            held[line.product_id] = held.get(line.product_id, Decimal(0)) + line.quantity
            names[line.product_id] = line.product_name
    return held, names


def add_only_diff(
    current: Mapping[UUID, Decimal], wanted: Mapping[UUID, Decimal], names: Mapping[UUID, str]
) -> dict[UUID, Decimal]:
    """R6: with payments on a basket may only grow. The quantities to add, or Conflict saying
    what would be removed or lowered, or Invalid if nothing is added."""
    for product_id, had in current.items():
        now = wanted.get(product_id, Decimal(0))
        name = names.get(product_id, str(product_id))
        if now < had:
            what = "remove" if now == 0 else f"lower from {had.normalize()} to {now.normalize()}"
            raise Conflict(
                f"with payments on, a placed order can only grow (R6): you cannot {what} {name}; add products instead"
            )
    added = {p: q - current.get(p, Decimal(0)) for p, q in wanted.items() if q > current.get(p, Decimal(0))}
    if not added:
        raise Invalid("nothing to add: the basket is unchanged")
    return added


# ------------------------------------------------------------------ undelivered products (R6)


MAX_UNDELIVERED_REASON = 300


@dataclass(frozen=True)
class Undelivered:
    """What taking `quantity` of a line off an order does: `quantity_left` of the line remains,
    and the member owes `amount` less."""

    quantity: Decimal
    quantity_left: Decimal
    amount: Money


def check_reason(reason: str) -> str:
    """A reason a coordinator wrote: trimmed, not empty (its characters are checked by the API)."""
    reason = reason.strip()
    if not reason:
        raise Invalid("say why the product was not delivered: the member reads it")
    if len(reason) > MAX_UNDELIVERED_REASON:
        raise Invalid(f"the reason is at most {MAX_UNDELIVERED_REASON} characters")
    return reason


def undelivered(line: OrderLine, already_removed: Decimal, unit: Unit | None, quantity: Decimal | None) -> Undelivered:
    """R6: a coordinator takes all (`quantity` None) or part of what is left of a line off an
    order, because the producer could not deliver it. The member owes the line priced at what
    was left minus the line priced at what remains: removing a line in several steps credits
    exactly its total, whatever the rounding (B1). Nothing left: Conflict; more than is left,
    a fraction of a piece, or an amount that rounds to nothing: Invalid."""
    product_name, ordered, unit_price, fee_rate = line.product_name, line.quantity, line.unit_price, line.fee_rate
    left = ordered - already_removed
    if left <= 0:
        raise Conflict(f"{product_name} was already taken off this order entirely")
    wanted = left if quantity is None else quantity
    if wanted <= 0:
        raise Invalid(f"{product_name}: the quantity not delivered must be positive, got {wanted}")
    if unit not in WEIGHED_UNITS and wanted != wanted.to_integral_value():
        raise Invalid(f"{product_name} is sold by the piece: the quantity not delivered must be a whole number")
    if wanted > left:
        raise Invalid(
            f"{product_name}: only {plain(left)} left on this order (ordered {plain(ordered)}); "
            f"{plain(wanted)} cannot be taken off"
        )
    remaining = left - wanted
    amount = line_amount(left, unit_price, fee_rate) - line_amount(remaining, unit_price, fee_rate)
    if amount.amount <= 0:
        raise Invalid(f"{product_name}: {plain(wanted)} rounds to nothing; take off more of it")
    return Undelivered(plain(wanted), plain(remaining), amount)


def check_removable(status: OrderStatus, amendment_status: OrderStatus | None) -> None:
    """Only what the member holds can be taken off: a confirmed order's lines, and those of its
    confirmed additions (an unpaid card basket is abandoned instead)."""
    if status is not OrderStatus.CONFIRMED:
        raise Conflict(f"this order is {status.value}: only a confirmed order's products can be taken off it")
    if amendment_status is not None and amendment_status is not OrderStatus.CONFIRMED:
        raise Conflict(f"this line belongs to an addition that is {amendment_status.value}, not confirmed")


# ------------------------------------------------------------------ settling an order by method


class Settlement(StrEnum):
    CONFIRM = "confirm"  # cheque, cash, transfer, on the spot, money pot with negatives allowed
    HOLD = "hold"  # money pot, negatives not allowed: the ledger must hold the amount first (R13, B2)
    AWAIT_CARD = "await_card"  # card: confirmed when the card payment succeeds (R21)


@dataclass(frozen=True)
class Payment:
    """How an order is paid with payments on: its method (always one, R8) and how that settles."""

    method: PaymentMethod
    settlement: Settlement

    @property
    def needs_hold(self) -> bool:
        return self.settlement is Settlement.HOLD

    @property
    def initial_status(self) -> OrderStatus:
        return OrderStatus.AWAITING_PAYMENT if self.settlement is Settlement.AWAIT_CARD else OrderStatus.CONFIRMED


def settlement(settings: PaymentSettings, method: PaymentMethod | None) -> Payment | None:
    """How an order paid by `method` settles; None with payments off (R1: no money events at all)."""
    if not settings.payments_enabled:
        return None
    return _payment(settings, settings.offered_method(method))


def _payment(settings: PaymentSettings, method: PaymentMethod) -> Payment:
    if method is PaymentMethod.CARD:
        if not settings.card_configured:
            raise Conflict(
                "card payments are not available in this group right now: its card set-up on the payments service "
                "is not ready (a coordinator must enable it again); choose another payment method"
            )
        return Payment(method, Settlement.AWAIT_CARD)
    if method is PaymentMethod.MONEY_POT and not settings.allow_negative_money_pot:
        return Payment(method, Settlement.HOLD)
    return Payment(method, Settlement.CONFIRM)


def check_card_limits(payment: Payment | None, amount: Money) -> None:
    """A card order or addition the card provider would refuse (below its minimum for the
    currency, above its maximum) is refused now, naming the limit (shared rule, contracts)."""
    if payment is None or payment.settlement is not Settlement.AWAIT_CARD:
        return
    refusal = card_amount_refusal(amount)
    if refusal is not None:
        raise Invalid(refusal)


def subscription_settlement(settings: PaymentSettings, method: PaymentMethod | None) -> Settlement | None:
    """How a subscription settles; None with payments off. Without a method it is confirmed and
    paid by cheques a coordinator enters (R7); card is not offered for subscriptions yet."""
    if not settings.payments_enabled:
        return None
    if method is None:
        return Settlement.CONFIRM
    how = _payment(settings, settings.offered_method(method)).settlement
    if how is Settlement.AWAIT_CARD:
        raise Invalid(
            "subscriptions cannot be paid by card yet: choose another method "
            "or none (cheques entered by a coordinator, R7)"
        )
    return how


class OrderStatus(StrEnum):
    CONFIRMED = "confirmed"
    AWAITING_PAYMENT = "awaiting_payment"
    PAYMENT_FAILED = "payment_failed"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"  # payments off only: a member dropped the order before the cut-off


# An order in one of these statuses, and not flagged, takes its member's basket for the
# distribution: one such order per basket (the database's partial unique index says the same).
ACTIVE_STATUSES = (OrderStatus.CONFIRMED, OrderStatus.AWAITING_PAYMENT, OrderStatus.PAYMENT_FAILED)


def check_no_active_order(existing: UUID | None) -> None:
    """One active order per member and distribution: a second one changes the first instead."""
    if existing is not None:
        raise Conflict(
            f"you already have an order for this distribution ({existing}): change it instead", order_id=existing
        )


def check_unlocked(locked: bool) -> None:
    """R20: once validated at the distribution, a basket is locked."""
    if locked:
        raise Conflict("this basket was validated at the distribution and is locked (R20)")


def demotes_coordinator(role_before: Role, role_after: Role) -> bool:
    return role_before is Role.COORDINATOR and role_after is not Role.COORDINATOR


def check_keeps_coordinator(role_before: Role, role_after: Role, other_coordinators: int) -> None:
    """A group keeps at least one coordinator: the last one cannot lose the role."""
    if demotes_coordinator(role_before, role_after) and other_coordinators == 0:
        raise Conflict("a group keeps at least one coordinator")


LATE_PAYMENT_FLAG = "card payment succeeded after the basket was abandoned: honoured, check with the member"


@dataclass(frozen=True)
class CardOutcome:
    status: OrderStatus
    confirm: bool  # publish the confirmation (OrderConfirmed / OrderAmended)
    flag: str | None = None


def on_card_succeeded(status: OrderStatus) -> CardOutcome:
    """A card payment succeeded for an order or amendment in `status` (R21, B6)."""
    if status in (OrderStatus.AWAITING_PAYMENT, OrderStatus.PAYMENT_FAILED):
        return CardOutcome(OrderStatus.CONFIRMED, True)
    if status is OrderStatus.ABANDONED:
        # The money was taken: honour it, and flag it for the coordinator.
        return CardOutcome(OrderStatus.CONFIRMED, True, LATE_PAYMENT_FLAG)
    raise Conflict(f"a card payment succeeded for something already {status.value}: check for a double payment")


def on_card_failed(status: OrderStatus) -> OrderStatus:
    """A failure leaves the basket for the member to retry or abandon; it never undoes a success."""
    if status is OrderStatus.AWAITING_PAYMENT:
        return OrderStatus.PAYMENT_FAILED
    return status


def on_withdraw(status: OrderStatus, payments_enabled: bool) -> OrderStatus:
    """What DELETE does to an order: payments off -> cancelled; an unpaid card basket -> abandoned;
    a confirmed order with payments on cannot be withdrawn (R6)."""
    if status in (OrderStatus.AWAITING_PAYMENT, OrderStatus.PAYMENT_FAILED):
        return OrderStatus.ABANDONED
    if status is not OrderStatus.CONFIRMED:
        raise Conflict(f"this order is already {status.value}")
    if payments_enabled:
        raise Conflict("with payments on, a placed order cannot be removed (R6)")
    return OrderStatus.CANCELLED


def check_changeable(status: OrderStatus, pending_amendment: bool) -> None:
    if status in (OrderStatus.AWAITING_PAYMENT, OrderStatus.PAYMENT_FAILED):
        raise Conflict("this order waits for its card payment: pay or abandon it before changing it")
    if status is not OrderStatus.CONFIRMED:
        raise Conflict(f"this order is {status.value} and cannot change")
    if pending_amendment:
        raise Conflict("an earlier addition to this order waits for its card payment")


def check_same_money_mode(order_has_money: bool, payments_enabled: bool) -> None:
    """An order keeps the money tracking it was placed with: once the group switches payments on
    or off, its earlier orders can no longer change (their debts are, or are not, in the ledger)."""
    if order_has_money and not payments_enabled:
        raise Conflict(
            "this order was placed with payments on and the group has turned them off since: ask a coordinator"
        )
    if payments_enabled and not order_has_money:
        raise Conflict(
            "this order was placed with payments off and the group has turned them on since: ask a coordinator"
        )


def check_card_amount(paid: Money, owed: Money) -> None:
    if paid != owed:
        raise Invalid(f"card payment of {paid} does not match the {owed} owed")


# ------------------------------------------------------------------ subscriptions (R19)


def subscription_total(lines: Iterable[PricedLine], distribution_count: int, currency: str) -> Money:
    """The contract total: the per-distribution sum x the number of distributions (R19)."""
    if distribution_count <= 0:
        raise Invalid("this contract has no distribution left to subscribe to")
    per_distribution = total([line.line_total for line in lines], currency)
    return Money(amount=per_distribution.amount * distribution_count, currency=currency)


# ------------------------------------------------------------------ identities of an order attempt (R13, B2)

# The ids of what a member asks for are derived from what the attempt is, never drawn at random:
# a client that retries (after a 503, a timeout, a lost answer; with or without an
# Idempotency-Key, whose retries repeat the same body) asks again for the same order and the
# same money-pot hold, so the ledger holds once and a hold granted to an attempt that died is
# the one the retry gets (docs/architecture.md, "Money-pot holds").
ATTEMPTS = UUID("6f3a1c52-2d0e-5b7e-9a41-0c8f3e2b7d19")


def _derived(*parts: object) -> UUID:
    return uuid5(ATTEMPTS, json.dumps([str(part) for part in parts]))


def order_id_for(group_id: UUID, member_id: UUID, distribution_id: UUID, earlier_orders: int) -> UUID:
    """A new order's id: its member's basket at a distribution, counting the orders they had
    there before (abandoned or cancelled: an active one refuses a second), so a new order after
    an ended one is a new id and a retry of the same one is the same id."""
    return _derived("order", group_id, member_id, distribution_id, earlier_orders)


def subscription_id_for(group_id: UUID, member_id: UUID, contract_id: UUID) -> UUID:
    """A subscription's id: a member subscribes once to a contract."""
    return _derived("subscription", group_id, member_id, contract_id)


def hold_id_for(
    group_id: UUID, member_id: UUID, subject_id: UUID, step: str, amount: Money, lines: Iterable[OrderLine]
) -> UUID:
    """The money-pot hold attempt of one order attempt: what it is for (the order or subscription, and `step`:
    the order itself, or its n-th addition) and exactly what is asked (amount and lines). The
    same attempt retried is the same hold; a different basket is a different hold (the earlier
    one, never committed, is given back)."""
    basket = sorted((str(line.product_id), str(line.quantity), line.unit_price.amount) for line in lines)
    return _derived("hold", group_id, member_id, subject_id, step, amount.amount, amount.currency, basket)


def ask_hold_id(attempt_id: UUID, ended_asks: int) -> UUID:
    """The hold an attempt asks for now: its own id (hold_id_for) until an ask of it ended
    without its order (refused, given back, expired); then the next one. A retry while an ask
    is open reuses it; a retry after a refusal (the member topped up) is a new decision."""
    return attempt_id if ended_asks == 0 else _derived("ask", attempt_id, ended_asks)


class HoldState(StrEnum):
    """A money-pot hold orders asked the ledger for (table hold_requests): asked until the order
    that needs it is recorded (committed), the ledger refused it, or orders gave it back
    (released: its attempt died; expired: its lifetime ended before it could be given back)."""

    ASKED = "asked"
    REFUSED = "refused"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"
