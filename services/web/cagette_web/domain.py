"""Pure rules of accounts and sign-in: what a valid e-mail and password are, when a link is
still good, when attempts are too many, what a machine client's scope grants; and how an
amount typed in a page is read (`parse_amount`, the one reader every form uses)."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from cagette_contracts import Role
from cagette_contracts.money import minor_unit_exponent
from cagette_runtime.errors import Invalid

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
MAX_EMAIL_LENGTH = 254
INVITATION, PASSWORD_RESET = "invitation", "password_reset"


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


class BadAmount(ValueError):
    """An amount a person typed that cannot be read; `key` is the message to show them."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


# Spaces people (and French number formatting) put between thousands: space, no-break space,
# narrow no-break space.
_THOUSANDS = (" ", "\u00a0", "\u202f")
MAX_AMOUNT_DIGITS = 12


def parse_amount(text: str, currency: str) -> int:
    """An amount typed in a form ("14,65", "14.65", "1 234,5", "-3") in minor units of the
    currency: ASCII digits only, one decimal separator (comma or point), at most the currency's
    decimals. BadAmount("amount.invalid" / "amount.too_precise") otherwise."""
    exponent = minor_unit_exponent(currency)
    cleaned = text.strip()
    for space in _THOUSANDS:
        cleaned = cleaned.replace(space, "")
    negative = cleaned.startswith("-")
    cleaned = cleaned.removeprefix("-").replace(",", ".")
    whole, _, decimals = cleaned.partition(".")
    if not whole and not decimals:
        raise BadAmount("amount.invalid")
    digits = whole + decimals
    if not digits.isascii() or not digits.isdigit() or len(whole) > MAX_AMOUNT_DIGITS:
        raise BadAmount("amount.invalid")
    if len(decimals) > exponent:
        raise BadAmount("amount.too_precise")
    cents = int(whole or "0") * 10**exponent + int(decimals.ljust(exponent, "0") or "0")
    return -cents if negative else cents
