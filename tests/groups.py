"""A group set up over orders' HTTP API for an end-to-end test: created by a platform
administrator, its people added by them, its catalogs and distributions made by its
coordinator, with tokens signed by the development key (conftest.bearer). The steps are the
demo's and the benchmark's (cagette_web.seeding); a step orders refuses fails the test."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from cagette_web import seeding
from cagette_web.seeding import Catalog, Joining, Product, order_body

from .conftest import bearer

__all__ = ["Catalog", "Group", "Product", "order_body"]


@dataclass
class Group:
    orders: httpx.AsyncClient
    group_id: uuid.UUID
    admin_id: uuid.UUID = field(default_factory=uuid.uuid4)
    coordinator_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @classmethod
    async def create(cls, orders: httpx.AsyncClient, name: str, **settings: object) -> Group:
        """A new group in euros (settings as `POST /groups` takes them), its coordinator not a member yet."""
        admin_id = uuid.uuid4()
        group_id = await seeding.create_group(orders, bearer(admin_id, admin=True), name, **settings)
        return cls(orders, group_id, admin_id)

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.admin_id, admin=True)

    @property
    def coordinator(self) -> dict[str, str]:
        return bearer(self.coordinator_id, coordinator_of=self.group_id)

    def member(self, member_id: uuid.UUID) -> dict[str, str]:
        return bearer(member_id, member_of=self.group_id)

    async def join(
        self, name: str, *, member_id: uuid.UUID | None = None, role: str | None = None, email: str | None = None
    ) -> uuid.UUID:
        """Someone joins (by default as a member, a new id, the e-mail `<name>@example.org`)."""
        joining = Joining(name, email or f"{name.lower()}@example.org", role, member_id or uuid.uuid4())
        return await seeding.add_member(self.orders, self.admin, self.group_id, joining)

    async def join_coordinator(self, name: str, *, email: str | None = None) -> uuid.UUID:
        """The coordinator joins the group as its coordinator (orders then knows their name and e-mail)."""
        return await self.join(name, member_id=self.coordinator_id, role="coordinator", email=email)

    async def catalog(self, name: str, products: Sequence[Product], *, kind: str | None = None) -> Catalog:
        return await seeding.add_catalog(self.orders, self.coordinator, self.group_id, name, products, kind=kind)

    async def distribution(self, catalogs: Iterable[Catalog], place: str, *, starts_at: datetime | None = None) -> str:
        """A distribution of those catalogs, by default in three days."""
        catalog_ids = [catalog.catalog_id for catalog in catalogs]
        return await seeding.add_distribution(
            self.orders, self.coordinator, self.group_id, catalog_ids, place=place, starts_at=starts_at
        )

    async def order(
        self, member_id: uuid.UUID, distribution_id: str, payment_method: str, lines: Iterable[tuple[str, str]]
    ) -> httpx.Response:
        """The member's order, as orders answered it (the test checks the status it expects)."""
        return await self.orders.post(
            f"/groups/{self.group_id}/orders",
            headers=self.member(member_id),
            json=order_body(distribution_id, payment_method, lines),
        )
