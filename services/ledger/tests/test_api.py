"""HTTP: reading (balances, statements, as-of, group page, CSV), adjustments (opening balances,
CSV import, corrections, reversals), auth, and bad inputs that must change nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime

import pytest

from cagette_contracts import PaymentDeclared, PaymentMethod, PaymentReceived, Role
from cagette_ledger import api as ledger_api

from .conftest import World, count_rows, token


def url(world: World, member: uuid.UUID, path: str) -> str:
    return f"/groups/{world.group_id}/members/{member}/{path}"


async def joined(world: World) -> uuid.UUID:
    from cagette_contracts import MemberJoined

    member = uuid.uuid4()
    await world.deliver(
        MemberJoined(group_id=world.group_id, member_id=member, role=Role.MEMBER, name="M", email="m@example.org")
    )
    return member


async def test_member_reads_own_account_only_and_coordinator_their_group(world: World) -> None:
    member, other = await joined(world), await joined(world)
    assert (await world.client.get(url(world, member, "balance"), headers=world.member(member))).status_code == 200
    for path in ("balance", "statement", "statement.csv", "balance-at?at=2026-01-01T00:00:00Z"):
        response = await world.client.get(url(world, other, path), headers=world.member(member))
        assert response.status_code == 403, path
        assert response.json()["error"] == "forbidden"
    assert (
        await world.client.get(f"/groups/{world.group_id}/balances", headers=world.member(member))
    ).status_code == 403
    stranger = token(world.settings, uuid.uuid4(), {uuid.uuid4(): Role.COORDINATOR})
    assert (await world.client.get(url(world, member, "balance"), headers=stranger)).status_code == 403
    assert (await world.client.get(f"/groups/{world.group_id}/balances.csv", headers=stranger)).status_code == 403
    assert (await world.client.get(url(world, member, "balance"))).status_code == 401
    assert (await world.client.get(url(world, other, "balance"), headers=world.coordinator)).status_code == 200
    assert (await world.client.get("/admin/audit", headers=world.coordinator)).status_code == 403


async def test_unknown_group_is_404(world: World) -> None:
    group = uuid.uuid4()
    coordinator = token(world.settings, uuid.uuid4(), {group: Role.COORDINATOR})
    response = await world.client.get(f"/groups/{group}/members/{uuid.uuid4()}/balance", headers=coordinator)
    assert response.status_code == 404


async def test_opening_balance_once_per_member(world: World) -> None:
    member = await joined(world)
    body = {"amount": {"amount": -1250, "currency": "EUR"}}
    first = await world.client.post(url(world, member, "opening-balance"), json=body, headers=world.coordinator)
    assert first.status_code == 201, first.text
    assert first.json()["kind"] == "opening_balance"
    replay = await world.client.post(url(world, member, "opening-balance"), json=body, headers=world.coordinator)
    assert replay.status_code == 200 and replay.json()["replayed"]
    assert replay.json()["transaction_id"] == first.json()["transaction_id"]
    different = await world.client.post(
        url(world, member, "opening-balance"),
        json={"amount": {"amount": 500, "currency": "EUR"}},
        headers=world.coordinator,
    )
    assert different.status_code == 409
    assert (await world.balance(member))["balance"]["amount"] == -1250
    # To change it: reverse it, then record the right one (which then replays and refuses like the first).
    reversal = await world.client.post(
        f"/groups/{world.group_id}/transactions/{first.json()['transaction_id']}/reversal",
        json={"reason": "wrong amount"},
        headers=world.coordinator,
    )
    assert reversal.status_code == 201
    right = await world.client.post(
        url(world, member, "opening-balance"),
        json={"amount": {"amount": 500, "currency": "EUR"}},
        headers=world.coordinator,
    )
    assert right.status_code == 201, right.text
    again = await world.client.post(
        url(world, member, "opening-balance"),
        json={"amount": {"amount": 500, "currency": "EUR"}},
        headers=world.coordinator,
    )
    assert again.status_code == 200 and again.json()["transaction_id"] == right.json()["transaction_id"]
    assert (
        await world.client.post(url(world, member, "opening-balance"), json=body, headers=world.coordinator)
    ).status_code == 409
    assert (await world.balance(member))["balance"]["amount"] == 500
    # The payment history shows the opening balances alone (R15): both recorded, newest first.
    history = await world.client.get(
        url(world, member, "statement"), params={"kind": "opening_balance"}, headers=world.coordinator
    )
    assert history.status_code == 200, history.text
    assert [(e["kind"], e["amount"]["amount"]) for e in history.json()["entries"]] == [
        ("opening_balance", 500),
        ("opening_balance", -1250),
    ]
    assert (
        await world.client.get(url(world, member, "statement"), params={"kind": "gift"}, headers=world.coordinator)
    ).status_code == 422


async def test_bad_adjustments_are_refused_and_change_nothing(world: World) -> None:
    member = await joined(world)
    opening, correction = url(world, member, "opening-balance"), url(world, member, "corrections")
    reversal = f"/groups/{world.group_id}/transactions/{uuid.uuid4()}/reversal"
    coordinator, as_member = world.coordinator, world.member(member)

    def eur(cents: int) -> dict[str, object]:
        return {"amount": {"amount": cents, "currency": "EUR"}}

    cases = [
        (opening, eur(0), coordinator, 422, "zero"),
        (opening, {"amount": {"amount": 100, "currency": "CHF"}}, coordinator, 422, "not CHF"),
        (opening, {"amount": {"amount": 1.5, "currency": "EUR"}}, coordinator, 422, None),  # not whole cents
        (opening, eur(100), as_member, 403, None),
        (url(world, uuid.uuid4(), "opening-balance"), eur(100), coordinator, 404, "unknown account"),
        (correction, {**eur(100), "reason": "  "}, coordinator, 422, "reason"),
        (correction, eur(100), coordinator, 422, None),
        (correction, {**eur(0), "reason": "x"}, coordinator, 422, "zero"),
        (correction, {**eur(5), "reason": "x", "against": "member"}, coordinator, 422, "group account"),
        (correction, {**eur(5), "reason": "x", "against": "nowhere"}, coordinator, 422, None),
        (correction, {**eur(5), "reason": "x"}, as_member, 403, None),
        (reversal, {"reason": "x"}, coordinator, 404, None),
    ]
    for path, body, headers, status, detail in cases:
        response = await world.client.post(path, json=body, headers=headers)
        assert response.status_code == status, (path, body, response.text)
        if detail:
            assert detail in response.json()["detail"], response.text
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0
    assert (await world.balance(member))["balance"]["amount"] == 0


async def test_correction_with_reason_and_idempotency_key(world: World) -> None:
    member = await joined(world)
    body = {"amount": {"amount": 300, "currency": "EUR"}, "reason": "eggs were missing"}
    headers = {**world.coordinator, "Idempotency-Key": "fix-42"}
    first = await world.client.post(url(world, member, "corrections"), json=body, headers=headers)
    assert first.status_code == 201 and first.json()["reason"] == "eggs were missing"
    again = await world.client.post(url(world, member, "corrections"), json=body, headers=headers)
    # The first answer again, as it was (runtime/idempotency.py), and nothing posted twice.
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["transaction_id"] == first.json()["transaction_id"]
    reused = await world.client.post(
        url(world, member, "corrections"), json={**body, "reason": "other"}, headers=headers
    )
    assert reused.status_code == 409 and "already used" in reused.json()["detail"]
    assert (await world.balance(member))["balance"]["amount"] == 300
    assert await count_rows(world.service.database, "transactions", world.group_id) == 1


async def test_reversal_points_at_what_it_reverses(world: World) -> None:
    member = uuid.uuid4()
    await world.deliver(world.order(member, 1800))
    statement = (await world.client.get(url(world, member, "statement"), headers=world.coordinator)).json()
    order_tx = statement["entries"][0]["transaction_id"]
    path = f"/groups/{world.group_id}/transactions/{order_tx}/reversal"
    response = await world.client.post(path, json={"reason": "order was a duplicate"}, headers=world.coordinator)
    assert response.status_code == 201, response.text
    reversal = response.json()
    assert reversal["reverses_transaction_id"] == order_tx and reversal["kind"] == "reversal"
    assert (await world.balance(member))["balance"]["amount"] == 0
    assert (
        await world.client.post(path, json={"reason": "order was a duplicate"}, headers=world.coordinator)
    ).status_code == 200
    assert (await world.client.post(path, json={"reason": "again"}, headers=world.coordinator)).status_code == 409
    rev_path = f"/groups/{world.group_id}/transactions/{reversal['transaction_id']}/reversal"
    assert (await world.client.post(rev_path, json={"reason": "x"}, headers=world.coordinator)).status_code == 422
    entries = (await world.client.get(url(world, member, "statement"), headers=world.member(member))).json()["entries"]
    assert entries[0]["reverses_transaction_id"] == order_tx
    assert entries[1]["reversed_by_transaction_id"] == reversal["transaction_id"]
    # Another group's coordinator cannot reverse it, nor can it be reached through another group.
    other_group = uuid.uuid4()
    other = token(world.settings, uuid.uuid4(), {other_group: Role.COORDINATOR})
    response = await world.client.post(
        f"/groups/{other_group}/transactions/{order_tx}/reversal", json={"reason": "x"}, headers=other
    )
    assert response.status_code == 404


async def test_statement_pages_newest_first_with_date_range_and_as_of(world: World) -> None:
    member = uuid.uuid4()
    moments = []
    for cents in (100, 200, 300, 400, 500):
        await world.deliver(world.order(member, cents))
        moments.append(datetime.now(UTC))
        await asyncio.sleep(0.02)
    await world.deliver(world.payment(PaymentDeclared, member, 1500, PaymentMethod.CHEQUE))
    page1 = (await world.client.get(url(world, member, "statement") + "?limit=2", headers=world.member(member))).json()
    assert [(e["status"], e["amount"]["amount"]) for e in page1["entries"]] == [
        ("pending", 1500),
        ("posted", -500),
        ("posted", -400),
    ]
    assert [e["balance_after"]["amount"] for e in page1["entries"][1:]] == [-1500, -1000]
    page2 = (
        await world.client.get(
            url(world, member, "statement") + f"?limit=2&before={page1['next_before']}", headers=world.member(member)
        )
    ).json()
    assert [e["amount"]["amount"] for e in page2["entries"]] == [-300, -200]
    page3 = (
        await world.client.get(
            url(world, member, "statement") + f"?limit=2&before={page2['next_before']}", headers=world.member(member)
        )
    ).json()
    assert [e["amount"]["amount"] for e in page3["entries"]] == [-100] and page3["next_before"] is None

    params = {"from": moments[1].isoformat(), "to": moments[3].isoformat()}
    ranged = (await world.client.get(url(world, member, "statement"), params=params, headers=world.coordinator)).json()
    assert [e["amount"]["amount"] for e in ranged["entries"]] == [-400, -300]

    at = (
        await world.client.get(
            url(world, member, "balance-at"), params={"at": moments[2].isoformat()}, headers=world.member(member)
        )
    ).json()
    assert at["balance"] == {"amount": -600, "currency": "EUR"}
    before_all = (
        await world.client.get(
            url(world, member, "balance-at"), params={"at": "2000-01-01T00:00:00Z"}, headers=world.member(member)
        )
    ).json()
    assert before_all["balance"]["amount"] == 0


async def test_group_balances_page_and_csv(world: World) -> None:
    debtor, settled, creditor = uuid.uuid4(), await joined(world), uuid.uuid4()
    await world.deliver(world.order(debtor, 1234))
    await world.deliver(world.payment(PaymentReceived, creditor, 5000, PaymentMethod.TRANSFER))
    await world.deliver(world.payment(PaymentDeclared, debtor, 1234, PaymentMethod.CHEQUE))
    from cagette_contracts import MemberUpdated

    # Names come from orders.member.* (the newest state wins); a member never announced has none.
    await world.deliver(
        MemberUpdated(
            group_id=world.group_id, member_id=settled, role=Role.MEMBER, name="Marie", email="marie@example.org"
        )
    )
    page = (await world.client.get(f"/groups/{world.group_id}/balances", headers=world.coordinator)).json()
    assert [line["member_id"] for line in page["in_debt"]] == [str(debtor)]
    assert [line["member_id"] for line in page["balanced"]] == [str(settled)]
    assert (page["balanced"][0]["name"], page["balanced"][0]["email"]) == ("Marie", "marie@example.org")
    assert page["in_debt"][0]["name"] is None
    assert [line["member_id"] for line in page["in_credit"]] == [str(creditor)]
    totals = page["totals"]
    assert (
        totals["members"],
        totals["in_debt"]["amount"],
        totals["in_credit"]["amount"],
        totals["net"]["amount"],
        totals["pending"]["amount"],
    ) == (3, -1234, 5000, 3766, 1234)
    assert totals["counts"] == {"in_debt": 1, "balanced": 1, "in_credit": 1}

    response = await world.client.get(f"/groups/{world.group_id}/balances.csv", headers=world.coordinator)
    assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    assert list(rows[0]) == [
        "member_id",
        "name",
        "email",
        "standing",
        "balance",
        "pending",
        "held",
        "available",
        "currency",
    ]
    by_member = {row["member_id"]: row for row in rows}
    assert (by_member[str(settled)]["name"], by_member[str(settled)]["email"]) == ("Marie", "marie@example.org")
    assert by_member[str(debtor)] | {} == {
        "member_id": str(debtor),
        "name": "",
        "email": "",
        "standing": "in_debt",
        "balance": "-12.34",
        "pending": "12.34",
        "held": "0.00",
        "available": "-12.34",
        "currency": "EUR",
    }
    assert by_member[str(creditor)]["balance"] == "50.00"
    with pytest.MonkeyPatch.context() as patch:  # streamed in keyset batches: the same file
        patch.setattr(ledger_api, "CSV_BATCH", 1)
        batched = await world.client.get(f"/groups/{world.group_id}/balances.csv", headers=world.coordinator)
    assert batched.content == response.content

    # One member per page: the pages together hold each member once, most owed first, and every
    # page carries the whole group's totals.
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        answer = await world.client.get(f"/groups/{world.group_id}/balances", params=params, headers=world.coordinator)
        body, pages = answer.json(), pages + 1
        assert body["totals"] == totals
        seen += [line["member_id"] for name in ("in_debt", "balanced", "in_credit") for line in body[name]]
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            break
        assert 'rel="next"' in answer.headers["link"]
    assert (seen, pages) == ([str(debtor), str(settled), str(creditor)], 3)
    refused = await world.client.get(
        f"/groups/{world.group_id}/balances", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=world.coordinator
    )
    assert refused.status_code == 422 and "cursor" in refused.json()["detail"]
    too_big = await world.client.get(
        f"/groups/{world.group_id}/balances", params={"limit": 201}, headers=world.coordinator
    )
    assert too_big.status_code == 422


async def test_statement_csv(world: World) -> None:
    member = uuid.uuid4()
    await world.deliver(world.order(member, 999))
    await world.deliver(world.payment(PaymentDeclared, member, 999, PaymentMethod.CHEQUE, reference="RF18 0000"))
    response = await world.client.get(url(world, member, "statement.csv"), headers=world.member(member))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    # The header line a spreadsheet or an accountant's import sees, as published.
    assert response.content.decode("utf-8").splitlines()[0] == (
        "date,status,kind,description,amount,balance_after,currency,transaction_id,reverses_transaction_id,reason,payment_id"
    )
    assert [(r["status"], r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("pending", "payment", "9.99", ""),
        ("posted", "order", "-9.99", "-9.99"),
    ]
    # Free text never starts a spreadsheet formula.
    body = {"amount": {"amount": 5, "currency": "EUR"}, "reason": '=HYPERLINK("http://x")'}
    assert (
        await world.client.post(url(world, member, "corrections"), json=body, headers=world.coordinator)
    ).status_code == 201
    response = await world.client.get(url(world, member, "statement.csv"), headers=world.member(member))
    first = next(r for r in csv.DictReader(io.StringIO(response.content.decode("utf-8"))) if r["kind"] == "correction")
    assert first["reason"] == '\'=HYPERLINK("http://x")' and first["amount"] == "0.05"
    # Streamed in batches: one row per batch gives the same file, newest first, each entry once.
    whole = response.content
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger_api, "CSV_BATCH", 1)
        batched = await world.client.get(url(world, member, "statement.csv"), headers=world.member(member))
    assert batched.content == whole and whole.count(b"\r\n") == 4


async def test_opening_balances_csv_import_all_or_nothing(world: World) -> None:
    a, b, c = await joined(world), await joined(world), await joined(world)
    bad = f"member_id,amount,memo\n{a},12.50,from paper\n{b},-3.5\n{c},1.234\nnot-a-uuid,1\n{uuid.uuid4()},4\n{a},2\n"
    response = await world.client.post(
        f"/groups/{world.group_id}/opening-balances",
        content=bad.encode(),
        headers={**world.coordinator, "Content-Type": "text/csv"},
    )
    assert response.status_code == 422, response.text
    errors = response.json()["context"]["errors"]
    assert any("line 4" in e and "decimals" in e for e in errors)
    assert any("line 5" in e and "UUID" in e for e in errors)
    assert any("line 7" in e and "already appears" in e for e in errors)
    # Unknown member only shows once the parse errors are fixed; still nothing recorded.
    unknown = f"member_id,amount\n{a},12.50\n{uuid.uuid4()},4\n"
    response = await world.client.post(
        f"/groups/{world.group_id}/opening-balances",
        content=unknown.encode(),
        headers={**world.coordinator, "Content-Type": "text/csv"},
    )
    assert response.status_code == 422 and "line 3: unknown account" in response.json()["context"]["errors"][0]
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0

    good = f"member_id,amount,memo\n{a},12.50,from paper\n{b},-3.5\n{c},0.01\n"
    # A check goes through every step and records nothing: the preview before the import.
    checked = await world.client.post(
        f"/groups/{world.group_id}/opening-balances",
        params={"check": "true"},
        content=good.encode(),
        headers={**world.coordinator, "Content-Type": "text/csv"},
    )
    assert checked.status_code == 200, checked.text
    preview = checked.json()
    assert (preview["checked"], preview["imported"], preview["replayed"]) == (True, 3, 0)
    assert [next(p["amount"]["amount"] for p in t["postings"] if p["member_id"]) for t in preview["transactions"]] == [
        1250,
        -350,
        1,
    ]
    assert await count_rows(world.service.database, "transactions", world.group_id) == 0
    assert [(await world.balance(m))["balance"]["amount"] for m in (a, b, c)] == [0, 0, 0]
    response = await world.client.post(
        f"/groups/{world.group_id}/opening-balances",
        content=good.encode(),
        headers={**world.coordinator, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 3
    assert [(await world.balance(m))["balance"]["amount"] for m in (a, b, c)] == [1250, -350, 1]
    again = await world.client.post(
        f"/groups/{world.group_id}/opening-balances",
        content=good.encode(),
        headers={**world.coordinator, "Content-Type": "text/csv"},
    )
    assert again.json() | {"transactions": None} == {
        "checked": False,
        "imported": 0,
        "replayed": 3,
        "transactions": None,
    }
    # A check of another amount for a recorded opening balance is refused by line, as the import would be.
    conflicting = await world.client.post(
        f"/groups/{world.group_id}/opening-balances",
        params={"check": "true"},
        content=f"member_id,amount\n{a},20\n".encode(),
        headers={**world.coordinator, "Content-Type": "text/csv"},
    )
    assert conflicting.status_code == 422 and conflicting.json()["context"]["errors"][0].startswith("line 2:")
    assert "already has another opening balance" in conflicting.json()["context"]["errors"][0]
    # Once reversed, another amount is recorded after it (twice over: the key moves past each
    # reversed one); the others replay.
    for amount, cents in (("20", 2000), ("30", 3000)):
        live = next(t for t in response.json()["transactions"] if any(p["member_id"] == str(a) for p in t["postings"]))
        undone = await world.client.post(
            f"/groups/{world.group_id}/transactions/{live['transaction_id']}/reversal",
            json={"reason": "wrong amount carried over"},
            headers=world.coordinator,
        )
        assert undone.status_code == 201, undone.text
        response = await world.client.post(
            f"/groups/{world.group_id}/opening-balances",
            content=f"member_id,amount\n{a},{amount}\n{b},-3.50\n".encode(),
            headers={**world.coordinator, "Content-Type": "text/csv"},
        )
        assert (response.json()["imported"], response.json()["replayed"]) == (1, 1), response.text
        assert (await world.balance(a))["balance"]["amount"] == cents
    assert [(await world.balance(m))["balance"]["amount"] for m in (a, b, c)] == [3000, -350, 1]
    member_import = await world.client.post(
        f"/groups/{world.group_id}/opening-balances",
        content=good.encode(),
        headers={**world.member(a), "Content-Type": "text/csv"},
    )
    assert member_import.status_code == 403


async def test_audit_endpoint(world: World) -> None:
    await world.deliver(world.order(uuid.uuid4(), 100))
    response = await world.client.get("/admin/audit", params={"group_id": str(world.group_id)}, headers=world.admin)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] and report["scopes"][0]["group_id"] == str(world.group_id)
    assert {c["name"] for c in report["scopes"][0]["checks"]} >= {"every transaction balances", "trial balance is zero"}


async def test_openapi_documents_every_endpoint(world: World) -> None:
    response = await world.client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/groups/{group_id}/members/{member_id}/balance",
        "/groups/{group_id}/members/{member_id}/statement",
        "/groups/{group_id}/members/{member_id}/statement.csv",
        "/groups/{group_id}/balances.csv",
        "/groups/{group_id}/opening-balances",
        "/groups/{group_id}/transactions/{transaction_id}/reversal",
        "/admin/audit",
    ):
        assert path in paths, path
