"""Run the five services as local processes against local PostgreSQL and RabbitMQ.

`cagette-dev run` (what `make run` calls): checks both servers answer, starts a local mail
catcher (unless CAGETTE_SMTP_HOST names a real SMTP server), creates the service databases,
applies migrations, starts the services, prints where each listens and where the emails go,
streams their logs, and stops them all on Ctrl-C. The end-to-end tests start the same `Stack`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from .db import ensure_database
from .mailcatcher import DEFAULT_PORT as DEFAULT_SMTP_PORT
from .mailcatcher import MailCatcher, port_is_free
from .settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES_SERVER_URL

# Web's order page, where the card checkout returns ({placeholders} are payments' to fill).
CARD_RETURN_PATH = "/groups/{group_id}/orders/{order_id}?card_payment={payment_id}"
SERVICES: dict[str, int] = {"orders": 8001, "ledger": 8002, "payments": 8003, "notifications": 8004, "web": 8005}

START_POSTGRES = (
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start   (or: docker compose up -d postgres)"
)
START_RABBITMQ = "rabbitmq-server -detached   (or: docker compose up -d rabbitmq)"


class ServerUnreachable(RuntimeError):
    pass


CONNECT_TIMEOUT = 30.0  # seconds


async def check_servers(amqp_url: str, postgres_url: str) -> None:
    """Raise ServerUnreachable naming each server that does not answer and how to start it."""
    import aio_pika
    import asyncpg
    from sqlalchemy.engine import make_url

    problems = []
    try:
        # A refused connection fails at once; the generous timeout only matters on a busy machine,
        # where a live broker may take several seconds to accept (seen at load 13 on 2 cores).
        connection = await asyncio.wait_for(aio_pika.connect(amqp_url), timeout=CONNECT_TIMEOUT)
        await connection.close()
    except Exception as exc:
        problems.append(
            f"RabbitMQ at {_safe(amqp_url)} is unreachable ({type(exc).__name__}: {exc}).\n  Start it: {START_RABBITMQ}"
        )
    try:
        dsn = make_url(f"{postgres_url}/postgres").set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncio.wait_for(asyncpg.connect(dsn), timeout=CONNECT_TIMEOUT)
        await connection.close()
    except Exception as exc:
        problems.append(
            f"PostgreSQL at {_safe(postgres_url)} is unreachable "
            f"({type(exc).__name__}: {exc}).\n  Start it: {START_POSTGRES}"
        )
    if problems:
        raise ServerUnreachable("\n".join(problems))


def _safe(url: str) -> str:
    from yarl import URL

    return str(URL(url.replace("postgresql+asyncpg", "postgresql")).with_password(None) if "@" in url else url)


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    """The services as child processes, with their own databases and broker URL; every
    service verifies tokens with the keys of this stack's web service."""

    amqp_url: str = DEFAULT_AMQP_URL
    postgres_url: str = DEFAULT_POSTGRES_SERVER_URL
    database_prefix: str = "cagette"
    ports: dict[str, int] = field(default_factory=lambda: dict(SERVICES))
    extra_env: dict[str, str] = field(default_factory=dict)
    log_stream: TextIO | None = None
    log_dir: Path | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def database_url(self, service: str) -> str:
        return f"{self.postgres_url}/{self.database_prefix}_{service}"

    def wiring_env(self) -> dict[str, str]:
        """Where the services find each other in this stack (local http: cookies not Secure)."""
        env: dict[str, str] = {}
        if "web" in self.ports:
            web = f"http://127.0.0.1:{self.ports['web']}"
            env |= {
                "CAGETTE_JWT_JWKS_URL": f"{web}/.well-known/jwks.json",
                "CAGETTE_WEB_PUBLIC_URL": web,
                "CAGETTE_WEB_COOKIE_SECURE": "false",
                # The card provider sends the member back to web's pages, wherever this stack put them.
                "CAGETTE_CARD_SUCCESS_URL": f"{web}{CARD_RETURN_PATH}&result=success",
                "CAGETTE_CARD_CANCEL_URL": f"{web}{CARD_RETURN_PATH}&result=cancel",
                "CAGETTE_CARD_ONBOARDING_RETURN_URL": f"{web}/groups/{{group_id}}/settings?onboarding=returned",
                "CAGETTE_CARD_ONBOARDING_REFRESH_URL": f"{web}/groups/{{group_id}}/settings?onboarding=expired",
            }
        for service in ("orders", "ledger", "payments", "notifications"):
            if service in self.ports:
                env[f"CAGETTE_WEB_{service.upper()}_URL"] = f"http://127.0.0.1:{self.ports[service]}"
        return env

    async def start(self, timeout: float = 90.0) -> None:
        await check_servers(self.amqp_url, self.postgres_url)
        for name in self.ports:
            await ensure_database(self.database_url(name))
        for name, port in self.ports.items():
            env = {
                **os.environ,
                **self.wiring_env(),
                **self.extra_env,
                "CAGETTE_AMQP_URL": self.amqp_url,
                "CAGETTE_DATABASE_URL": self.database_url(name),
                "CAGETTE_HTTP_HOST": "127.0.0.1",
                "CAGETTE_HTTP_PORT": str(port),
                "PYTHONUNBUFFERED": "1",
            }
            service = ServiceProcess(name, port, env)
            service.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"cagette_{name}",
                "serve",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            service.pump = asyncio.create_task(self._pump(service))
            self.services[name] = service
        try:
            await asyncio.gather(*(self._wait_ready(service, timeout) for service in self.services.values()))
        except BaseException:
            await self.stop()
            raise

    async def _pump(self, service: ServiceProcess) -> None:
        assert service.process and service.process.stdout
        sink = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            sink = (self.log_dir / f"{service.name}.log").open("a", encoding="utf-8")
        try:
            async for line in service.process.stdout:
                text = line.decode(errors="replace")
                if sink:
                    sink.write(text)
                    sink.flush()
                if self.log_stream is not None:
                    self.log_stream.write(f"{service.name:>13} | {text}")
                    self.log_stream.flush()
        finally:
            if sink:
                sink.close()

    async def _wait_ready(self, service: ServiceProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if service.process and service.process.returncode is not None:
                    raise RuntimeError(f"{service.name} exited with code {service.process.returncode} while starting")
                try:
                    if (await client.get(f"{service.url}/ready", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{service.name} was not ready on {service.url} after {timeout:.0f}s")

    async def stop(self) -> None:
        for service in self.services.values():
            if service.process and service.process.returncode is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.services.values():
            if service.process is None:
                continue
            try:
                await asyncio.wait_for(service.process.wait(), timeout=20)
            except TimeoutError:
                service.process.kill()
                await service.process.wait()
            if service.pump:
                await service.pump
        self.services.clear()


async def start_mail_catcher(directory: Path) -> MailCatcher:
    """The catcher on 127.0.0.1:1025 (notifications' default), or on a free port if that is taken."""
    port = DEFAULT_SMTP_PORT if port_is_free("127.0.0.1", DEFAULT_SMTP_PORT) else 0
    catcher = MailCatcher(directory, port=port)
    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            catcher.port = probe.getsockname()[1]
    await catcher.start()
    return catcher


async def seed_demo(stack: Stack) -> None:
    """`python -m cagette_web demo` against the running stack (it prints the sign-in details)."""
    web = stack.services["web"]
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "cagette_web", "demo", env=web.env)
    if await process.wait() != 0:
        print("the demo group could not be created (see above)", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    stack = Stack(
        amqp_url=os.environ.get("CAGETTE_AMQP_URL", DEFAULT_AMQP_URL),
        postgres_url=os.environ.get("CAGETTE_POSTGRES_URL", DEFAULT_POSTGRES_SERVER_URL),
        log_stream=None if args.quiet else sys.stdout,
    )
    catcher = None
    if "CAGETTE_SMTP_HOST" not in os.environ:
        catcher = await start_mail_catcher(Path(args.mail_dir))
        stack.extra_env.update({"CAGETTE_SMTP_HOST": catcher.host, "CAGETTE_SMTP_PORT": str(catcher.port)})
    try:
        await stack.start()
    except ServerUnreachable as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        if catcher:
            await catcher.stop()
        return 2
    print("\nAll services are up:")
    for service in stack.services.values():
        print(f"  {service.name:<14} {service.url}   (API docs: {service.url}/docs)")
    if catcher:
        print(
            f"  {'emails':<14} caught on smtp://{catcher.host}:{catcher.port}, none delivered: read them in "
            f"{catcher.directory}/ (index.txt lists them; one .txt to read and one .eml per email)"
        )
    else:
        print(f"  {'emails':<14} sent to the SMTP server {os.environ['CAGETTE_SMTP_HOST']}")
    print(
        "First administrator: .venv/bin/python -m cagette_web create-admin --email ... --name ...\n"
        "Development token (local only): .venv/bin/cagette-token --admin",
        flush=True,
    )
    if args.demo and "web" in stack.services:
        await seed_demo(stack)
    print(f"\nOpen {stack.services['web'].url}/sign-in in your browser.     Stop: Ctrl-C\n", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watchers = [asyncio.create_task(s.process.wait()) for s in stack.services.values() if s.process]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *watchers], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stopper not in done:
        crashed = [s.name for s in stack.services.values() if s.process and s.process.returncode is not None]
        print(f"service stopped unexpectedly: {', '.join(crashed)}; stopping the others", file=sys.stderr)
        code = 1
    print("stopping...", flush=True)
    await stack.stop()
    if catcher:
        await catcher.stop()
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cagette-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the five services here")
    run.add_argument("--quiet", action="store_true", help="do not stream the services' logs")
    run.add_argument("--demo", action="store_true", help="create a demo group (once) and print how to sign in to it")
    run.add_argument(
        "--mail-dir", default="var/mail", help="where the mail catcher keeps the emails (default var/mail)"
    )
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(_run(args)))


if __name__ == "__main__":
    main()
