"""How money moves, as the payments service records it.

The shared contract's `PaymentMethod` has no "card terminal"; the takings export needs to tell
it apart from online card payments, so payments records its own `Method` and maps it to the
contract's method when publishing (a card-terminal payment is published as `card`, flagged
with `card_terminal=True`).
"""

from __future__ import annotations

from enum import StrEnum

from cagette_contracts import PaymentMethod


class Method(StrEnum):
    CHEQUE = "cheque"
    CASH = "cash"
    TRANSFER = "transfer"
    CARD_TERMINAL = "card_terminal"  # a card paid on a terminal at the distribution
    CARD = "card"  # online card payment through the provider (its own issue)
    MONEY_POT = "money_pot"
    ON_THE_SPOT = "on_the_spot"  # declared only: the actual method is recorded at validation

    @property
    def contract_method(self) -> PaymentMethod:
        return PaymentMethod.CARD if self is Method.CARD_TERMINAL else PaymentMethod(self.value)

    @classmethod
    def from_contract(cls, method: PaymentMethod) -> Method:
        return cls(method.value)


# Methods an order declares a pending payment for (R10, R11, R17).
DECLARED_METHODS = frozenset({Method.CHEQUE, Method.TRANSFER, Method.CASH, Method.ON_THE_SPOT})
# Declared methods that get an RF reference to write on the cheque / in the transfer label.
REFERENCED_METHODS = frozenset({Method.CHEQUE, Method.TRANSFER})
# What a coordinator can record by hand as money received or given back (R7, R22). Online card
# payments are confirmed by the provider only; the money pot is not a payment.
MANUAL_METHODS = frozenset({Method.CHEQUE, Method.CASH, Method.TRANSFER, Method.CARD_TERMINAL})
# What an "on the spot" payment may turn out to be when confirmed (R17).
ON_THE_SPOT_ACTUAL = frozenset({Method.CASH, Method.CHEQUE, Method.CARD_TERMINAL})
# Order totals already covered without a payment from the member at the distribution.
COVERED_BY_MONEY_POT = Method.MONEY_POT
