"""Gettext catalogs read from `.po` files and compiled in memory (no build step, no `.mo` files
in the repository), shared by the web pages and the emails.

A language's catalogs are every `<directory>/<language>/LC_MESSAGES/*.po`, merged. Babel gives
each catalog the plural rule of its locale (French: one for 0 and 1; English: one for 1 only),
so `ngettext` picks the right form.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations


def catalog_files(directory: Path, language: str) -> list[Path]:
    return sorted((directory / language / "LC_MESSAGES").glob("*.po"))


@cache
def load_translations(directory: Path, language: str) -> Translations:
    """All of a language's catalogs under `directory`, merged into one set of translations
    (read once per process)."""
    merged: Translations | None = None
    for path in catalog_files(directory, language):
        with path.open("rb") as source:
            catalog = read_po(source, locale=language)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        part = Translations(compiled)
        if merged is None:
            merged = part
        else:
            merged.merge(part)
    if merged is None:
        raise RuntimeError(f"no catalog for {language} in {directory}")
    return merged
