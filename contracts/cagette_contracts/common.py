"""Value types shared by the events of every service."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema


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
    "Language",
    "Part",
    "PaymentMethod",
    "PositiveQuantity",
    "ProductUnit",
    "Role",
]
