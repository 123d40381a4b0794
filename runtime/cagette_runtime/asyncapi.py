"""An AsyncAPI 3.1 document per service, built from the contracts: the servers, the events it
publishes (routing keys under its name) and the ones its queues consume, with their JSON
Schemas, every AMQP header and property, and the correlation id; plus the event log stream.

`python -m cagette_runtime.asyncapi DIR` writes every service's document into DIR (`make lint`
validates them with the official AsyncAPI CLI)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cagette_contracts import Event
from cagette_contracts.routing import EVENTS_EXCHANGE

from .topology import EVENT_LOG_STREAM

ASYNCAPI_VERSION = "3.1.0"
AMQP_BINDING_VERSION = "0.3.0"
# W3C Trace Context, carried in the AMQP headers when tracing is on.
TRACEPARENT_PATTERN = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""
    regex = re.escape(pattern).replace(r"\#", "__HASH__").replace(r"\*", "[^.]+")
    regex = regex.replace(r"\.__HASH__", r"(\.[^.]+)*").replace(r"__HASH__\.", r"([^.]+\.)*").replace("__HASH__", ".*")
    return re.fullmatch(regex, routing_key) is not None


def _published_events() -> list[type[Event]]:
    return [cls for cls in Event.registry.values() if cls.__module__.startswith("cagette_contracts.")]


def servers(amqp_url: str) -> dict[str, Any]:
    """The broker, without its credentials."""
    parts = urlsplit(amqp_url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return {
        "broker": {
            "host": f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}",
            "protocol": "amqps" if parts.scheme == "amqps" else "amqp",
            "protocolVersion": "0.9.1",
            "description": f"RabbitMQ, virtual host {vhost!r}; events on the durable topic exchange {EVENTS_EXCHANGE}",
        }
    }


def headers_schema(cls: type[Event]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "AMQP headers. Also set as AMQP properties: message_id = event_id, correlation_id = "
        "correlation_id (the body's), content_type application/json, delivery_mode 2 (persistent), "
        "timestamp = when the outbox recorded it.",
        "required": ["x-event-type", "x-schema-version"],
        "properties": {
            "x-event-type": {"type": "string", "const": cls.routing_key(), "description": "= routing key = event_type"},
            "x-schema-version": {"type": "integer", "const": cls.version(), "description": "= schema_version"},
            "traceparent": {
                "type": "string",
                "pattern": TRACEPARENT_PATTERN,
                "description": "W3C Trace Context of the action that caused the event, when tracing is on",
            },
            "tracestate": {"type": "string", "description": "W3C Trace Context vendor state, with traceparent"},
            "x-stream-offset": {
                "type": "integer",
                "description": f"Only when read from the {EVENT_LOG_STREAM} stream: the message's offset",
            },
        },
    }


def asyncapi_document(
    service: str,
    consumed: dict[str, tuple[str, ...]],
    version: str = "1.0.0",
    amqp_url: str = "amqp://127.0.0.1:5672/",
) -> dict[str, Any]:
    """`consumed` maps each of the service's queue names to its binding patterns."""
    events = _published_events()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}

    def message_for(cls: type[Event]) -> str:
        message_name = f"{cls.__name__}V{cls.version()}"
        if message_name not in messages:
            schema = cls.wire_schema(ref_template="#/components/schemas/{model}")
            schema.pop("$schema")  # the document's default schema format says it
            schemas.update(schema.pop("$defs", {}))
            messages[message_name] = {
                "name": cls.__name__,
                "title": cls.__name__,
                "summary": (cls.__doc__ or cls.routing_key()).strip().split("\n")[0],
                "contentType": "application/json",
                "correlationId": {
                    "description": "The id of the action that caused the event (also the AMQP correlation_id)",
                    "location": "$message.payload#/correlation_id",
                },
                "headers": headers_schema(cls),
                "payload": schema,
                "bindings": {"amqp": {"messageType": cls.routing_key(), "bindingVersion": AMQP_BINDING_VERSION}},
            }
        return message_name

    def channel_for(cls: type[Event]) -> str:
        name = f"{cls.routing_key()}.v{cls.version()}"
        if name not in channels:
            message_name = message_for(cls)
            channels[name] = {
                "address": cls.routing_key(),
                "servers": [{"$ref": "#/servers/broker"}],
                "messages": {message_name: {"$ref": f"#/components/messages/{message_name}"}},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {"name": EVENTS_EXCHANGE, "type": "topic", "durable": True, "autoDelete": False},
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }
                },
            }
        return name

    for cls in events:
        if cls.routing_key().split(".")[0] == service:
            channel = channel_for(cls)
            operations[f"publish.{cls.routing_key()}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{message_for(cls)}"}],
                "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING_VERSION}},
            }
    for queue, patterns in consumed.items():
        for cls in events:
            if any(topic_matches(pattern, cls.routing_key()) for pattern in patterns):
                channel = channel_for(cls)
                operations[f"{queue}.{cls.routing_key()}"] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "messages": [{"$ref": f"#/channels/{channel}/messages/{message_for(cls)}"}],
                    "description": f"consumed from the quorum queue {queue} (parking queue {queue}.parking)",
                }
    log_messages = {name: {"$ref": f"#/components/messages/{name}"} for name in sorted(message_for(c) for c in events)}
    channels["eventLog"] = {
        "address": EVENT_LOG_STREAM,
        "title": "The event log",
        "description": "Every event published on cagette.events, kept by age and size: consume with a prefetch, "
        "manual acks and the consumer argument x-stream-offset (first, last, next, an offset or a timestamp). "
        "See docs/events.md.",
        "servers": [{"$ref": "#/servers/broker"}],
        "messages": log_messages,
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {"name": EVENT_LOG_STREAM, "durable": True, "exclusive": False, "autoDelete": False},
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }
    operations["replay.eventLog"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/eventLog"},
        "messages": [{"$ref": f"#/channels/eventLog/messages/{name}"} for name in log_messages],
        "description": "What a subscriber that joins late reads to catch up (examples/replay_balances.py)",
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"cagette {service} events",
            "version": version,
            "description": "Events are JSON, persistent, message_id = event_id, correlation_id = the cause's; "
            "delivered at least once (deduplicate on event_id), ordered per account by sequence only. "
            "See docs/events.md for the guarantees, the envelope and the compatibility rule.",
        },
        "defaultContentType": "application/json",
        "servers": servers(amqp_url),
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


SERVICES = ("orders", "ledger", "payments", "notifications")


def export(directory: Path) -> list[Path]:
    """Every service's document (its queues as the service declares them) into `directory`."""
    from .service import Service

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SERVICES:
        service: Service = importlib.import_module(f"cagette_{name}.app").build_service()
        consumed = {c.queue.name: c.queue.routing_keys for c in service.consumers}
        path = directory / f"{name}.asyncapi.json"
        path.write_text(json.dumps(asyncapi_document(name, consumed), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in export(Path(sys.argv[1] if len(sys.argv) > 1 else "var/asyncapi")):
        print(written_path)
