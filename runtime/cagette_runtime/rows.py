"""Rows into records: one way to build a dataclass or a Pydantic model from a database row whose
columns carry the record's field names, instead of a constructor that repeats every name twice."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Row

RecordT = TypeVar("RecordT")


# Field names by class, worked out once: record() runs per request (auth) and per row.
_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """The fields a record class is built from: a dataclass's fields or a Pydantic model's."""
    names = _FIELDS.get(cls)
    if names is None:
        if dataclasses.is_dataclass(cls):
            names = tuple(field.name for field in dataclasses.fields(cls) if field.init)
        elif issubclass(cls, BaseModel):
            names = tuple(cls.model_fields)
        else:
            raise TypeError(f"{cls.__name__} is neither a dataclass nor a Pydantic model")
        _FIELDS[cls] = names
    return names


def record(cls: type[RecordT], row: Row[Any] | Mapping[str, Any], /, **overrides: Any) -> RecordT:
    """`cls` built from the row's columns of the same names; `overrides` give the fields the row
    names otherwise or computes (a field neither in the row nor in `overrides` keeps its default)."""
    columns = row._mapping if isinstance(row, Row) else row
    values = {name: columns[name] for name in field_names(cls) if name in columns and name not in overrides}
    return cls(**values, **overrides)
