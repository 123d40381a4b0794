"""`python -m cagette_ledger serve|migrate|audit`.

`audit [--group GROUP_ID]` checks the ledger's invariants per group and currency, prints what
it checked and exits 1 on any breach (see cagette_ledger.audit)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from uuid import UUID

from cagette_runtime.cli import run_service_cli
from cagette_runtime.settings import load_settings

from .app import NAME, build_service


def audit_cli(argv: list[str]) -> int:
    from .audit import audit_database

    parser = argparse.ArgumentParser(
        prog="python -m cagette_ledger audit", description="Check the ledger's invariants."
    )
    parser.add_argument("--group", type=UUID, default=None, help="audit one group only")
    parser.add_argument("--database-url", default=None, help="default: $CAGETTE_DATABASE_URL or the local ledger DB")
    args = parser.parse_args(argv)
    url = args.database_url or load_settings(NAME).database_url
    from sqlalchemy.engine import make_url

    print(
        f"auditing {make_url(url).render_as_string(hide_password=True)}"
        + (f", group {args.group}" if args.group else ", every group")
    )
    report = asyncio.run(audit_database(url, args.group))
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["audit"]:
        sys.exit(audit_cli(argv[1:]))
    run_service_cli(NAME, build_service, "cagette_ledger.app:create_app", argv)


if __name__ == "__main__":
    main()
