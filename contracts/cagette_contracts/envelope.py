"""The envelope every event carries (ARCHITECTURE, messaging conventions).

Compatibility rule (docs/events.md): within one schema version, changes are additive only (a
new optional field with a default); consumers ignore fields they do not know. Anything else
(removing, renaming, retyping, changing meaning) is a new schema version with its own schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID, uuid4

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Fields every event carries on the wire: required in the exported schemas even though the
# Python constructors fill them in (defaults make them optional in the models).
ENVELOPE_FIELDS = ("event_id", "occurred_at", "group_id", "correlation_id", "event_type", "schema_version")
# What our producers write: UTC with a `Z` (never an offset such as +02:00).
UTC_TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[
    AwareDatetime, AfterValidator(_to_utc), Field(json_schema_extra={"pattern": UTC_TIMESTAMP_PATTERN})
]
CorrelationId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


def new_correlation_id() -> str:
    return uuid4().hex


class Event(BaseModel):
    """Base of every event. Subclasses fix `event_type` (= routing key) and `schema_version`."""

    # Consumers ignore unknown fields so producers may add optional ones within a version.
    model_config = ConfigDict(frozen=True, extra="ignore")

    registry: ClassVar[dict[tuple[str, int], type[Event]]] = {}

    event_id: UUID = Field(default_factory=uuid4, description="Unique id; also the AMQP message_id")
    occurred_at: UtcDatetime = Field(default_factory=utc_now, description="When it happened, UTC")
    group_id: UUID = Field(description="The buying group the event belongs to")
    correlation_id: CorrelationId = Field(
        default_factory=new_correlation_id, description="Follows one user action across services"
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields
        if "event_type" in fields and "schema_version" in fields:
            key = (fields["event_type"].default, fields["schema_version"].default)
            if key in Event.registry:
                raise TypeError(f"event {key} is defined twice")
            Event.registry[key] = cls

    @classmethod
    def schema_id(cls) -> str:
        """The stable `$id` of this event type and version's JSON Schema."""
        return f"urn:cagette:event:{cls.routing_key()}:v{cls.version()}"

    @classmethod
    def wire_schema(cls, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
        """The JSON Schema of the event as it is on the wire (serialization mode), envelope
        required. Other fields with a default stay optional: within a version a field may be
        added (docs/events.md), so an event published before it still validates."""
        schema = cls.model_json_schema(mode="serialization", ref_template=ref_template)
        schema["required"] = [
            *ENVELOPE_FIELDS,
            *(name for name in schema.get("required", []) if name not in ENVELOPE_FIELDS),
        ]
        return {"$schema": JSON_SCHEMA_DIALECT, "$id": cls.schema_id(), **schema}

    @classmethod
    def routing_key(cls) -> str:
        return cls.model_fields["event_type"].default

    @classmethod
    def version(cls) -> int:
        return cls.model_fields["schema_version"].default


class UnknownEvent(ValueError):
    pass


def event_class(event_type: str, schema_version: int) -> type[Event]:
    try:
        return Event.registry[(event_type, schema_version)]
    except KeyError:
        raise UnknownEvent(f"no contract for event {event_type!r} version {schema_version}") from None
