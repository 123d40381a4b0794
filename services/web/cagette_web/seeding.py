"""A group set up through orders' HTTP API, one checked request a step: the demo (demo.py), the
end-to-end tests (tests/groups.py) and the orders benchmark (bench/orders/run.py) build theirs
with these, so each holds exactly what the product would and the services hear of it by their
events. The caller brings the client and, per step, the headers (a bearer token, maybe an
Idempotency-Key): who acts differs between them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from cagette_runtime import clock
from cagette_runtime.errors import Invalid

Headers = Mapping[str, str]


class SeedRefused(Invalid):
    """orders refused a step: which request, and orders' answer."""


def checked(answer: httpx.Response) -> Any:
    """The answer's body, once orders has taken the request (200 or 201)."""
    if answer.status_code not in (200, 201):
        raise SeedRefused(f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}")
    return answer.json()


@dataclass(frozen=True)
class Product:
    name: str
    unit_price: int  # minor units
    unit: str | None = None  # orders' default unless given
    fee_rate: str | None = None  # a decimal, "0.02": orders' default unless given

    def body(self) -> dict[str, Any]:
        optional = {"unit": self.unit, "fee_rate": self.fee_rate}
        return {
            "name": self.name,
            "unit_price": self.unit_price,
            **{k: v for k, v in optional.items() if v is not None},
        }


@dataclass(frozen=True)
class Catalog:
    catalog_id: str
    product_ids: list[str]  # in the order the products were given


async def create_group(orders: httpx.AsyncClient, headers: Headers, name: str, **settings: Any) -> UUID:
    """A group in euros with the given settings (payment methods, payee, IBAN...)."""
    created = checked(await orders.post("/groups", headers=headers, json={"name": name, "currency": "EUR", **settings}))
    return UUID(created["group_id"])


@dataclass(frozen=True)
class Joining:
    """Someone joining a group: orders picks the id unless given, and its default role unless given."""

    name: str
    email: str
    role: str | None = None
    member_id: UUID | None = None

    def body(self) -> dict[str, Any]:
        given = {"role": self.role, "member_id": str(self.member_id) if self.member_id else None}
        return {"name": self.name, "email": self.email, **{k: v for k, v in given.items() if v is not None}}


async def add_member(orders: httpx.AsyncClient, headers: Headers, group_id: UUID, joining: Joining) -> UUID:
    joined = checked(await orders.post(f"/groups/{group_id}/members", headers=headers, json=joining.body()))
    return UUID(joined["member_id"])


async def add_catalog(
    orders: httpx.AsyncClient,
    headers: Headers,
    group_id: UUID,
    name: str,
    products: Sequence[Product],
    *,
    kind: str | None = None,
) -> Catalog:
    """A producer's catalog (orders' default kind unless given: "variable", "subscription")."""
    body: dict[str, Any] = {"name": name, "products": [product.body() for product in products]}
    if kind is not None:
        body["kind"] = kind
    made = checked(await orders.post(f"/groups/{group_id}/catalogs", headers=headers, json=body))
    return Catalog(made["catalog_id"], [product["product_id"] for product in made["products"]])


async def add_distribution(
    orders: httpx.AsyncClient,
    headers: Headers,
    group_id: UUID,
    catalog_ids: Iterable[str],
    *,
    place: str,
    starts_at: datetime | None = None,
) -> str:
    """A distribution of those catalogs, by default three days from now."""
    body = {
        "starts_at": (starts_at or clock.now() + timedelta(days=3)).isoformat(),
        "place": place,
        "catalog_ids": list(catalog_ids),
    }
    made = checked(await orders.post(f"/groups/{group_id}/distributions", headers=headers, json=body))
    return str(made["distribution_id"])


def order_body(distribution_id: str, payment_method: str, lines: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`POST /groups/{g}/orders`'s body: the basket as (product id, quantity) lines."""
    return {
        "distribution_id": distribution_id,
        "payment_method": payment_method,
        "lines": [{"product_id": product_id, "quantity": quantity} for product_id, quantity in lines],
    }
