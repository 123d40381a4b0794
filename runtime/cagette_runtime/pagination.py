"""One pagination convention for every list that grows.

A list takes `limit` (page size, bounded) and `cursor` (opaque, from the previous page) in its
query string. Rows come in a stable order on a unique key (keyset pagination: no page skips or
repeats a row while others are added). The answer's body stays the list itself; the
`X-Next-Cursor` header (and a `Link: <...>; rel="next"`) gives the next page and is absent on the
last one; `X-Total-Count` gives the total where it is cheap.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Depends, Query, Request, Response
from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.types import DateTime, Integer, Uuid

from cagette_contracts.inputs import INT64_MAX, UtcDatetime

from .errors import Invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
NEXT_CURSOR_HEADER = "X-Next-Cursor"
TOTAL_COUNT_HEADER = "X-Total-Count"

# The OpenAPI description of the headers of a paginated answer.
PAGE_HEADERS: dict[str, Any] = {
    NEXT_CURSOR_HEADER: {
        "description": "Pass as `cursor` for the next page; absent on the last page",
        "schema": {"type": "string"},
    },
    "Link": {"description": 'The next page, as `<url>; rel="next"`', "schema": {"type": "string"}},
    TOTAL_COUNT_HEADER: {
        "description": "How many rows all pages hold, where it is cheap",
        "schema": {"type": "integer"},
    },
}
PAGINATED: dict[int | str, dict[str, Any]] = {200: {"headers": PAGE_HEADERS}}

Row = TypeVar("Row")


def encode_cursor(values: Sequence[object]) -> str:
    text = json.dumps([v.isoformat() if isinstance(v, datetime) else str(v) for v in values])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str, columns: Sequence[ColumnElement[Any]]) -> tuple[object, ...]:
    refused = Invalid("the cursor is not valid: pass the X-Next-Cursor of the previous page")
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise refused from None
    if not isinstance(values, list) or len(values) != len(columns) or not all(isinstance(v, str) for v in values):
        raise refused
    typed: list[object] = []
    for value, column in zip(values, columns, strict=True):
        try:
            if isinstance(column.type, Uuid):
                typed.append(UUID(value))
            elif isinstance(column.type, DateTime):
                from pydantic import TypeAdapter

                typed.append(TypeAdapter(UtcDatetime).validate_python(value))
            elif isinstance(column.type, Integer):
                number = int(value) if value.isascii() and value.lstrip("-").isdigit() else None
                if number is None or abs(number) > INT64_MAX:
                    raise ValueError(value)
                typed.append(number)
            else:
                typed.append(value)
        except ValueError:
            raise refused from None
    return tuple(typed)


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str | None
    request: Request

    def apply(self, query: Select[Any], *columns: ColumnElement[Any], newest_first: bool = False) -> Select[Any]:
        """`query` ordered by `columns` (together unique; descending with `newest_first`), after
        the cursor, one row more than a page (to know whether there is a next one)."""
        if self.cursor is not None:
            after = _decode(self.cursor, columns)
            # (a, b) > (x, y) spelled out, so each column keeps its own type.
            conditions = [
                and_(
                    *(c == v for c, v in zip(columns[:i], after[:i], strict=True)),
                    columns[i] < after[i] if newest_first else columns[i] > after[i],
                )
                for i in range(len(columns))
            ]
            query = query.where(or_(*conditions))
        order = [c.desc() for c in columns] if newest_first else list(columns)
        return query.order_by(*order).limit(self.limit + 1)

    def finish(
        self, rows: Sequence[Row], key: Callable[[Row], Sequence[object]], response: Response, total: int | None = None
    ) -> list[Row]:
        """The page's rows; sets the next-page headers on `response` when there are more."""
        page = list(rows[: self.limit])
        if len(rows) > self.limit:
            cursor = encode_cursor(key(page[-1]))
            response.headers[NEXT_CURSOR_HEADER] = cursor
            next_url = self.request.url.include_query_params(cursor=cursor, limit=self.limit)
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        if total is not None:
            response.headers[TOTAL_COUNT_HEADER] = str(total)
        return page


def page_request(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None,
        Query(max_length=512, pattern="^[A-Za-z0-9_-]+$", description="X-Next-Cursor of the previous page"),
    ] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor, request=request)


Page = Annotated[PageRequest, Depends(page_request)]
