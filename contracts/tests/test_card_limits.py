"""The card provider's charge limits, shared by orders and payments."""

from __future__ import annotations

from cagette_contracts import Money
from cagette_contracts.card_limits import CARD_MAXIMUM, card_amount_refusal


def test_the_minimum_is_named_and_the_limits_are_inclusive() -> None:
    refusal = card_amount_refusal(Money(amount=49, currency="EUR"))
    assert refusal is not None and "at least 0.50 EUR" in refusal
    assert card_amount_refusal(Money(amount=50, currency="EUR")) is None
    assert card_amount_refusal(Money(amount=29, currency="GBP")) is not None
    assert card_amount_refusal(Money(amount=CARD_MAXIMUM, currency="EUR")) is None
    assert card_amount_refusal(Money(amount=CARD_MAXIMUM + 1, currency="EUR")) is not None
    assert card_amount_refusal(Money(amount=1, currency="XPF")) is None  # no known minimum: the maximum only
