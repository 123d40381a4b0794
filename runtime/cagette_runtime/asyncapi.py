"""An AsyncAPI 3.0 document per service, built from the contracts: the events it publishes
(routing keys under its name) and the ones its queues consume, with their JSON Schemas."""

from __future__ import annotations

import re
from typing import Any

from cagette_contracts import Event
from cagette_contracts.routing import EVENTS_EXCHANGE


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""
    regex = re.escape(pattern).replace(r"\#", "__HASH__").replace(r"\*", "[^.]+")
    regex = regex.replace(r"\.__HASH__", r"(\.[^.]+)*").replace(r"__HASH__\.", r"([^.]+\.)*").replace("__HASH__", ".*")
    return re.fullmatch(regex, routing_key) is not None


def _published_events() -> list[type[Event]]:
    return [cls for cls in Event.registry.values() if cls.__module__.startswith("cagette_contracts.")]


def asyncapi_document(service: str, consumed: dict[str, tuple[str, ...]], version: str = "1.0.0") -> dict[str, Any]:
    """`consumed` maps each of the service's queue names to its binding patterns."""
    events = _published_events()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}

    def channel_for(cls: type[Event]) -> str:
        name = f"{cls.routing_key()}.v{cls.version()}"
        if name not in channels:
            schema = cls.wire_schema(ref_template="#/components/schemas/{model}")
            schema.pop("$schema")  # the document's schemaFormat says it
            schemas.update(schema.pop("$defs", {}))
            message_name = f"{cls.__name__}V{cls.version()}"
            messages[message_name] = {
                "name": cls.__name__,
                "title": cls.__name__,
                "summary": (cls.__doc__ or "").strip().split("\n")[0],
                "contentType": "application/json",
                "payload": schema,
                "headers": {"type": "object", "properties": {"x-schema-version": {"const": cls.version()}}},
            }
            channels[name] = {
                "address": cls.routing_key(),
                "messages": {message_name: {"$ref": f"#/components/messages/{message_name}"}},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {"name": EVENTS_EXCHANGE, "type": "topic", "durable": True},
                    }
                },
            }
        return name

    for cls in events:
        if cls.routing_key().split(".")[0] == service:
            operations[f"publish.{cls.routing_key()}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel_for(cls)}"},
                "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True}},
            }
    for queue, patterns in consumed.items():
        for cls in events:
            if any(topic_matches(pattern, cls.routing_key()) for pattern in patterns):
                operations[f"{queue}.{cls.routing_key()}"] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{channel_for(cls)}"},
                    "description": f"consumed from the quorum queue {queue} (parking queue {queue}.parking)",
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"cagette {service} events",
            "version": version,
            "description": "Events are JSON, persistent, message_id = event_id; see "
            "docs/events.md for the envelope and compatibility rule.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
