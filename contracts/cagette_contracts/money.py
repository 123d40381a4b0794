"""Money: integer minor units plus an ISO 4217 currency (SPEC B1).

Amounts are never floats. Arithmetic refuses to mix currencies. Values are bounded so a sum of
many amounts still fits a PostgreSQL BIGINT.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from babel.numbers import format_currency, get_currency_precision, list_currencies
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

# 10^13 minor units (100 billion euros): far beyond any food order, far below 2^63 for sums.
MAX_MINOR_UNITS = 10**13

_ISO_4217 = frozenset(code for code in list_currencies() if len(code) == 3 and code.isalpha() and code.isupper())


class MoneyError(ValueError):
    """A Money value or operation that would be wrong."""


class CurrencyMismatch(MoneyError):
    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"cannot combine amounts in {left} and {right}")


def _strict_minor_units(value: Any) -> int:
    # bool is an int subclass and float/Decimal/str could hide fractions of a cent.
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(
            f"amount must be an integer number of minor units (cents), got {type(value).__name__} {value!r}"
        )
    if not -MAX_MINOR_UNITS <= value <= MAX_MINOR_UNITS:
        raise MoneyError(f"amount {value} is out of range (at most {MAX_MINOR_UNITS} minor units either way)")
    return value


MinorUnits = Annotated[
    int,
    BeforeValidator(_strict_minor_units),
    WithJsonSchema({"type": "integer", "minimum": -MAX_MINOR_UNITS, "maximum": MAX_MINOR_UNITS}),
]


def validate_currency(code: Any) -> str:
    if not isinstance(code, str) or code not in _ISO_4217 or len(code) != 3 or not code.isupper():
        raise MoneyError(f"currency must be an ISO 4217 code such as 'EUR', got {code!r}")
    return code


CurrencyCode = Annotated[
    str,
    BeforeValidator(validate_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "enum": sorted(_ISO_4217)}),
]


def minor_unit_exponent(currency: str) -> int:
    """Number of decimals of the currency's minor unit (2 for EUR, 0 for XPF)."""
    return get_currency_precision(validate_currency(currency))


class Money(BaseModel):
    """An amount of money: `amount` minor units (cents for EUR) of `currency`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: MinorUnits
    currency: CurrencyCode

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=0, currency=currency)

    @classmethod
    def of(cls, amount: int, currency: str) -> Money:
        return cls(amount=amount, currency=currency)

    def _same_currency(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise MoneyError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def __neg__(self) -> Money:
        return Money(amount=-self.amount, currency=self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    @property
    def is_negative(self) -> bool:
        return self.amount < 0

    def to_decimal(self) -> Decimal:
        """The amount in major units, exact (for CSV and display, never for arithmetic)."""
        return Decimal(self.amount).scaleb(-minor_unit_exponent(self.currency))

    def decimal_text(self) -> str:
        """Major units as text with the currency's decimals: '-12.50' for -1250 EUR cents."""
        exponent = minor_unit_exponent(self.currency)
        return f"{self.to_decimal():.{exponent}f}"

    def format(self, locale: str = "en") -> str:
        """Localised display: '12,50 €' in French, '€12.50' in English."""
        return format_currency(self.to_decimal(), self.currency, locale=locale)

    def __str__(self) -> str:
        return f"{self.decimal_text()} {self.currency}"


# A Money the contract states is positive (an order total, a payment): the schema says so too
# (the event's own validator refuses it with its reason).
PositiveMoney = Annotated[
    Money,
    Field(
        json_schema_extra={
            "properties": {"amount": {"exclusiveMinimum": 0}},
            "description": "An amount greater than zero",
        }
    ),
]


def total(amounts: list[Money], currency: str) -> Money:
    """Sum of amounts, all of `currency` (an empty list sums to zero)."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result


def line_amount(quantity: Decimal, unit_price: Money, fee_rate: Decimal = Decimal(0)) -> Money:
    """The one rounding rule (SPEC B1): quantity x unit price x (1 + fee rate), half-up to the
    minor unit, once per order line. Every service uses this, so every total agrees."""
    if not isinstance(quantity, Decimal) or not isinstance(fee_rate, Decimal):
        raise MoneyError("quantity and fee rate must be Decimal, never float")
    exact = quantity * Decimal(unit_price.amount) * (Decimal(1) + fee_rate)
    return Money(amount=int(exact.to_integral_value(rounding=ROUND_HALF_UP)), currency=unit_price.currency)
