"""Pure order rules: group payment settings (R1, R9, R18), methods (R8), pricing (B1)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from cagette_contracts import Money, PaymentMethod, line_amount, total
from cagette_runtime.errors import Invalid


@dataclass(frozen=True)
class PaymentSettings:
    payments_enabled: bool
    payment_methods: tuple[PaymentMethod, ...]
    allow_negative_money_pot: bool = False
    cheque_payee: str | None = None
    transfer_iban: str | None = None
    transfer_bic: str | None = None
    card_configured: bool = False

    def validated(self) -> PaymentSettings:
        """These settings, normalised, or Invalid with the reason they cannot be used."""
        methods = tuple(dict.fromkeys(self.payment_methods))
        if not self.payments_enabled:
            return self
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
        if PaymentMethod.CARD in methods and not self.card_configured:
            raise Invalid("card payments are offered only once the group's card payments are configured")
        return PaymentSettings(
            self.payments_enabled, methods, self.allow_negative_money_pot,
            self.cheque_payee, iban, bic, self.card_configured,
        )

    def check_method(self, method: PaymentMethod | None) -> None:
        """R8: with payments on, an order needs one of the offered methods."""
        if not self.payments_enabled:
            return
        if method is None:
            raise Invalid("choose a payment method: with payments on, an order without one is not recorded (R8)")
        if method not in self.payment_methods:
            offered = ", ".join(m.value for m in self.payment_methods)
            raise Invalid(f"this group does not offer {method.value}; it offers {offered}")


@dataclass(frozen=True)
class LineRequest:
    product_name: str
    quantity: Decimal
    unit_price: Money
    product_id: UUID | None = None
    fee_rate: Decimal = Decimal(0)


@dataclass(frozen=True)
class PricedLine:
    request: LineRequest
    line_total: Money


def price(lines: list[LineRequest], currency: str) -> tuple[list[PricedLine], Money]:
    """Lines rounded once each (B1) and their sum, refusing what cannot be an order line."""
    if not lines:
        raise Invalid("an order needs at least one line")
    priced = []
    for number, line in enumerate(lines, start=1):
        if line.quantity <= 0:
            raise Invalid(f"line {number}: quantity must be positive")
        if line.unit_price.currency != currency:
            raise Invalid(f"line {number}: price in {line.unit_price.currency}, the group uses {currency}")
        if line.unit_price.amount <= 0:
            raise Invalid(f"line {number}: unit price must be positive")
        if line.fee_rate < 0:
            raise Invalid(f"line {number}: fee rate cannot be negative")
        priced.append(PricedLine(line, line_amount(line.quantity, line.unit_price, line.fee_rate)))
    return priced, total([line.line_total for line in priced], currency)
