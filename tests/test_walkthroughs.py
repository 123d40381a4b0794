"""The READMEs' walkthroughs print what they say they print.

Each walkthrough's shell blocks run, in order and in one bash, against the running services;
a `# -> TEXT` line in a block says what the command above it prints: one line of that
command's output matches TEXT, where `...` stands for anything; consecutive `# -> ` lines are
lines the command prints in that order."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from cagette_runtime.devstack import SERVICES, Stack

ROOT = Path(__file__).resolve().parent.parent
EXPECT = "# -> "
MARK = "@@walkthrough-expectation"

# README -> the heading of its walkthrough section.
WALKTHROUGHS = {
    "README.md": "## Two-minute walkthrough",
    "services/ledger/README.md": "## Walkthrough",
}


def walkthrough_script(readme: str, heading: str) -> tuple[str, list[list[str]]]:
    """The section's sh/bash blocks as one script (each run of expectations replaced by a
    marker echo), and the runs of expectations in order."""
    text = (ROOT / readme).read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    section = text[start : end if end != -1 else len(text)]
    blocks = re.findall(r"^```(?:sh|bash)\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks, f"{readme}: no shell block under {heading!r}"
    expectations: list[list[str]] = []
    lines: list[str] = []
    for line in "\n".join(blocks).splitlines():
        if not line.startswith(EXPECT):
            lines.append(line)
        elif lines and lines[-1] == f"echo {MARK}":
            expectations[-1].append(line[len(EXPECT) :])
        else:
            expectations.append([line[len(EXPECT) :]])
            lines.append(f"echo {MARK}")
    return "\n".join(lines) + "\n", expectations


def pattern(expectation: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expectation.split("...")))


@pytest.mark.parametrize("readme", list(WALKTHROUGHS))
async def test_walkthrough_prints_what_it_says(readme: str, stack: Stack) -> None:
    script, expectations = walkthrough_script(readme, WALKTHROUGHS[readme])
    assert expectations, f"{readme}: the walkthrough says nothing it prints"
    for name, service in stack.services.items():
        script = script.replace(f"http://127.0.0.1:{SERVICES[name]}", service.url)
    env = {
        **os.environ,
        "CAGETTE_AMQP_URL": stack.amqp_url,
        "CAGETTE_DATABASE_URL": stack.database_url("ledger"),
    }
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    output = stdout.decode()
    segments = output.split(f"{MARK}\n")
    assert len(segments) == len(expectations) + 1, f"the script stopped early:\n{output}\n{stderr.decode()}"
    for number, (expected, segment) in enumerate(zip(expectations, segments, strict=False), start=1):
        printed = iter(segment.splitlines())  # expected lines in order, others in between allowed
        missing = [text for text in expected if not any(pattern(text).fullmatch(line) for line in printed)]
        assert not missing, (
            f"{readme}, expectation {number}: {missing[0]!r} not printed; the command printed:\n"
            + segment
            + f"\nstderr:\n{stderr.decode()[-2000:]}"
        )
