"""A demo group a newcomer can sign in to at once (`make demo`, `python -m cagette_web demo`):
a coordinator, four members, a producer's catalog, a subscription contract, three weekly
distributions and two orders waiting for the first one's validation.

Everything is created through the services' own APIs, as a platform administrator and then as
each person (tokens signed by this web service), so the demo holds exactly what the product
would: the ledger, payments and notifications hear of it by their events. Only the passwords
are set here directly, through the same single-use links the invitation emails carry. Refused
in production mode.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, urlparse
from uuid import UUID

import httpx

from cagette_contracts import Language
from cagette_runtime import clock
from cagette_runtime.errors import Invalid

from . import seeding, store, usecases
from .app import WebService
from .domain import PASSWORD_RESET
from .seeding import Joining, Product

DEMO_PASSWORD = "demo-cagette-2026"
ADMIN = ("admin@example.org", "Admin Démo")
COORDINATOR = ("claire@example.org", "Claire Martin")
MEMBERS = [
    ("alice@example.org", "Alice Dupont"),
    ("bruno@example.org", "Bruno Petit"),
    ("chloe@example.org", "Chloé Bernard"),
    ("david@example.org", "David Moreau"),
]
# A valid French test IBAN (the checksum is right; no real account behind it).
DEMO_IBAN = "FR7630006000011234567890189"


@dataclass
class Demo:
    group_id: UUID
    group_name: str
    people: dict[str, UUID] = field(default_factory=dict)

    def summary(self, public_url: str) -> str:
        lines = [
            f"Demo group '{self.group_name}' ({self.group_id}) is ready.",
            f"Open {public_url.rstrip('/')}/sign-in and sign in with the password '{DEMO_PASSWORD}' as:",
            f"  coordinator   {COORDINATOR[0]}   ({COORDINATOR[1]}: balances, distributions, settings)",
        ]
        lines += [f"  member        {email}   ({name})" for email, name in MEMBERS]
        lines.append(f"  administrator {ADMIN[0]}")
        return "\n".join(lines)


class DemoRefused(Invalid):
    pass


async def _set_password(service: WebService, account_id: UUID) -> None:
    async with service.database.transaction() as session:
        link, _ = await usecases.new_link(session, service.settings, account_id, PASSWORD_RESET)
    token = parse_qs(urlparse(link).query)["token"][0]
    await usecases.set_password(service.database, token, DEMO_PASSWORD, DEMO_PASSWORD)


async def _wait_for_account(service: WebService, email: str, timeout: float = 30.0) -> UUID:
    """Web creates a member's account when it consumes orders' `member.joined`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with service.database.transaction() as session:
            account = await store.account_by_email(session, email)
        if account is not None:
            return account.account_id
        if asyncio.get_running_loop().time() > deadline:
            raise DemoRefused(f"web has not heard of {email} from orders within {timeout:.0f}s: is orders running?")
        await asyncio.sleep(0.2)


async def _bearer(service: WebService, account_id: UUID) -> dict[str, str]:
    token = await usecases.person_token(service.database, service.keys, service.settings, account_id)
    return {"Authorization": f"Bearer {token.access_token}"}


async def existing_demo(service: WebService, group_name: str) -> Demo | None:
    """The demo group an earlier run created (its coordinator's first group), if any."""
    async with service.database.transaction() as session:
        coordinator = await store.account_by_email(session, COORDINATOR[0])
        if coordinator is None:
            return None
        roles = await store.current_roles(session, coordinator.account_id)
        groups = sorted(str(group) for group, role in roles.items() if role == "coordinator")
        if not groups:
            return None
        demo = Demo(UUID(groups[0]), group_name)
        for email, _name in [COORDINATOR, *MEMBERS]:
            account = await store.account_by_email(session, email)
            if account is not None:
                demo.people[email] = account.account_id
    return demo


async def seed_demo(service: WebService, *, group_name: str = "AMAP des Lilas", new: bool = False) -> Demo:
    """The demo group: the one an earlier run created, unless `new` (then another one)."""
    if service.settings.production:
        raise DemoRefused("the demo is for development machines only: refused in production mode")
    if not new and (found := await existing_demo(service, group_name)) is not None:
        return found
    link = await usecases.create_admin(service.database, service.settings, ADMIN[0], ADMIN[1], Language.FR)
    token = parse_qs(urlparse(link).query)["token"][0]
    admin_id = await usecases.set_password(service.database, token, DEMO_PASSWORD, DEMO_PASSWORD)
    async with httpx.AsyncClient(base_url=service.settings.web_orders_url, timeout=15) as orders:
        admin = await _bearer(service, admin_id)
        group_id = await seeding.create_group(
            orders,
            admin,
            group_name,
            language="fr",
            payments_enabled=True,
            payment_methods=["cheque", "transfer", "cash"],
            cheque_payee=group_name,
            transfer_iban=DEMO_IBAN,
            transfer_bic="AGRIFRPP",
        )
        demo = Demo(group_id, group_name)
        for (email, name), role in [(COORDINATOR, "coordinator"), *((member, "member") for member in MEMBERS)]:
            demo.people[email] = await seeding.add_member(orders, admin, group_id, Joining(name, email, role))
        for email in [COORDINATOR[0], *(member[0] for member in MEMBERS)]:
            await _wait_for_account(service, email)
            await _set_password(service, demo.people[email])
        await _catalogs_and_orders(service, orders, demo)
    return demo


FARM = [
    Product("Panier de légumes", 1550),
    Product("Œufs (boîte de 6)", 320),
    Product("Pain de campagne", 410),
    Product("Pommes", 280, unit="kg"),
]


async def _catalogs_and_orders(service: WebService, orders: httpx.AsyncClient, demo: Demo) -> None:
    coordinator = await _bearer(service, demo.people[COORDINATOR[0]])
    farm = await seeding.add_catalog(orders, coordinator, demo.group_id, "Ferme du Pré", FARM, kind="variable")
    contract = await seeding.add_catalog(
        orders,
        coordinator,
        demo.group_id,
        "Contrat légumes d'hiver",
        [Product("Panier hebdomadaire", 1200)],
        kind="subscription",
    )
    first_day = (clock.now() + timedelta(days=3)).replace(hour=17, minute=0, second=0, microsecond=0)
    distributions = [
        await seeding.add_distribution(
            orders,
            coordinator,
            demo.group_id,
            [farm.catalog_id, contract.catalog_id],
            place="Préau de l'école Jean Jaurès",
            starts_at=first_day + timedelta(weeks=week),
        )
        for week in range(3)
    ]
    vegetables, eggs, bread, _apples = farm.product_ids
    for (email, _name), method, lines in [
        (MEMBERS[0], "cheque", [(vegetables, "1"), (eggs, "2")]),
        (MEMBERS[1], "transfer", [(vegetables, "1"), (bread, "1")]),
    ]:
        seeding.checked(
            await orders.post(
                f"/groups/{demo.group_id}/orders",
                # One key per demo order: the demo is created once (Idempotency-Key, runtime/idempotency.py).
                headers={**await _bearer(service, demo.people[email]), "Idempotency-Key": f"demo-order-{email}"},
                json=seeding.order_body(distributions[0], method, lines),
            )
        )
