"""Catalogs (variable and subscription), products with units and fee rates, distributions, and
the event each of their creations publishes in its own transaction."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from .conftest import Group, OrdersEnv, Unchanged, make_group, now, outbox_rows


async def test_catalog_with_products_units_and_fees(group: Group) -> None:
    products = group.catalog["products"]
    assert [(p["name"], p["unit"], p["unit_price"], p["fee_rate"]) for p in products] == [
        ("Bread", "piece", {"amount": 350, "currency": "EUR"}, "0"),
        ("Cheese", "kg", {"amount": 1999, "currency": "EUR"}, "0.02"),
    ]
    added = await group.client.post(
        group.url(f"/catalogs/{group.catalog['catalog_id']}/products"),
        headers=group.coordinator,
        json={"name": "Milk", "unit_price": 120, "unit": "litre"},
    )
    assert added.status_code == 201, added.text
    _, member = await group.join()
    seen = await group.client.get(group.url(f"/catalogs/{group.catalog['catalog_id']}"), headers=member)
    assert [p["name"] for p in seen.json()["products"]] == ["Bread", "Cheese", "Milk"]


async def test_bad_products_are_refused(group: Group) -> None:
    url = group.url("/catalogs")
    bad = [
        {"name": "X", "products": [{"name": "Free", "unit_price": 0}]},
        {"name": "X", "products": [{"name": "Neg", "unit_price": -5}]},
        {"name": "X", "products": [{"name": "Float", "unit_price": 3.5}]},
        {"name": "X", "products": [{"name": "Dear fee", "unit_price": 100, "fee_rate": "0.9"}]},
        {"name": "X", "products": [{"name": "Grams", "unit_price": 100, "unit": "gram"}]},
        {"name": "X", "kind": "weekly"},
    ]
    async with Unchanged(group.env, group.group_id):
        for body in bad:
            response = await group.client.post(url, json=body, headers=group.coordinator)
            assert response.status_code == 422, (body, response.text)
    _, member = await group.join()
    assert (await group.client.post(url, json={"name": "Mine"}, headers=member)).status_code == 403


async def test_distribution_shows_when_orders_really_close(group: Group) -> None:
    assert group.distribution["open_for_orders"] is True
    assert group.distribution["catalog_ids"] == [group.catalog["catalog_id"]]
    assert (await group.settings(order_cutoff_hours=100)).status_code == 200
    response = await group.client.get(
        group.url(f"/distributions/{group.distribution['distribution_id']}"), headers=group.coordinator
    )
    body = response.json()
    assert body["open_for_orders"] is False  # starts in 3 days, the cut-off is 100 hours before
    assert body["orders_close_with_cutoff"] < body["orders_close_at"]
    listing = await group.client.get(group.url("/distributions"), headers=group.coordinator)
    assert [d["distribution_id"] for d in listing.json()] == [group.distribution["distribution_id"]]


async def test_bad_distributions_are_refused(group: Group) -> None:
    other = await make_group(group.env)
    starts = now() + timedelta(days=2)
    base = {"starts_at": starts.isoformat(), "place": "Grange", "catalog_ids": [group.catalog["catalog_id"]]}
    bad = [
        {**base, "catalog_ids": [other.catalog["catalog_id"]]},  # another group's catalog
        {**base, "catalog_ids": [str(uuid.uuid4())]},
        {**base, "catalog_ids": []},
        {**base, "catalog_ids": [group.catalog["catalog_id"]] * 2},
        {**base, "orders_close_at": (starts + timedelta(hours=1)).isoformat()},
        {
            **base,
            "orders_open_at": (starts - timedelta(hours=1)).isoformat(),
            "orders_close_at": (starts - timedelta(hours=2)).isoformat(),
        },
        {**base, "starts_at": "2026-12-05T17:00:00"},  # no time zone
    ]
    async with Unchanged(group.env, group.group_id):
        for body in bad:
            response = await group.client.post(group.url("/distributions"), json=body, headers=group.coordinator)
            assert response.status_code == 422, (body, response.text)
    _, member = await group.join()
    assert (await group.client.post(group.url("/distributions"), json=base, headers=member)).status_code == 403
    # Another group's distribution is not found here.
    response = await group.client.get(
        group.url(f"/distributions/{other.distribution['distribution_id']}"), headers=group.coordinator
    )
    assert response.status_code == 404


async def test_catalogs_are_listed_by_name_and_filtered_by_kind(group: Group) -> None:
    contract = await group.client.post(
        group.url("/catalogs"),
        headers=group.coordinator,
        json={"name": "AMAP contract", "kind": "subscription", "products": [{"name": "Basket", "unit_price": 1200}]},
    )
    assert contract.status_code == 201, contract.text
    _, member = await group.join()
    listed = await group.client.get(group.url("/catalogs"), headers=member)
    assert listed.status_code == 200, listed.text
    names = [c["name"] for c in listed.json()]
    assert names == sorted(names) and "AMAP contract" in names and group.catalog["name"] in names
    contracts = await group.client.get(group.url("/catalogs"), params={"kind": "subscription"}, headers=member)
    assert [(c["name"], [p["name"] for p in c["products"]]) for c in contracts.json()] == [
        ("AMAP contract", ["Basket"])
    ]
    refused = await group.client.get(group.url("/catalogs"), params={"kind": "weekly"}, headers=member)
    assert refused.status_code == 422
    outsider = await group.client.get(f"/groups/{uuid.uuid4()}/catalogs", headers=member)
    assert outsider.status_code in (403, 404)


# ------------------------------------------------------------------ their events


async def written_together(env: OrdersEnv, table: str, key: str, row_id: str, event_id: str) -> bool:
    """Whether the row and the outbox row were written by one transaction: both take their
    `created_at` from now(), which PostgreSQL fixes per transaction (and moves between them)."""
    async with env.service.database.sessionmaker() as session:
        row = await session.scalar(text(f"SELECT created_at FROM {table} WHERE {key} = :id"), {"id": row_id})
        event = await session.scalar(
            text("SELECT created_at FROM outbox_messages WHERE event_id = :id"), {"id": event_id}
        )
    return row is not None and row == event


def of_key(events: list[dict[str, Any]], routing_key: str) -> list[dict[str, Any]]:
    return [e for e in events if e["routing_key"] == routing_key]


async def test_a_new_catalog_publishes_one_event_with_its_products_in_its_transaction(group: Group) -> None:
    env = group.env
    [created] = of_key(await outbox_rows(env, group.group_id), "orders.catalog.created")
    bread, cheese = group.catalog["products"]
    assert {k: created[k] for k in ("catalog_id", "name", "kind", "products")} == {
        "catalog_id": group.catalog["catalog_id"],
        "name": "Ferme",
        "kind": "variable",
        "products": [
            {
                "product_id": bread["product_id"],
                "name": "Bread",
                "unit": "piece",
                "unit_price": {"amount": 350, "currency": "EUR"},
                "fee_rate": "0",
            },
            {
                "product_id": cheese["product_id"],
                "name": "Cheese",
                "unit": "kg",
                "unit_price": {"amount": 1999, "currency": "EUR"},
                "fee_rate": "0.02",
            },
        ],
    }
    assert await written_together(env, "catalogs", "catalog_id", created["catalog_id"], created["event_id"])
    await env.spy.wait_for("orders.catalog.created", catalog_id=group.catalog["catalog_id"])

    before = await outbox_rows(env, group.group_id)
    contract = await group.client.post(
        group.url("/catalogs"),
        headers={**group.coordinator, "X-Correlation-ID": "new-contract-1"},
        json={"name": " Paniers ", "kind": "subscription", "products": [{"name": "Panier", "unit_price": 1200}]},
    )
    assert contract.status_code == 201, contract.text
    [published] = (await outbox_rows(env, group.group_id))[len(before) :]
    assert published["routing_key"] == "orders.catalog.created"
    assert published["correlation_id"] == "new-contract-1"
    assert (published["catalog_id"], published["name"], published["kind"]) == (
        contract.json()["catalog_id"],
        "Paniers",
        "subscription",
    )
    assert [p["product_id"] for p in published["products"]] == [p["product_id"] for p in contract.json()["products"]]


async def test_an_added_product_publishes_one_event_in_its_transaction(group: Group) -> None:
    env = group.env
    before = await outbox_rows(env, group.group_id)
    added = await group.client.post(
        group.url(f"/catalogs/{group.catalog['catalog_id']}/products"),
        headers={**group.coordinator, "X-Correlation-ID": "add-milk"},
        json={"name": "Milk", "unit_price": 120, "unit": "litre", "fee_rate": "0.0150"},
    )
    assert added.status_code == 201, added.text
    [published] = (await outbox_rows(env, group.group_id))[len(before) :]
    assert published["routing_key"] == "orders.product.created"
    assert published["correlation_id"] == "add-milk"
    assert published["catalog"] == {"catalog_id": group.catalog["catalog_id"], "name": "Ferme", "kind": "variable"}
    assert published["product"] == {
        "product_id": added.json()["product_id"],
        "name": "Milk",
        "unit": "litre",
        "unit_price": {"amount": 120, "currency": "EUR"},
        "fee_rate": "0.015",
    }
    assert await written_together(env, "products", "product_id", added.json()["product_id"], published["event_id"])
    await env.spy.wait_for("orders.product.created", event_id=published["event_id"])
    # A refused product writes no event (nor a row).
    async with Unchanged(env, group.group_id):
        refused = await group.client.post(
            group.url(f"/catalogs/{group.catalog['catalog_id']}/products"),
            headers=group.coordinator,
            json={"name": "Free", "unit_price": 0},
        )
        assert refused.status_code == 422


async def test_a_new_distribution_publishes_one_event_with_its_catalogs_in_its_transaction(group: Group) -> None:
    env = group.env
    [first] = of_key(await outbox_rows(env, group.group_id), "orders.distribution.created")
    assert first["distribution_id"] == group.distribution["distribution_id"]
    contract = await group.client.post(
        group.url("/catalogs"), headers=group.coordinator, json={"name": "AMAP", "kind": "subscription"}
    )
    before = await outbox_rows(env, group.group_id)
    distribution = await group.new_distribution([contract.json()["catalog_id"], group.catalog["catalog_id"]])
    [published] = (await outbox_rows(env, group.group_id))[len(before) :]
    assert published["routing_key"] == "orders.distribution.created"
    assert published["distribution_id"] == distribution["distribution_id"]
    assert published["place"] == "La grange"
    assert published["catalogs"] == [
        {"catalog_id": contract.json()["catalog_id"], "name": "AMAP", "kind": "subscription"},
        {"catalog_id": group.catalog["catalog_id"], "name": "Ferme", "kind": "variable"},
    ]
    for name in ("starts_at", "orders_open_at", "orders_close_at"):
        assert published[name].endswith("Z")
        assert datetime.fromisoformat(published[name]) == datetime.fromisoformat(distribution[name])
    assert await written_together(
        env, "distributions", "distribution_id", distribution["distribution_id"], published["event_id"]
    )
    await env.spy.wait_for("orders.distribution.created", distribution_id=distribution["distribution_id"])
