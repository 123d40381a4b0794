"""The chaos run's own servers: a PostgreSQL cluster (initdb into a temporary directory) and a
RabbitMQ node (its own node name, ports, mnesia, logs, config and Erlang cookie), both on free
ports, started and stopped here, never the shared servers on 5432 / 5672.

PostgreSQL refuses to run as root: when we are root, the cluster belongs to the `postgres` user
(`runuser -u postgres --`). RabbitMQ runs as whoever we are, with HOME in its own directory so its
Erlang cookie is its own; `rabbitmqctl()` reaches that node only (`-n`), and `ctl_shim()` writes a
`rabbitmqctl` for the services' PATH that does the same (they set their queue policies with it).
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"{name} not found in PATH nor in /usr/lib/postgresql/*/bin")
    return candidates[-1]


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class OwnPostgres:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chaos-pg-")))
    port: int = field(default_factory=free_port)
    as_user: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, *args], check=check, capture_output=True, text=True, timeout=timeout, cwd=self.root
        )

    def init(self) -> None:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        # fsync=off loses nothing when only the server process dies (the kernel keeps its writes);
        # synchronous_commit must stay on: off, a crash loses commits already acknowledged (and
        # already relayed from the outbox), which the run's checks then report as phantom orders.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def crash(self) -> None:
        """What a power cut does to PostgreSQL: no checkpoint, every backend gone at once."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class OwnRabbit:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chaos-mq-")))
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    node: str = field(default_factory=lambda: f"chaos{uuid.uuid4().hex[:8]}@localhost")
    # the nodes of one cluster share a HOME, hence one Erlang cookie (see OwnRabbitCluster)
    home: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        (self.root / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.root / "log").mkdir(exist_ok=True)
        if self.home is None:
            self.home = self.root / "home"
        self.home.mkdir(exist_ok=True)
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")  # no management plugin, no port 15672

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
        }

    def ctl_shim(self) -> Path:
        """A directory holding a `rabbitmqctl` that only ever talks to this node."""
        shim_dir = self.root / "bin"
        shim_dir.mkdir(exist_ok=True)
        shim = shim_dir / "rabbitmqctl"
        shim.write_text(f'#!/bin/sh\nexec env HOME={self.home} {RABBITMQ_BIN / "rabbitmqctl"} -n {self.node} "$@"\n')
        shim.chmod(0o755)
        return shim_dir

    def rabbitmqctl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def start(self, timeout: float = 120) -> None:
        self.launch()
        self.wait_started(timeout)

    def launch(self) -> None:
        """Start the Erlang VM without waiting for it (a cluster's nodes start side by side)."""
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self.env(),
            stdout=(self.root / "server.out").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_started(self, timeout: float = 120) -> None:
        self.rabbitmqctl("wait", "--timeout", str(int(timeout)), str(self.root / "rabbitmq.pid"), timeout=timeout + 10)
        deadline = time.monotonic() + 30
        while not _port_answers(self.port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"RabbitMQ node {self.node} does not listen on {self.port}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the node (the whole Erlang VM): every connection drops, quorum queues stay on disk."""
        if self.process is None:
            return
        self.rabbitmqctl("stop", str(self.root / "rabbitmq.pid"), check=False, timeout=120)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            self.process = None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class AmqpProxy:
    """One TCP port in front of a cluster's nodes, as an operator's load balancer is: each new
    connection goes to the next node that accepts it (round robin), so a client whose node died
    reconnects to the same address and lands on a surviving node. It runs its own event loop in a
    thread: a busy driver never delays broker traffic."""

    def __init__(self, port: int, backends: list[int]) -> None:
        self.port = port
        self.backends = backends
        self.connections: Counter[int] = Counter()
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", self.port))
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="amqp-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError(f"the AMQP proxy did not listen on {self.port}")

    @property
    def listening(self) -> bool:
        return self._loop is not None

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            loop.stop()

        asyncio.run_coroutine_threadsafe(close(), loop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._server = None

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.backends)):
            port = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                node_reader, node_writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
            except (OSError, TimeoutError):
                continue  # that node is down: the next one
            self.connections[port] += 1
            await asyncio.gather(
                self._pipe(client_reader, node_writer), self._pipe(node_reader, client_writer), return_exceptions=True
            )
            return
        client_writer.close()  # no node answers: the client sees a refused connection and retries

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()  # one side gone (a node killed): the other side is closed too


@dataclass
class OwnRabbitCluster:
    """Three nodes (by default) in one RabbitMQ cluster, sharing one Erlang cookie, behind one
    AMQP port (`AmqpProxy`). Quorum queues declared once the cluster is formed get a replica on
    every node, so losing one node loses no message and needs no client to be told. It answers to
    what the run asks of a single `OwnRabbit`: url, rabbitmqctl (node 1), ctl_shim, start, stop."""

    size: int = 3
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chaos-mqc-")))
    port: int = field(default_factory=free_port)
    nodes: list[OwnRabbit] = field(init=False)
    formed: bool = False

    def __post_init__(self) -> None:
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"  # written before any node starts: two would race to create it
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        tag = uuid.uuid4().hex[:8]
        self.nodes = [
            OwnRabbit(root=self.root / f"node{number}", node=f"chaos{tag}n{number}@localhost", home=home)
            for number in range(1, self.size + 1)
        ]
        self.proxy = AmqpProxy(self.port, [node.port for node in self.nodes])

    @property
    def node(self) -> str:
        return f"{self.size}-node cluster {', '.join(node.node for node in self.nodes)}"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl_shim(self) -> Path:
        return self.nodes[0].ctl_shim()

    def rabbitmqctl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        return self.nodes[0].rabbitmqctl(*args, timeout=timeout, check=check)

    def start(self, timeout: float = 180) -> None:
        if not self.proxy.listening:
            self.proxy.start()
        if not self.formed:
            self.nodes[0].start(timeout)
            for node in self.nodes[1:]:
                node.start(timeout)
                node.rabbitmqctl("stop_app")
                node.rabbitmqctl("join_cluster", self.nodes[0].node)
                node.rabbitmqctl("start_app", timeout=timeout)
            self.formed = True
        else:
            # after a full stop every node waits for its peers' tables: start them side by side
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_started(timeout)
        running = json.loads(self.rabbitmqctl("-q", "cluster_status", "--formatter", "json"))["running_nodes"]
        if len(running) != self.size:
            raise RuntimeError(f"the cluster runs {running}, not {self.size} nodes")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()
        self.proxy.stop()

    def remove(self) -> None:
        self.proxy.stop()
        shutil.rmtree(self.root, ignore_errors=True)
