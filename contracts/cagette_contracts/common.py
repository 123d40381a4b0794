"""Value types shared by the events of every service."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


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


PositiveQuantity = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=3)]


class Part(BaseModel):
    """A value inside an event (frozen; unknown fields ignored like the envelope)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


__all__ = [
    "Language",
    "Part",
    "PaymentMethod",
    "PositiveQuantity",
    "Role",
]
