"""`python -m cagette_<service> serve|migrate`, the same for every service."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from .service import Service, shutdown_requested
from .settings import UnsafeSettings, load_settings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)


def draining_server(config: uvicorn.Config, drain_seconds: float) -> uvicorn.Server:
    """uvicorn's server, except that the first stop signal starts a drain: /ready answers 503
    (so the load balancer takes this replica out) while requests are still served for
    `drain_seconds`, then the usual graceful shutdown runs. A second signal stops at once."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if drain_seconds <= 0 or shutdown_requested.is_set():
                super().handle_exit(sig, frame)
                return
            shutdown_requested.set()
            log.info("stop signal: /ready answers 503, serving for %.0fs more before stopping", drain_seconds)
            threading.Timer(drain_seconds, super().handle_exit, (sig, frame)).start()

    return DrainingServer(config)


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
    config = uvicorn.Config(
        app_factory,
        factory=True,
        host=args.host or settings.http_host,
        port=args.port or settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    draining_server(config, settings.shutdown_drain_seconds).run()
