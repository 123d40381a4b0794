"""The exported JSON Schemas, checked with jsonschema (not Pydantic) as an outside subscriber
would: events captured from a run of the services (`captured_events.json`, one per event type
that run published, taken from tests/test_events_e2e.py's subscriber) validate, and copies
broken in one way each (envelope field missing, offset timestamp, lower-case or unknown currency,
fractional or out-of-range amount, negative total, value outside a closed set...) do not.
tests/test_events_e2e.py does the same with every event of a live run."""

import json
from pathlib import Path

import pytest

from cagette_contracts import Event
from cagette_contracts.envelope import ENVELOPE_FIELDS
from cagette_runtime.testing import PublishedSchemas, broken_copies

CAPTURED = json.loads((Path(__file__).parent / "captured_events.json").read_text(encoding="utf-8"))
SCHEMAS = PublishedSchemas()


def test_every_schema_declares_its_dialect_a_stable_id_and_requires_the_envelope() -> None:
    assert len(SCHEMAS.validators) == len([c for c in Event.registry.values() if c.__module__.startswith("cagette_")])
    for (event_type, version), validator in SCHEMAS.validators.items():
        schema = validator.schema
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"urn:cagette:event:{event_type}:v{version}"
        assert set(ENVELOPE_FIELDS) <= set(schema["required"])


@pytest.mark.parametrize("body", CAPTURED, ids=[body["event_type"] for body in CAPTURED])
def test_captured_event_validates_and_each_broken_copy_fails(body: dict) -> None:
    assert SCHEMAS.errors(body) == []
    copies = broken_copies(body)
    assert len(copies) >= len(ENVELOPE_FIELDS) + 5
    for what, copy in copies:
        assert SCHEMAS.errors(copy), f"{body['event_type']}: {what} validated"


def test_the_schemas_refuse_what_the_issue_found_accepted() -> None:
    [order] = [body for body in CAPTURED if body["event_type"] == "orders.order.confirmed"]
    for currency in ("eur", "Euro", "EURO"):
        assert SCHEMAS.errors(order | {"total": {"amount": order["total"]["amount"], "currency": currency}})
    assert SCHEMAS.errors(order | {"total": {"amount": -1465, "currency": "EUR"}})
    assert SCHEMAS.errors(order | {"occurred_at": "2026-12-01T23:10:00+02:00"})
    assert SCHEMAS.errors({key: value for key, value in order.items() if key != "correlation_id"})
    [posted] = [body for body in CAPTURED if body["event_type"] == "ledger.transaction.posted"]
    assert SCHEMAS.errors(posted | {"kind": "whatever"})
    # 1465.0 is the same JSON number as 1465 for any JSON Schema validator; our consumers
    # (Pydantic, strict) refuse it, and our producers never write it (docs/events.md).
    assert SCHEMAS.errors(order | {"total": {"amount": 1465.5, "currency": "EUR"}})


def test_catalog_product_and_distribution_schemas_refuse_what_their_contracts_forbid() -> None:
    by_type = {body["event_type"]: body for body in CAPTURED}
    catalog, product, distribution = (
        by_type[f"orders.{name}.created"] for name in ("catalog", "product", "distribution")
    )
    priced = catalog["products"][0]
    for bad in ({"amount": -350, "currency": "EUR"}, {"amount": 350, "currency": "euro"}, {"amount": 3.5}):
        assert SCHEMAS.errors(catalog | {"products": [priced | {"unit_price": bad}]})
    for fee_rate in ("-0.02", "2%", 0.02, "0.12345"):
        assert SCHEMAS.errors(product | {"product": product["product"] | {"fee_rate": fee_rate}})
    assert SCHEMAS.errors(product | {"product": {k: v for k, v in product["product"].items() if k != "unit_price"}})
    assert SCHEMAS.errors(distribution | {"catalogs": []})
    assert SCHEMAS.errors({k: v for k, v in distribution.items() if k != "place"})
    assert SCHEMAS.errors(distribution | {"starts_at": "2026-12-05T17:00:00"})  # no time zone
