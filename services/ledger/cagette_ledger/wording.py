"""What a statement entry says, in words and in the group's language (French or English).

"Commande pour la distribution du mar. 3 déc., Préau de l'école (Pain x2, Comté 0,375 kg)",
"Chèque n°101 reçu", "Solde d'ouverture", "Correction : ...", "Produit non livré : Comté 0,375 kg (...)".
Dates and numbers are formatted by Babel for the language; distribution dates are shown in the groups' time zone.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.numbers import format_decimal

from cagette_contracts import (
    OrderAmended,
    OrderConfirmed,
    OrderLine,
    OrderLineUndelivered,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
    PaymentReversed,
    SubscriptionAmended,
    SubscriptionConfirmed,
)
from cagette_contracts.common import DEFAULT_TIME_ZONE, time_zone

LANGUAGES = ("fr", "en")

_WORDS: dict[str, dict[str, str]] = {
    "fr": {
        "order": "Commande",
        "order_for": "Commande pour la distribution du {date}, {place}",
        "amendment": "Ajout à la commande",
        "amendment_for": "Ajout à la commande pour la distribution du {date}, {place}",
        "subscription": "Contrat {name} ({count} distributions)",
        "subscription_one": "Contrat {name} (1 distribution)",
        "subscription_amended": "Ajout au contrat ({count} distributions)",
        "opening_balance": "Solde d'ouverture",
        "correction": "Correction : {reason}",
        "received_cheque_number": "Chèque n°{number} reçu",
        "received": "{method} reçu",
        "pending": "{method} annoncé (en attente)",
        "refunded": "Remboursement ({method})",
        "reversal": "Annulation d'un paiement enregistré par erreur",
        "reversed": "Annulation d'un paiement enregistré par erreur ({what}) : {reason}",
        "undelivered": "Produit non livré : {what} ({reason})",
        "cheque": "Chèque",
        "cash": "Paiement en espèces",
        "transfer": "Virement",
        "card": "Paiement par carte",
        "card_terminal": "Paiement par carte (terminal)",
        "on_the_spot": "Paiement sur place",
        "money_pot": "Paiement sur la cagnotte",
    },
    "en": {
        "order": "Order",
        "order_for": "Order for the distribution of {date}, {place}",
        "amendment": "Added to the order",
        "amendment_for": "Added to the order for the distribution of {date}, {place}",
        "subscription": "{name} contract ({count} distributions)",
        "subscription_one": "{name} contract (1 distribution)",
        "subscription_amended": "Added to the contract ({count} distributions)",
        "opening_balance": "Opening balance",
        "correction": "Correction: {reason}",
        "received_cheque_number": "Cheque n°{number} received",
        "received": "{method} received",
        "pending": "{method} announced (pending)",
        "refunded": "Refund ({method})",
        "reversal": "Reversal of a payment recorded by mistake",
        "reversed": "Reversal of a payment recorded by mistake ({what}): {reason}",
        "undelivered": "Not delivered: {what} ({reason})",
        "cheque": "Cheque",
        "cash": "Cash",
        "transfer": "Transfer",
        "card": "Card payment",
        "card_terminal": "Card (terminal)",
        "on_the_spot": "Payment on the spot",
        "money_pot": "Money pot",
    },
}


def _words(language: str) -> dict[str, str]:
    return _WORDS[language if language in _WORDS else "fr"]


def distribution_date(starts_at: datetime, language: str, zone: ZoneInfo) -> str:
    """ "mar. 3 déc." / "Tue 3 Dec", the day in the group's time zone."""
    local = starts_at.astimezone(zone)
    return format_date(local, "EEE d MMM", locale=language if language in LANGUAGES else "fr")


def line_words(line: OrderLine, language: str) -> str:
    """ "Pain x2" for pieces, "Comté 0,375 kg" for weights and volumes."""
    return quantity_words(line.product_name, line.quantity, line.unit, language)


def quantity_words(product_name: str, quantity: Decimal, unit: str | None, language: str) -> str:
    text = format_decimal(Decimal(quantity).normalize(), locale=language if language in LANGUAGES else "fr")
    if unit in ("kg", "litre"):
        return f"{product_name} {text} {'l' if unit == 'litre' else 'kg'}"
    return f"{product_name} x{text}"


