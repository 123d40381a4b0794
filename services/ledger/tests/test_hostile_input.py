"""Inputs that used to break the ledger (500s) or be wrongly accepted: each is a clear 4xx now,
and nothing is recorded."""

from __future__ import annotations

import uuid

import pytest

from .conftest import World, count_rows
from .test_api import joined, url


def csv_upload(world: World, content: bytes):
    return world.client.post(
        f"/groups/{world.group_id}/opening-balances",
        content=content,
        headers={**world.coordinator, "Content-Type": "text/csv"},
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("corrections", {"amount": {"amount": 100, "currency": "EUR"}, "reason": "bad\u0000reason"}),
        ("opening-balance", {"amount": {"amount": 100, "currency": "EUR"}, "memo": "memo\u0000"}),
        ("opening-balance", {"amount": {"amount": 100, "currency": "EUR"}, "surprise": True}),
    ],
)
async def test_nul_characters_and_unknown_fields_are_refused_naming_the_field(
    world: World, path: str, body: dict[str, object]
) -> None:
    member = await joined(world)
    response = await world.client.post(url(world, member, path), json=body, headers=world.coordinator)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][0] == "body"
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0


async def test_a_reversal_reason_with_a_nul_is_refused(world: World) -> None:
    response = await world.client.post(
        f"/groups/{world.group_id}/transactions/{uuid.uuid4()}/reversal",
        json={"reason": "\u0000"},
        headers=world.coordinator,
    )
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["body", "reason"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("statement", {"before": "1180591620717411303424"}),
        ("statement", {"before": "١٢"}),
        ("statement", {"from": "9999-12-31T23:59:59-01:00"}),
        ("statement.csv", {"to": "9999-12-31T23:59:59-01:00"}),
        ("balance-at", {"at": "9999-12-31T23:59:59-01:00"}),
        ("balance-at", {"at": "0001-01-01T00:00:00+01:00"}),
    ],
)
async def test_cursors_and_dates_out_of_range_are_422(world: World, path: str, params: dict[str, str]) -> None:
    member = await joined(world)
    response = await world.client.get(url(world, member, path), params=params, headers=world.coordinator)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"member_id,amount\n{a},\xd9\xa1\xd9\xa2\n", "not an amount"),  # Arabic-Indic 12
        # A bare CR ends a record: what follows it is read as a line of its own.
        (b"member_id,amount,memo\n{a},1.00,bad\rcarriage\n", "line 3: member_id 'carriage' is not a UUID"),
        (b"member_id,amount,memo\n{a},1.00,\x00\n", "control character"),
        (b'member_id,amount,memo\n{a},1.00,"' + b"x" * 200_000 + b'"\n', "not readable as CSV"),
        (b"member_id,amount\n{a}," + b"9" * 5000 + b"\n", "not an amount"),
    ],
)
async def test_opening_balance_csv_that_is_wrong_is_refused_with_the_line(
    world: World, content: bytes, reason: str
) -> None:
    member = await joined(world)
    response = await csv_upload(world, content.replace(b"{a}", str(member).encode()))
    assert response.status_code == 422, response.text
    errors = response.json()["context"]["errors"]
    assert errors[0].startswith(("line 2", "line 3")) and reason in errors[0], errors
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0


async def test_opening_balance_errors_are_listed_compactly_and_checked_in_one_pass(world: World) -> None:
    rows = "".join(f"{uuid.uuid4()},1.00\n" for _ in range(500))
    response = await csv_upload(world, f"member_id,amount\n{rows}".encode())
    assert response.status_code == 422
    context = response.json()["context"]
    assert len(context["errors"]) == 20 and context["more_errors"] == 480
    assert "line 2: unknown account" in context["errors"][0]


async def test_opening_balance_files_are_capped_in_rows(world: World) -> None:
    rows = "".join(f"{uuid.uuid4()},1\n" for _ in range(10_001))
    response = await csv_upload(world, f"member_id,amount\n{rows}".encode())
    assert response.status_code == 422 and "more than 10000" in response.json()["detail"], response.text
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0


async def test_a_body_over_the_limit_is_413(world: World) -> None:
    # A 1 MB JSON body is over the 512 KiB of ordinary requests: refused before it is read.
    correction = await world.client.post(
        f"/groups/{world.group_id}/members/{uuid.uuid4()}/corrections",
        content=b'{"reason": "' + b"x" * 1_000_000 + b'"}',
        headers={**world.coordinator, "Content-Type": "application/json"},
    )
    assert correction.status_code == 413 and correction.json()["error"] == "too_large"
    # File uploads have their own, larger limit (10 MiB): past it, the same 413.
    response = await csv_upload(world, b"member_id,amount\n" + b"x" * 11_000_000)
    assert response.status_code == 413 and response.json()["error"] == "too_large"
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0


async def test_statements_and_member_lists_are_never_cached(world: World) -> None:
    member = await joined(world)
    for path in (url(world, member, "statement"), f"/groups/{world.group_id}/balances"):
        response = await world.client.get(path, headers=world.coordinator)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
