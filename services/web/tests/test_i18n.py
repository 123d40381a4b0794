"""The pages' catalogs: every key the templates and the code use is translated in French and in
English (Babel extracts the `t("...")` calls), and both languages have the same keys."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from cagette_contracts import Language
from cagette_web.i18n import catalog_files, formats

PACKAGE = Path(__file__).resolve().parent.parent / "cagette_web"


def catalog(language: Language) -> dict[str, str]:
    strings: dict[str, str] = {}
    for path in catalog_files(language):
        with path.open("rb") as source:
            for message in read_po(source):
                if message.id:
                    assert message.id not in strings, f"{message.id} is in two {language.value} catalogs"
                    strings[str(message.id)] = str(message.string)
    return strings


def used_keys() -> set[str]:
    method_map = [("templates/**.html", "jinja2"), ("**.py", "python")]
    found = extract_from_dir(str(PACKAGE), method_map, keywords={"t": None}, comment_tags=())
    return {message for _file, _line, message, _comments, _context in found if isinstance(message, str)}


def test_every_used_key_is_translated_in_both_languages() -> None:
    used = used_keys()
    assert len(used) > 50  # the extraction did find the templates' strings
    for language in Language:
        strings = catalog(language)
        missing = sorted(used - strings.keys())
        assert not missing, f"not in the {language.value} catalogs: {missing}"
        empty = sorted(key for key, text in strings.items() if not text.strip())
        assert not empty, f"empty in {language.value}: {empty}"


def test_both_languages_have_the_same_keys() -> None:
    french, english = catalog(Language.FR), catalog(Language.EN)
    assert sorted(french.keys() - english.keys()) == []
    assert sorted(english.keys() - french.keys()) == []


def test_amounts_and_dates_follow_the_locale_and_the_time_zone() -> None:
    french, english = formats(Language.FR, "Europe/Paris"), formats(Language.EN, "Europe/Paris")
    assert french.money(-1465, "EUR") == "-14,65\u00a0€"
    assert english.money(-1465, "EUR") == "-€14.65"
    assert french.amount(600, "EUR") == "6,00"
    # 23:30 UTC on 31 December is already 1 January in Paris.
    assert french.date("2026-12-31T23:30:00+00:00", "long") == "1 janvier 2027"
    assert english.datetime("2026-07-01T10:00:00+00:00") == "1 Jul 2026, 12:00"


def test_a_moment_reads_in_each_group_s_time_zone() -> None:
    """One instant (01:30 UTC on 2 December) in a group in Paris and in one in Montreal: another
    hour, and in Montreal still the day before; an unknown zone name falls back to French time."""
    moment = "2026-12-02T01:30:00+00:00"
    paris, montreal = formats(Language.FR, "Europe/Paris"), formats(Language.FR, "America/Montreal")
    assert paris.datetime(moment) == "2 déc. 2026, 02:30"
    assert montreal.datetime(moment) == "1 déc. 2026, 20:30"
    assert paris.date(moment, "long") == "2 décembre 2026"
    assert montreal.date(moment, "long") == "1 décembre 2026"
    assert formats(Language.FR, "Mars/Olympus_Mons").datetime(moment) == paris.datetime(moment)
