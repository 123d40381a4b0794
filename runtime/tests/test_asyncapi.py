import pytest

from cagette_runtime.asyncapi import asyncapi_document, topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("orders.order.confirmed", "orders.order.confirmed", True),
        ("orders.*.confirmed", "orders.order.confirmed", True),
        ("orders.*", "orders.order.confirmed", False),
        ("orders.#", "orders.order.confirmed", True),
        ("#", "ledger.balance.changed", True),
        ("#.changed", "ledger.balance.changed", True),
        ("payments.#", "orders.order.confirmed", False),
        ("orders.order.confirmed", "orders.order.amended", False),
    ],
)
def test_topic_matching_follows_amqp_rules(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_document_lists_what_a_service_publishes_and_consumes() -> None:
    document = asyncapi_document("ledger", {"ledger.postings": ("orders.order.confirmed",)})
    assert document["asyncapi"] == "3.0.0"
    operations = document["operations"]
    assert operations["publish.ledger.balance.changed"]["action"] == "send"
    assert operations["ledger.postings.orders.order.confirmed"]["action"] == "receive"
    assert not any(key.startswith("publish.orders") for key in operations)
    channel = document["channels"]["orders.order.confirmed.v1"]
    assert channel["address"] == "orders.order.confirmed"
    assert channel["bindings"]["amqp"]["exchange"]["name"] == "cagette.events"
    # Every $ref resolves inside the document.
    text = str(document)
    for ref in {part.split("'")[0] for part in text.split("'$ref': '")[1:]}:
        node = document
        for step in ref.removeprefix("#/").split("/"):
            node = node[step]
    assert "Money" in document["components"]["schemas"]
