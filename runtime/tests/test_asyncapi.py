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
    assert document["asyncapi"] == "3.1.0"
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


def test_document_names_the_servers_headers_and_correlation_id_without_credentials() -> None:
    document = asyncapi_document("payments", {}, amqp_url="amqp://user:s3cr3t-pw@rabbit.example:5671/prod")
    assert document["servers"]["broker"]["host"] == "rabbit.example:5671" and "s3cr3t-pw" not in str(document)
    message = document["components"]["messages"]["PaymentReceivedV1"]
    assert message["correlationId"]["location"] == "$message.payload#/correlation_id"
    headers = message["headers"]["properties"]
    assert headers["x-event-type"]["const"] == "payments.payment.received" and "traceparent" in headers
    assert document["channels"]["eventLog"]["address"] == "cagette.events.log"
