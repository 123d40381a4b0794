"""What the benchmarks share: CPU time of process trees and of the PostgreSQL backends serving
some databases, read from /proc (Linux), so a figure per order or per posting covers every
process that did the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
IDLE_LEAVES = ("Condition.wait", "EpollSelector.select", "Queue.get", "_worker (concurrent/futures/thread.py")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime + stime


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


@dataclass
class CpuMeter:
    """CPU seconds of named process trees and of the PostgreSQL backends of some databases."""

    roots: dict[str, int]
    postgres_dsn: str
    databases: list[str]
    start: dict[str, dict[int, float]] = field(default_factory=dict)

    async def _backends(self) -> list[int]:
        connection = await asyncpg.connect(self.postgres_dsn)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()",
                self.databases,
            )
        finally:
            await connection.close()
        return [row["pid"] for row in rows]

    async def _sample(self) -> dict[str, dict[int, float]]:
        sample = {name: {pid: _cpu_seconds(pid) for pid in _process_tree(root)} for name, root in self.roots.items()}
        sample["postgres"] = {pid: _cpu_seconds(pid) for pid in await self._backends()}
        return sample

    async def begin(self) -> None:
        self.start = await self._sample()

    async def end(self) -> dict[str, float]:
        now = await self._sample()
        return {
            name: sum(seconds - self.start.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
            for name, pids in now.items()
        }


class Profiler:
    """py-spy sampling one process while a phase runs; `summary()` gives the share of samples
    spent in (inclusive) each of the busiest functions: where the time goes, as text a README keeps."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        self.output = output
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        self.process.wait(timeout=60)

    def summary(self, top: int = 25, ours: tuple[str, ...] = ("cagette_", "faststream", "aio_pika", "aiormq")) -> str:
        """Shares of the busy samples (threads parked in a wait or the event loop's select are
        idle, left out), inclusive: a function's share counts the functions it called."""
        inclusive: Counter[str] = Counter()
        busy = 0
        for line in self.output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if any(idle in frames[-1] for idle in IDLE_LEAVES):
                continue
            samples = int(count)
            busy += samples
            for frame in set(frames):
                if any(word in frame for word in ours):
                    inclusive[frame] += samples
        rows = [f"{100 * n / max(busy, 1):5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
        return f"{busy} busy samples; inclusive share of the busiest functions:\n" + "\n".join(rows)


def smtp_sink(port: int) -> subprocess.Popen[bytes]:
    """An SMTP server on 127.0.0.1:`port` that accepts every email and keeps none (aiosmtpd's Sink):
    notifications sends as in production, to nobody."""
    return subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
