"""The pages in French and English: strings from Babel (gettext) catalogs, money, numbers and
dates in the locale's format.

Catalogs are `locale/<language>/LC_MESSAGES/*.po` (one file per area of the pages, so each area
keeps its strings together); message ids are stable keys (`balances.title`), every key is in
both languages (services/web/tests/test_i18n.py checks it against the keys the templates and the
code use). They are compiled in memory when first used. Templates call `t("key", name=...)`:
values are put in with `str.format` named fields, and Jinja2 escapes the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_skeleton
from babel.numbers import format_currency, format_decimal
from babel.support import Translations

from cagette_contracts import Language
from cagette_contracts.common import time_zone as zone_named
from cagette_contracts.money import minor_unit_exponent
from cagette_runtime import catalogs

LOCALE_DIR = Path(__file__).parent / "locale"
# The Babel locale each language is shown in (amounts: "14,65 €" / "€14.65").
LOCALES = {Language.FR: "fr_FR", Language.EN: "en_GB"}


def catalog_files(language: Language) -> list[Path]:
    return catalogs.catalog_files(LOCALE_DIR, language.value)


def translations(language: Language) -> Translations:
    """All of a language's catalogs, merged into one set of translations."""
    return catalogs.load_translations(LOCALE_DIR, language.value)


def translator(language: Language) -> Callable[..., str]:
    strings = translations(language)

    def t(key: str, **values: object) -> str:
        text = strings.gettext(key)
        return text.format(**values) if values else text

    return t


def language_from(accept_language: str | None, chosen: str | None = None) -> Language:
    """?lang= first, then the browser's preference (the first of fr/en it names), else French."""
    for candidate in [chosen or "", *(part.split(";")[0].strip()[:2] for part in (accept_language or "").split(","))]:
        if candidate.lower() in ("fr", "en"):
            return Language(candidate.lower())
    return Language.FR


def to_decimal(cents: int, currency: str) -> Decimal:
    return Decimal(cents).scaleb(-minor_unit_exponent(currency))


@dataclass(frozen=True)
class Formats:
    """How a person reads amounts and dates: their language's locale, the group's time zone."""

    language: Language
    time_zone: ZoneInfo

    @property
    def locale(self) -> str:
        return LOCALES[self.language]

    def money(self, amount: int, currency: str) -> str:
        """Integer minor units as the locale writes them: 1465 EUR is "14,65 €" in French."""
        return format_currency(to_decimal(amount, currency), currency, locale=self.locale)

    def amount(self, amount: int, currency: str) -> str:
        """The number alone, as a person types it back into a form ("14,65")."""
        exponent = minor_unit_exponent(currency)
        pattern = "0." + "0" * exponent if exponent else "0"
        return format_decimal(to_decimal(amount, currency), format=pattern, locale=self.locale)

    def quantity(self, value: Decimal | str | int) -> str:
        """A quantity as the locale writes it, without useless zeros ("1,5", "2")."""
        return format_decimal(Decimal(str(value)), format="0.###", locale=self.locale)

    def date(self, value: date | str | None, style: str = "medium") -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
        if isinstance(value, datetime):
            value = value.astimezone(self.time_zone).date()
        return format_date(value, format=style, locale=self.locale)

    def datetime(self, value: datetime | str | None) -> str:
        """A moment in the group's time zone, to the minute ("2 déc. 2026, 11:00")."""
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        day = format_skeleton("yMMMd", value, tzinfo=self.time_zone, locale=self.locale)
        return f"{day}, {format_skeleton('Hm', value, tzinfo=self.time_zone, locale=self.locale)}"


def formats(language: Language, time_zone_name: str) -> Formats:
    return Formats(language, zone_named(time_zone_name))
