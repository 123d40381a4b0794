"""`cagette-contracts export-schemas [DIR]`: write one JSON Schema per event into DIR."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import Event

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "schemas"


def schema_documents() -> dict[str, str]:
    """File name -> JSON text, one per (event type, version)."""
    documents = {}
    for (event_type, version), cls in sorted(Event.registry.items()):
        if not cls.__module__.startswith("cagette_contracts."):
            continue  # events defined elsewhere (tests) are not part of the published contracts
        schema = cls.wire_schema()
        schema["x-routing-key"] = event_type
        schema["x-exchange"] = "cagette.events"
        documents[f"{event_type}.v{version}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return documents


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_documents().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(prog="cagette-contracts")
    sub = parser.add_subparsers(dest="command", required=True)
    export_cmd = sub.add_parser("export-schemas", help="write one JSON Schema per event")
    export_cmd.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    for path in export(args.directory):
        print(path)


if __name__ == "__main__":
    main()
