import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from cagette_contracts import Event, Money, OrderConfirmed, OrderLine, PaymentMethod, UnknownEvent, event_class, routing
from cagette_contracts.__main__ import schema_documents

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def line(quantity: str = "2", unit: int = 320) -> dict:
    price = Money(amount=unit, currency="EUR")
    from cagette_contracts import line_amount

    return {
        "product_name": "Oeufs x6",
        "quantity": quantity,
        "unit_price": price.model_dump(),
        "line_total": line_amount(Decimal(quantity), price).model_dump(),
    }


def order(**overrides: object) -> dict:
    data = {
        "group_id": str(uuid.uuid4()),
        "order_id": str(uuid.uuid4()),
        "member_id": str(uuid.uuid4()),
        "payment_method": "cheque",
        "lines": [line()],
        "total": {"amount": 640, "currency": "EUR"},
    }
    return data | overrides


def test_envelope_defaults_and_routing_key() -> None:
    event = OrderConfirmed.model_validate(order())
    assert event.event_type == routing.ORDER_CONFIRMED == OrderConfirmed.routing_key()
    assert event.schema_version == 1
    assert event.occurred_at.tzinfo is not None and event.occurred_at.utcoffset() == timedelta(0)
    assert isinstance(event.event_id, uuid.UUID)
    assert event.correlation_id
    round_trip = OrderConfirmed.model_validate_json(event.model_dump_json())
    assert round_trip == event


def test_occurred_at_is_converted_to_utc_and_naive_refused() -> None:
    paris = timezone(timedelta(hours=1))
    event = OrderConfirmed.model_validate(order(occurred_at=datetime(2026, 1, 1, 13, 0, tzinfo=paris)))
    assert event.occurred_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert event.occurred_at.tzinfo == UTC
    with pytest.raises(ValidationError, match="timezone"):
        OrderConfirmed.model_validate(order(occurred_at="2026-01-01T12:00:00"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"total": {"amount": 641, "currency": "EUR"}}, "differs from the sum of its lines"),
        ({"total": {"amount": 640.0, "currency": "EUR"}}, "got float"),
        ({"lines": []}, "at least 1 item"),
        ({"lines": [line() | {"line_total": {"amount": 1, "currency": "EUR"}}]}, "differs from quantity x unit price"),
        ({"lines": [line(quantity="0")]}, "greater than 0"),
        ({"payment_method": "bitcoin"}, "payment_method"),
        ({"correlation_id": "has spaces"}, "correlation_id"),
        ({"group_id": "not-a-uuid"}, "group_id"),
        ({"total": {"amount": 640, "currency": "CHF"}}, "cannot combine amounts in CHF and EUR"),
    ],
)
def test_order_confirmed_refuses_bad_content(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OrderConfirmed.model_validate(order(**overrides))


def test_consumers_ignore_unknown_fields_added_within_a_version() -> None:
    event = OrderConfirmed.model_validate(order(new_optional_field="later addition"))
    assert not hasattr(event, "new_optional_field")


def test_registry_finds_each_event_by_type_and_version() -> None:
    assert event_class(routing.ORDER_CONFIRMED, 1) is OrderConfirmed
    with pytest.raises(UnknownEvent, match="version 2"):
        event_class(routing.ORDER_CONFIRMED, 2)
    for (event_type, _version), cls in Event.registry.items():
        if cls.__module__.startswith("cagette_contracts"):
            assert event_type.split(".")[0] in {"orders", "ledger", "payments", "notifications", "web"}
            assert len(event_type.split(".")) == 3, event_type


def test_exported_json_schemas_are_up_to_date() -> None:
    """Run `make schemas` after changing a contract; this fails until the repo has them."""
    documents = schema_documents()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in SCHEMAS.glob("*.json")}
    assert sorted(on_disk) == sorted(documents)
    for name, text in documents.items():
        assert on_disk[name] == text, f"{name} is stale: run `make schemas`"
        schema = json.loads(text)
        assert schema["x-routing-key"] == name.rsplit(".v", 1)[0]


def test_order_line_in_event_matches_the_one_rounding_rule() -> None:
    item = OrderLine.model_validate(line(quantity="0.333", unit=1999))
    assert item.line_total == Money(amount=666, currency="EUR")
    assert PaymentMethod("money_pot") is PaymentMethod.MONEY_POT
