"""Opening-balance import benchmark: a 10,000-row CSV posted to the ledger's HTTP API.

    .venv/bin/python bench/ledger/opening_balances.py [--rows 10000] [--repeat 3] [--import-rows 200]

Times, on a fresh group of members with accounts:
* check: a `--rows` file refused because its last member is unknown (parsing, the one query for
  every member of the file, the compact error list) - nothing is recorded;
* import: a valid `--import-rows` file, every opening balance posted in one transaction (still
  one posting at a time, with a savepoint each: far slower than the check).

Runs in-process against the local servers (CAGETTE_AMQP_URL / CAGETTE_POSTGRES_URL or the
defaults), in a vhost and a database of its own that are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import insert

from cagette_contracts import AccountType, Role
from cagette_ledger.app import LedgerService
from cagette_ledger.settings import LedgerSettings
from cagette_ledger.tables import accounts, groups
from cagette_runtime.auth import Principal, encode_token
from cagette_runtime.testing import isolated_servers


async def seed(service: LedgerService, group_id: uuid.UUID, members: list[uuid.UUID]) -> None:
    async with service.database.transaction() as session:
        await session.execute(
            insert(groups).values(
                group_id=group_id,
                currency="EUR",
                payments_enabled=True,
                allow_negative_money_pot=True,
                settings_occurred_at=datetime.now(UTC),
            )
        )
        await session.execute(
            insert(accounts),
            [
                {
                    "account_id": uuid.uuid4(),
                    "group_id": group_id,
                    "type": AccountType.MEMBER.value,
                    "member_id": member,
                    "currency": "EUR",
                }
                for member in members
            ],
        )


async def timed(http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], expect: int) -> float:
    started = time.perf_counter()
    response = await http.post(url, content=body, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == expect, response.text[:500]
    return elapsed


async def main(rows: int, repeat: int, import_rows: int) -> None:
    async with isolated_servers() as servers:
        settings = LedgerSettings(
            service_name="ledger",
            database_url=await servers.create_database("ledger_bench"),
            amqp_url=servers.amqp_url,
            max_body_bytes=4 * 1024 * 1024,
        )
        service = LedgerService(settings)
        await service.start()
        try:
            app = service.create_app()
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ledger", timeout=300
            ) as http:
                checks, imports = [], []
                for _ in range(repeat):
                    group_id, members = uuid.uuid4(), [uuid.uuid4() for _ in range(rows)]
                    await seed(service, group_id, members)
                    token = encode_token(
                        Principal(user_id=uuid.uuid4(), roles={group_id: Role.COORDINATOR}), settings.jwt_secret
                    )
                    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
                    url = f"/groups/{group_id}/opening-balances"
                    lines = [f"{member},{(i % 500) - 250}.50" for i, member in enumerate(members)]
                    refused = "member_id,amount\n" + "\n".join([*lines[:-1], f"{uuid.uuid4()},1.00"]) + "\n"
                    checks.append(await timed(http, url, refused.encode(), headers, 422))
                    valid = "member_id,amount\n" + "\n".join(lines[:import_rows]) + "\n"
                    imports.append(await timed(http, url, valid.encode(), headers, 200))
        finally:
            await service.stop()
    print(f"opening balances, {rows} rows, {repeat} runs (median / best):")
    print(f"  check (refused, nothing recorded): {statistics.median(checks):.2f} s / {min(checks):.2f} s")
    print(
        f"  import of {import_rows} rows (every row posted): {statistics.median(imports):.2f} s / {min(imports):.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--import-rows", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.repeat, args.import_rows))
