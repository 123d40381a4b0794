"""What a card payment may charge, shared by orders (refuses a card order or addition outside
the limits, at order time) and payments (never asks the provider for it).

Stripe refuses a charge below a minimum per currency (its "minimum and maximum charge amounts";
the minimum covers its fixed fee) and above 99,999,999 minor units. A currency we have no minimum
for is limited by the maximum only."""

from __future__ import annotations

from .money import Money

# Minimum charge per currency, in minor units (Stripe's published minimums).
CARD_MINIMUMS: dict[str, int] = {
    "EUR": 50,
    "USD": 50,
    "CHF": 50,
    "GBP": 30,
    "CAD": 50,
    "AUD": 50,
    "NZD": 50,
    "SGD": 50,
    "DKK": 250,
    "NOK": 300,
    "SEK": 300,
    "PLN": 200,
    "CZK": 1500,
    "RON": 200,
    "BGN": 100,
    "HUF": 17500,
}
CARD_MAXIMUM = 99_999_999  # minor units, every currency


def card_amount_refusal(amount: Money) -> str | None:
    """Why the provider would refuse to charge `amount` by card, in words naming the limit; None
    when it can be charged."""
    minimum = CARD_MINIMUMS.get(amount.currency)
    if minimum is not None and amount.amount < minimum:
        limit = Money(amount=minimum, currency=amount.currency)
        return (
            f"a card payment must be at least {limit} (the card provider's minimum), this one is {amount}: "
            "add to the order or choose another payment method"
        )
    if amount.amount > CARD_MAXIMUM:
        limit = Money(amount=CARD_MAXIMUM, currency=amount.currency)
        return f"a card payment can be at most {limit}, this one is {amount}: choose another payment method"
    return None


__all__ = ["CARD_MAXIMUM", "CARD_MINIMUMS", "card_amount_refusal"]
