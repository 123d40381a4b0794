"""Value types shared by the events of every service."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Annotated
from zoneinfo import ZoneInfo, available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema


class PaymentMethod(StrEnum):
    CHEQUE = "cheque"
    CASH = "cash"
    TRANSFER = "transfer"
    MONEY_POT = "money_pot"
    CARD = "card"
    ON_THE_SPOT = "on_the_spot"


class Role(StrEnum):
    MEMBER = "member"
    COORDINATOR = "coordinator"


class Language(StrEnum):
    FR = "fr"
    EN = "en"


class CatalogKind(StrEnum):
    """variable: products ordered per distribution; subscription: an AMAP contract (R19)."""

    VARIABLE = "variable"
    SUBSCRIPTION = "subscription"


class ProductUnit(StrEnum):
    """What a product's quantity counts: pieces, or kilograms and litres (weighed, fractions allowed)."""

    PIECE = "piece"
    KG = "kg"
    LITRE = "litre"


# On the wire a decimal string such as "0.02" (2%): not negative, at most 4 decimals.
FEE_RATE_PATTERN = r"^[0-9]{1,2}(\.[0-9]{1,4})?$"
FeeRate = Annotated[
    Decimal,
    Field(ge=0, max_digits=6, decimal_places=4),
    WithJsonSchema({"type": "string", "pattern": FEE_RATE_PATTERN}, mode="serialization"),
]


# A group's dates are shown in its own time zone (an IANA name); groups start in French time.
DEFAULT_TIME_ZONE = "Europe/Paris"


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _known_time_zone(name: str) -> str:
    if name not in _known_zones():
        raise ValueError(f"{name!r} is not an IANA time zone name (like Europe/Paris or America/Montreal)")
    return name


# What a request may set as a group's time zone: a name the tz database knows.
TimeZoneName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_known_time_zone)]


def time_zone(name: str | None) -> ZoneInfo:
    """The zone named, or the default one for a name this machine's tz database does not know
    (a date shown in French time is better than a page or an email that fails)."""
    return ZoneInfo(name if name and name in _known_zones() else DEFAULT_TIME_ZONE)


# On the wire a decimal string such as "0.375" (never a float): positive, at most 3 decimals.
POSITIVE_QUANTITY_PATTERN = r"^(?!0+(\.0+)?$)[0-9]{1,12}(\.[0-9]{1,3})?$"
PositiveQuantity = Annotated[
    Decimal,
    Field(gt=0, max_digits=12, decimal_places=3),
    WithJsonSchema({"type": "string", "pattern": POSITIVE_QUANTITY_PATTERN}, mode="serialization"),
]


class Part(BaseModel):
    """A value inside an event (frozen; unknown fields ignored like the envelope)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


__all__ = [
    "CatalogKind",
    "FeeRate",
    "DEFAULT_TIME_ZONE",
    "Language",
    "Part",
    "PaymentMethod",
    "PositiveQuantity",
    "ProductUnit",
    "Role",
    "TimeZoneName",
    "time_zone",
]
