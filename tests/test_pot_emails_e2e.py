"""B7 on the running services: the balance a money-pot order email states is the ledger's
balance right after it posted that order, however many orders race.

Six concurrent pot orders of 7.00 against 20.00 (negative pots refused): two are accepted, and
their emails state 13,00 € and 6,00 €, exactly the ledger's balance after each order; twenty
times over. The emails are read as sent, from a real SMTP server (the `make run` mail catcher)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cagette_runtime.devstack import Stack, start_mail_catcher
from cagette_runtime.mailcatcher import MailCatcher
from cagette_runtime.testing import IsolatedServers

from .conftest import client, eventually, running_stack
from .test_money_pot_e2e import PotGroup

RUNS = 20
# Babel puts a no-break space before the euro sign and between thousands.
BALANCE_LINE = re.compile(r"Votre solde après cette commande\s*:\s*([-\u2212]?[\d\s]*\d,\d\d)\s*€")


@pytest.fixture(scope="module")
async def mail(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MailCatcher]:
    catcher = await start_mail_catcher(tmp_path_factory.mktemp("mail"))
    try:
        yield catcher
    finally:
        await catcher.stop()


@pytest.fixture(scope="module")
async def mailing_stack(servers: IsolatedServers, mail: MailCatcher) -> AsyncIterator[Stack]:
    smtp = {"CAGETTE_SMTP_HOST": mail.host, "CAGETTE_SMTP_PORT": str(mail.port), "CAGETTE_SMTP_POLL_INTERVAL": "0.2"}
    async with running_stack(servers, "b7", ("orders", "ledger", "notifications"), extra_env=smtp) as running:
        yield running


def stated_balances(directory: Path, member_id: uuid.UUID) -> list[int]:
    """The balances the member's order emails state, in cents."""
    found = []
    for path in directory.glob(f"*-order_confirmed-{member_id.hex[:8]}@example.org.txt"):
        match = BALANCE_LINE.search(path.read_text(encoding="utf-8"))
        assert match, path.read_text(encoding="utf-8")
        figure = match.group(1)
        found.append(int(re.sub(r"\D", "", figure)) * (-1 if figure[0] in "-\u2212" else 1))
    return sorted(found)


async def six_racing_orders(group: PotGroup, mail: MailCatcher) -> tuple[list[int], list[int]]:
    """A new member with 20.00 places six pot orders of 7.00 at once: the ledger's balances after
    the two accepted ones, and the balances their emails state."""
    member_id, member = await group.join()
    await group.top_up(member_id, 2000)
    placed = await asyncio.gather(*(group.order(member, "1", d) for d in range(6)))
    assert sorted(r.status_code for r in placed) == [201, 201, 409, 409, 409, 409], [r.text for r in placed]

    async def order_entries() -> list[dict[str, Any]] | None:
        response = await group.ledger.get(f"/groups/{group.group_id}/members/{member_id}/statement", headers=member)
        entries = [e for e in response.json().get("entries", []) if e["kind"] == "order"]
        return entries if len(entries) == 2 else None

    posted = sorted(e["balance_after"]["amount"] for e in await eventually(order_entries))

    async def two_emails() -> list[int] | None:
        stated = stated_balances(mail.directory, member_id)
        return stated if len(stated) == 2 else None

    return posted, await eventually(two_emails)


async def test_each_pot_order_email_states_the_ledgers_balance_after_it(
    mailing_stack: Stack, mail: MailCatcher
) -> None:
    async with client(mailing_stack, "orders") as orders, client(mailing_stack, "ledger") as ledger:
        group = PotGroup(orders, ledger)
        await group.setup(distributions=6)
        for run in range(RUNS):
            posted, stated = await six_racing_orders(group, mail)
            assert posted == [600, 1300], f"run {run + 1}"
            assert stated == posted, f"run {run + 1}: the emails say {stated}, the ledger posted {posted}"
