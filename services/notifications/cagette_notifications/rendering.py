"""Turns an `Email` into subject, plain text and HTML with the Jinja2 templates of its language.

Templates live in `templates/<language>/`: `<kind>.txt` sets `subject` and renders the plain
text body; `<kind>.html` renders the HTML body (autoescaped); `_footer.txt` ends every plain text.
Amounts go through the `money` filter (Money.format for the language: "12,50 €" / "€12.50"),
dates through `date` (babel, in the configured time zone; French ordinal "1er"), a
distribution's day and hour through `day_time`, quantities through `quantity`, fee rates through
`percent`; `de` elides the French "de" before a vowel or a mute h ("auprès d'AMAP du Lac").
Words that change with a number come from the gettext catalogs in `locale/<language>/` through
`plural("key", count)`, with the language's plural rule ("1 distribution", "0 jour").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from cagette_contracts import Money
from cagette_contracts.common import DEFAULT_TIME_ZONE, time_zone
from cagette_runtime.catalogs import load_translations

from .domain import SUPPORTED_LANGUAGES, Email

TEMPLATES = Path(__file__).parent / "templates"
LOCALE_DIR = Path(__file__).parent / "locale"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def _environment(language: str, timezone: str) -> Environment:
    zone = time_zone(timezone)
    env = Environment(
        # A language's own templates, then those every language shares (markup with no words).
        loader=FileSystemLoader([TEMPLATES / language, TEMPLATES / "common"]),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )

    def money(value: Money) -> str:
        return value.format(language)

    def when(value: datetime | date) -> str:
        day = value.astimezone(zone).date() if isinstance(value, datetime) else value
        return ordinal_first(format_date(day, format="long", locale=language), day, language)

    def day_time(value: datetime) -> str:
        local = value.astimezone(zone)
        pattern = "EEEE d MMMM 'à' HH:mm" if language == "fr" else "EEEE d MMMM 'at' h:mm a"
        return ordinal_first(format_datetime(local, pattern, locale=language), local.date(), language)

    def percent(value: Decimal) -> str:
        return format_percent(value, locale=language, decimal_quantization=False)

    def when_time(value: datetime) -> str:
        return format_datetime(value.astimezone(zone), format="medium", locale=language)

    def quantity(value: Decimal) -> str:
        return format_decimal(value.normalize(), locale=language)

    strings = load_translations(LOCALE_DIR, language)

    def plural(key: str, count: int) -> str:
        return strings.ngettext(key, f"{key}.plural", count).format(count=format_decimal(count, locale=language))

    env.globals["plural"] = plural
    env.filters.update(
        money=money, date=when, datetime=when_time, day_time=day_time, quantity=quantity, percent=percent, de=de
    )
    return env


def ordinal_first(text: str, day: date, language: str) -> str:
    """French writes the first of the month as an ordinal: "1er décembre", never "1 décembre"."""
    if language == "fr" and day.day == 1:
        return re.sub(r"(?<!\d)1(?= )", "1er", text, count=1)
    return text


_ELIDING = re.compile(r"^[aeiouyhàâäéèêëîïôöûüùœæ]", re.IGNORECASE)


_CONTRACTING = {"le": "du", "les": "des"}


def de(name: str) -> str:
    """The French preposition "de" before a name: "d'AMAP des Lilas", "de La Ferme", and
    contracted with a leading article: "du Jardin" for "Le Jardin", "des Paniers" for "Les Paniers"."""
    article, _, rest = name.partition(" ")
    if rest and article.lower() in _CONTRACTING:
        return f"{_CONTRACTING[article.lower()]} {rest}"
    return f"d'{name}" if _ELIDING.match(name) else f"de {name}"


@lru_cache(maxsize=8)
def environment(language: str, timezone: str = DEFAULT_TIME_ZONE) -> Environment:
    if language not in SUPPORTED_LANGUAGES:
        raise ValueError(f"no templates for language {language!r}")
    return _environment(language, timezone)


def render(email: Email, *, timezone: str = DEFAULT_TIME_ZONE) -> Rendered:
    """The email in its language, its dates in the group's time zone (`timezone` when the group
    has none of its own)."""
    env = environment(email.language, email.group.time_zone or timezone)
    context = {"group": email.group, "member": email.member, **email.facts}
    text_template = env.get_template(f"{email.kind.value}.txt")
    module = text_template.make_module(context)
    subject = re.sub(r"[ \t\r\n]+", " ", str(getattr(module, "subject", ""))).strip()
    if not subject:
        raise ValueError(f"template {email.language}/{email.kind.value}.txt sets no subject")
    text = str(module).strip() + "\n\n" + env.get_template("_footer.txt").render(context)
    html = env.get_template(f"{email.kind.value}.html").render(subject=subject, **context)
    return Rendered(subject=subject, text=text, html=html)
