"""`python -m cagette_<service> serve|migrate`, the same for every service."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from .service import Service
from .settings import UnsafeSettings, load_settings


def run_service_cli(
    name: str, build_service: Callable[[], Service], app_factory: str, argv: list[str] | None = None
) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m cagette_{name}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="apply migrations, then serve HTTP and consume messages")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    sub.add_parser("migrate", help="create the database if needed and apply migrations")
    args = parser.parse_args(argv)

    if args.command == "migrate":
        service = build_service()
        asyncio.run(service.migrate())
        print(f"{name}: migrations applied to {service.database.engine.url.render_as_string(hide_password=True)}")
        return

    import uvicorn

    settings = load_settings(name)
    try:
        build_service()  # refuses unsafe production settings before anything listens
    except UnsafeSettings as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    uvicorn.run(
        app_factory,
        factory=True,
        host=args.host or settings.http_host,
        port=args.port or settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
