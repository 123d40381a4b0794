"""ISO 11649 structured creditor references ("RF" references, SPEC B5).

A reference is "RF" + two check digits + a body. Our bodies are 12 random digits, so the whole
reference is 16 characters: it fits on a cheque and in any transfer label (SEPA allows 35), and
is printed in four groups of four ("RF18 5390 0754 7034"). The check digits are ISO 7064
mod 97-10. On a digits-only body that check catches *every* single wrong digit and *every* swap
of two neighbouring characters (97 is prime and larger than any single-digit change), which is
why the body has no letters: with letters (two digits each once expanded) some one-character
typos slip through. Digits are also the easiest to write on a cheque and read back.

Validation and formatting come from python-stdnum (`stdnum.iso11649`); generation is ours since
stdnum only validates. Uniqueness is enforced by the database (a unique index); the caller
draws again on the rare collision.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from stdnum import iso11649
from stdnum.exceptions import ValidationError

BODY_ALPHABET = "0123456789"
BODY_LENGTH = 12  # 10^12 possible references: collisions are rare, and retried


class InvalidReference(ValueError):
    """A text that is not a valid RF reference (wrong format, length or check digits)."""


def _digits(text: str) -> int:
    """ISO 7064 letter expansion: A=10 ... Z=35, digits unchanged."""
    return int("".join(str(int(char, 36)) for char in text))


def check_digits(body: str) -> str:
    """The two check digits of the reference whose body is `body` (already compact, upper case)."""
    if not body or not body.isalnum() or not body.isascii() or len(body) > 21:
        raise InvalidReference(f"a reference body is 1 to 21 letters or digits, got {body!r}")
    return f"{98 - _digits(body.upper() + 'RF00') % 97:02d}"


def make_reference(body: str) -> str:
    """'RF' + check digits + body, compact (no spaces)."""
    body = body.upper()
    return f"RF{check_digits(body)}{body}"


def random_body(choice: Callable[[str], str] = secrets.choice) -> str:
    return "".join(choice(BODY_ALPHABET) for _ in range(BODY_LENGTH))


def new_reference(choice: Callable[[str], str] = secrets.choice) -> str:
    """A fresh random reference, compact ("RF18539007547034")."""
    return make_reference(random_body(choice))


def parse_reference(text: str) -> str:
    """The compact form of a reference someone typed ("rf18 5390-0754 7034" -> "RF18539007547034"),
    or InvalidReference saying why it cannot be one (a typo changes the check digits)."""
    try:
        return iso11649.validate(text)
    except ValidationError as exc:
        raise InvalidReference(f"{text!r} is not a valid RF creditor reference: {exc}") from None


def is_valid_reference(text: str) -> bool:
    return iso11649.is_valid(text)


def format_reference(reference: str) -> str:
    """Printed form, in groups of four: "RF18 5390 0754 7034"."""
    return iso11649.format(reference)
