"""Schemathesis against the four running services, as a coordinator and as a member of a real
group: no answer may be a server error, and every answer must match what the service's OpenAPI
document says (status, content type, headers, body).

The runs are bounded (a few examples per operation, no shrinking, a fixed seed) so the whole
contract check stays within a couple of minutes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from cagette_runtime.devstack import Stack

from .conftest import bearer, client, eventually

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = os.environ.get("CAGETTE_SCHEMATHESIS_EXAMPLES", "6")


async def _group(stack: Stack) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    admin, coordinator, member = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with client(stack, "orders") as orders, client(stack, "ledger") as ledger:
        created = await orders.post(
            "/groups",
            headers=bearer(admin, admin=True),
            json={"name": "AMAP du contrat", "payment_methods": ["cheque"], "cheque_payee": "AMAP"},
        )
        assert created.status_code == 201, created.text
        group_id = uuid.UUID(created.json()["group_id"])
        for user, role in ((coordinator, "coordinator"), (member, "member")):
            joined = await orders.post(
                f"/groups/{group_id}/members",
                headers=bearer(admin, admin=True),
                json={"member_id": str(user), "role": role, "name": role, "email": f"{role}@example.org"},
            )
            assert joined.status_code == 201, joined.text

        async def ledger_knows_the_group() -> bool:
            answer = await ledger.get(
                f"/groups/{group_id}/members/{member}/balance", headers=bearer(member, member_of=group_id)
            )
            return answer.status_code == 200

        await eventually(ledger_knows_the_group)
    return group_id, coordinator, member


async def _schemathesis(stack: Stack, service: str, config: Path, report: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{stack.services[service].url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        "15",
        "--no-shrink",
        # One worker per run (the four services run side by side): Hypothesis's strategy
        # descriptions parse source, which is not thread-safe on every Python 3.11.
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"},
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


@pytest.mark.parametrize("role", ["coordinator", "member"])
async def test_every_answer_matches_the_documented_contract(stack: Stack, tmp_path: Path, role: str) -> None:
    group_id, coordinator, member = await _group(stack)
    user = coordinator if role == "coordinator" else member
    auth = bearer(user, coordinator_of=group_id) if role == "coordinator" else bearer(user, member_of=group_id)
    config = tmp_path / "schemathesis.toml"
    # The group and member of the paths are real ones (other ids are refused before anything
    # interesting runs); everything else is generated.
    config.write_text(
        f'headers = {{ Authorization = "{auth["Authorization"]}" }}\n'
        "[parameters]\n"
        f'"path.group_id" = "{group_id}"\n'
        f'"path.member_id" = "{user}"\n'
    )
    services = ("orders", "ledger", "payments", "notifications")
    results = await asyncio.gather(
        *(_schemathesis(stack, service, config, tmp_path / f"{service}.xml") for service in services)
    )
    failures = [
        f"--- {service} as {role} (exit {code}) ---\n{output[-6000:]}"
        for service, (code, output) in zip(services, results, strict=True)
        if code != 0
    ]
    assert not failures, "\n".join(failures)