def undelivered(event: OrderLineUndelivered, language: str) -> str:
    """ "Produit non livré : Comté 0,375 kg (fromager malade)" / "Not delivered: ..." (R6)."""
    what = quantity_words(event.product_name, event.quantity, event.unit, language)
    return _words(language)["undelivered"].format(what=what, reason=event.reason)


def reversed_payment(event: PaymentReversed, language: str) -> str:
    """ "Annulation d'un paiement enregistré par erreur (Chèque) : mauvais adhérent"."""
    what = method_name(event.method.value, language, card_terminal=event.card_terminal)
    return _words(language)["reversed"].format(what=what, reason=event.reason)


def _lines(lines: list[OrderLine], language: str) -> str:
    return ", ".join(line_words(line, language) for line in lines)


def order(event: OrderConfirmed | OrderAmended, language: str, zone: ZoneInfo) -> str:
    words = _words(language)
    amended = isinstance(event, OrderAmended)
    lines = event.added_lines if isinstance(event, OrderAmended) else event.lines
    if event.distribution_starts_at is not None and event.distribution_place:
        head = words["amendment_for" if amended else "order_for"].format(
            date=distribution_date(event.distribution_starts_at, language, zone), place=event.distribution_place
        )
    else:
        head = words["amendment" if amended else "order"]
    return f"{head} ({_lines(lines, language)})"


def subscription(event: SubscriptionConfirmed | SubscriptionAmended, language: str) -> str:
    words = _words(language)
    if isinstance(event, SubscriptionAmended):
        return words["subscription_amended"].format(count=event.distribution_count)
    key = "subscription_one" if event.distribution_count == 1 else "subscription"
    return words[key].format(name=event.contract_name, count=event.distribution_count)


def method_name(method: str, language: str, *, card_terminal: bool = False) -> str:
    return _words(language)["card_terminal" if card_terminal else method]


def received(event: PaymentReceived, language: str) -> str:
    """ "Chèque n°101 reçu" when the label is the cheque's number, else the label after it."""
    words = _words(language)
    label = (event.label or "").strip()
    if event.method == PaymentMethod.CHEQUE and label.isascii() and label.isdigit():
        text = words["received_cheque_number"].format(number=label)
    else:
        text = words["received"].format(
            method=method_name(event.method.value, language, card_terminal=event.card_terminal)
        )
        if label:
            text = f"{text} ({label})"
    return f"{text} {event.reference}" if event.reference else text


def pending(method: str, reference: str | None, language: str) -> str:
    text = _words(language)["pending"].format(method=method_name(method, language))
    return f"{text} {reference}" if reference else text


def refunded(event: PaymentRefunded, language: str) -> str:
    words = _words(language)
    if event.reverses_payment_id is not None:
        return words["reversal"]
    text = words["refunded"].format(method=method_name(event.method.value, language, card_terminal=event.card_terminal))
    if not event.reason:
        return text
    return f"{text} : {event.reason}" if language == "fr" else f"{text}: {event.reason}"


def opening_balance(memo: str, language: str) -> str:
    head = _words(language)["opening_balance"]
    return f"{head} ({memo})" if memo else head


def correction(reason: str, language: str) -> str:
    return _words(language)["correction"].format(reason=reason)


def memo_for(
    event: OrderConfirmed
    | OrderAmended
    | SubscriptionConfirmed
    | SubscriptionAmended
    | PaymentReceived
    | PaymentRefunded
    | OrderLineUndelivered
    | PaymentReversed
    | object,
    language: str,
    time_zone_name: str = DEFAULT_TIME_ZONE,
) -> str | None:
    """The statement words for what `event` posts (dates in the group's time zone), or None to
    keep the draft's own memo."""
    match event:
        case OrderConfirmed() | OrderAmended():
            return order(event, language, time_zone(time_zone_name))
        case SubscriptionConfirmed() | SubscriptionAmended():
            return subscription(event, language)
        case PaymentReceived():
            return received(event, language)
        case PaymentRefunded():
            return refunded(event, language)
        case OrderLineUndelivered():
            return undelivered(event, language)
        case PaymentReversed():
            return reversed_payment(event, language)
    return None
