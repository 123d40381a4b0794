"""Pure rules of accounts and sign-in: what a valid e-mail and password are, when a link is
still good, when attempts are too many, what a machine client's scope grants; amounts as
people type them in the pages' forms."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from cagette_contracts import Role
from cagette_contracts.money import minor_unit_exponent
from cagette_runtime.errors import Invalid

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
MAX_EMAIL_LENGTH = 254
INVITATION, PASSWORD_RESET = "invitation", "password_reset"
# A quantity typed in an order form: ASCII digits only (\d would take any script's digits), a
# decimal comma or point with up to 3 decimals (as orders stores them) for weighed products only.
_QUANTITY = re.compile(r"[0-9]{1,5}(?:[.,][0-9]{1,3})?")
_WHOLE = re.compile(r"[0-9]{1,5}")


def new_secret() -> str:
    """A random URL-safe secret (256 bits): session ids, link tokens, CSRF tokens, client secrets."""
    return secrets.token_urlsafe(32)


def secret_hash(value: str) -> str:
    """What is stored for a high-entropy secret (a session id or link token): its SHA-256.
    Passwords, which are low-entropy, get argon2id instead (passwords.py)."""
    return hashlib.sha256(value.encode()).hexdigest()


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf") for char in text)


def normalise_email(raw: str) -> str:
    """The e-mail as typed, trimmed and lower-cased; Invalid if it cannot be one."""
    email = raw.strip().lower()
    if not email or len(email) > MAX_EMAIL_LENGTH or has_control_characters(email) or "@" not in email:
        raise Invalid("enter the e-mail address you were invited with")
    return email


def check_new_password(password: str, confirmation: str) -> None:
    if password != confirmation:
        raise Invalid("password_mismatch")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid("password_too_short")
    if len(password) > MAX_PASSWORD_LENGTH or has_control_characters(password):
        raise Invalid("password_invalid")


@dataclass(frozen=True)
class Link:
    account_id: UUID
    purpose: str
    expires_at: datetime
    used_at: datetime | None


def link_problem(link: Link | None, now: datetime) -> str | None:
    """Why a set-password link cannot be used (a message key), or None."""
    if link is None:
        return "link_unknown"
    if link.used_at is not None:
        return "link_used"
    if link.expires_at <= now:
        return "link_expired"
    return None


def too_many_failures(account_failures: int, address_failures: int, *, per_account: int, per_address: int) -> bool:
    return account_failures >= per_account or address_failures >= per_address


@dataclass(frozen=True)
class Grants:
    roles: dict[UUID, Role]
    admin: bool


def parse_scope(scope: list[str]) -> Grants:
    """A machine client's scope: `admin`, `coordinator:<group id>` or `member:<group id>`."""
    roles: dict[UUID, Role] = {}
    admin = False
    for item in scope:
        if item == "admin":
            admin = True
            continue
        role, _, group = item.partition(":")
        try:
            roles[UUID(group)] = Role(role)
        except ValueError:
            raise Invalid(f"scope item {item!r} is not admin, coordinator:<group id> or member:<group id>") from None
    if not roles and not admin:
        raise Invalid("a client needs a scope: admin, coordinator:<group id> or member:<group id>")
    return Grants(roles, admin)


def parse_quantity(text: str, *, weighed: bool) -> Decimal | None:
    """A quantity as a person types it: blank or zero is none; "1,5" and "1.5" are the same for a
    product sold by weight or volume; a product sold by the piece takes whole numbers only.
    Invalid carries a message key (order.quantity_invalid, order.quantity_whole)."""
    text = text.strip()
    if not text:
        return None
    if not _QUANTITY.fullmatch(text):
        raise Invalid("order.quantity_invalid")
    if not weighed and not _WHOLE.fullmatch(text):
        raise Invalid("order.quantity_whole")
    value = Decimal(text.replace(",", "."))
    return value.normalize() if value else None


# --- amounts typed by people -----------------------------------------------------------------

MAX_TYPED_AMOUNT_DIGITS = 12  # before the decimal mark: far beyond any group's money
_SPACES = (" ", "\u00a0", "\u202f")


class AmountRefused(Invalid):
    """An amount a person typed that is not one; `reason` is the catalog key of the message
    (amounts.*), `details["decimals"]` the currency's decimals for the message."""


def parse_amount(text: str, currency: str, *, signed: bool = False) -> int:
    """An amount as people type it ("14,65", "14.65", "1 234,5", "-3" when `signed`) in the
    currency's minor units. ASCII digits only (a Unicode digit is refused, as the services
    refuse them); at most the currency's decimals; zero refused, a sign only when `signed`."""
    decimals = minor_unit_exponent(currency)
    raw = text.strip()
    for space in _SPACES:
        raw = raw.replace(space, "")
    sign = 1
    if raw[:1] in ("-", "+", "\u2212"):
        if not signed:
            raise AmountRefused("amounts.positive_only", decimals=decimals)
        sign = 1 if raw[0] == "+" else -1
        raw = raw[1:]
    if not raw:
        raise AmountRefused("amounts.required", decimals=decimals)
    if raw.count(",") + raw.count(".") > 1:
        raise AmountRefused("amounts.not_a_number", decimals=decimals)
    whole, _, fraction = raw.replace(",", ".").partition(".")
    digits = whole + fraction
    if not digits or not digits.isascii() or not digits.isdigit():
        raise AmountRefused("amounts.not_a_number", decimals=decimals)
    if len(fraction) > decimals:
        raise AmountRefused("amounts.too_many_decimals", decimals=decimals)
    if len(whole.lstrip("0")) > MAX_TYPED_AMOUNT_DIGITS:
        raise AmountRefused("amounts.too_large", decimals=decimals)
    cents = int(whole or "0") * 10**decimals + int((fraction or "0").ljust(decimals, "0")[:decimals] or "0")
    if cents == 0:
        raise AmountRefused("amounts.zero", decimals=decimals)
    return sign * cents
