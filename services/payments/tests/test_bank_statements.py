"""Bank statements in: camt.053 (versions 02 and 08), MT940 (a German and a Dutch dialect) and
CSV, matched by RF reference through the payment state machine, on the real database and broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from cagette_contracts import GroupSettingsChanged, PaymentMethod

from .conftest import Group, Payments, line
from .statementkit import CSV_MAPPING, IBAN, Entry, camt053, csv_file, mt940_dutch, mt940_german

MARCH_2 = date(2026, 3, 2)
MARCH_3 = date(2026, 3, 3)


async def bank_group(payments: Payments, members: int = 2, *, currency: str = "EUR") -> Group:
    """A group with a bank account (IBAN and BIC), as orders announces it."""
    group = await payments.new_group(members, currency=currency)
    await payments.feed(
        GroupSettingsChanged(
            group_id=group.group_id,
            occurred_at=datetime.now(UTC) + timedelta(seconds=1),
            name="AMAP des Lilas",
            currency=currency,
            payments_enabled=True,
            payment_methods=[PaymentMethod.CHEQUE, PaymentMethod.TRANSFER, PaymentMethod.CASH],
            transfer_iban=IBAN,
            transfer_bic="BNPAFRPPXXX",
        )
    )
    return group


async def declared(
    payments: Payments, group: Group, member: UUID, method: PaymentMethod, cents: int = 2500
) -> dict[str, Any]:
    """An order paid by `method` for `cents`; its declared payment."""
    order = await payments.order(group, member, uuid4(), method, line("Cheese", cents, currency=group.currency))
    for payment in await payments.member_payments(group, member):
        if payment["order_id"] == str(order.order_id):
            return payment
    raise AssertionError("no declared payment")


async def upload(payments: Payments, group: Group, data: bytes, **params: str) -> Any:
    return await payments.client.post(
        f"/groups/{group.group_id}/bank-statements",
        content=data,
        params=params,
        headers={**payments.coordinator(group), "Content-Type": "application/octet-stream"},
    )


async def imported(payments: Payments, group: Group, data: bytes, **params: str) -> dict[str, Any]:
    response = await upload(payments, group, data, **params)
    assert response.status_code == 201, response.text
    return response.json()


async def lines(payments: Payments, group: Group, **params: str) -> list[dict[str, Any]]:
    response = await payments.client.get(
        f"/groups/{group.group_id}/bank-lines", params=params, headers=payments.coordinator(group)
    )
    assert response.status_code == 200, response.text
    return response.json()


async def payment(payments: Payments, group: Group, payment_id: str) -> dict[str, Any]:
    response = await payments.client.get(
        f"/groups/{group.group_id}/payments/{payment_id}", headers=payments.coordinator(group)
    )
    assert response.status_code == 200, response.text
    return response.json()


def report_counts(report: dict[str, Any]) -> tuple[int, ...]:
    keys = ("matched", "amount_corrected", "top_up", "to_review", "debit", "already_imported")
    return tuple(report[key] for key in keys)


async def test_camt053_v08_confirms_transfers_by_reference_corrects_amounts_and_lists_the_rest(
    payments: Payments, spy
) -> None:
    group = await bank_group(payments, 4)
    alice, bob, carol, dave = group.members
    exact = await declared(payments, group, alice, PaymentMethod.TRANSFER, 2500)
    short = await declared(payments, group, bob, PaymentMethod.TRANSFER, 3000)
    typo = await declared(payments, group, carol, PaymentMethod.TRANSFER, 1800)
    mistyped = typo["reference"][:-1] + str((int(typo["reference"][-1]) + 1) % 10)  # one wrong digit
    assert mistyped != typo["reference"]
    statement = camt053(
        [
            # the reference broken over two Ustrd lines, lower case
            Entry(
                "25.00",
                MARCH_2,
                remittance=f"Commande {exact['reference'][:9].lower()}\n{exact['reference'][9:]}",
                bank_reference="BK-1",
            ),
            Entry(
                "28.50",
                MARCH_2,
                name="Bob",
                structured_reference=short["reference"].replace(" ", ""),
                bank_reference="BK-2",
            ),
            Entry("18.00", MARCH_2, name="Carol", remittance=f"panier {mistyped}", bank_reference="BK-3"),
            Entry("40.00", MARCH_3, name="Dave", remittance="cotisation 2026", bank_reference="BK-4"),
            Entry(
                "3.20",
                MARCH_3,
                credit=False,
                name="Banque",
                remittance="Frais de tenue de compte",
                bank_reference="BK-5",
            ),
        ],
        version="08",
    )
    report = await imported(payments, group, statement, file_name="releve-mars.xml")
    assert report["format"] == "camt.053.001.08" and report["lines"] == 5
    assert report_counts(report) == (1, 1, 0, 2, 1, 0)

    # exact: the declared transfer is received, on the bank's booking date, with the line recorded
    confirmed = await payment(payments, group, exact["payment_id"])
    assert confirmed["state"] == "received" and confirmed["amount"]["amount"] == 2500
    assert confirmed["paid_on"] == "2026-03-02"
    assert confirmed["transitions"][-1]["by"] == str(group.coordinator)
    assert "bank statement line of 2026-03-02 (BK-1)" in confirmed["transitions"][-1]["note"]
    [received] = await spy.wait_for("payments.payment.received", payment_id=exact["payment_id"])
    assert (
        received.body["declared_amount"] == {"amount": 2500, "currency": "EUR"}
        and received.body["method"] == "transfer"
    )
    [matched] = await spy.wait_for("payments.bank_line.matched", payment_id=exact["payment_id"])
    assert matched.body["outcome"] == "matched" and matched.body["reference"] == exact["reference"]
    line_ids = {row["payment_id"]: row["line_id"] for row in await lines(payments, group)}
    assert (
        await payments.scalar(
            "SELECT bank_line_id::text FROM payments WHERE payment_id = :p", p=UUID(exact["payment_id"])
        )
        == line_ids[exact["payment_id"]]
    )

    # a different amount: confirmed for what came, the difference shown on the basket
    corrected = await payment(payments, group, short["payment_id"])
    assert corrected["state"] == "received" and corrected["amount"]["amount"] == 2850
    assert corrected["declared_amount"]["amount"] == 3000
    basket = (
        await payments.client.get(
            f"/groups/{group.group_id}/distributions/{short['distribution_id']}/baskets/{bob}",
            headers=payments.coordinator(group),
        )
    ).json()
    assert basket["standing"] == "partly_paid" and basket["difference"]["amount"] == -150

    # a typo: to review, with the payment it probably meant as a suggestion; nothing confirmed
    review = {row["counterparty"]: row for row in await lines(payments, group, outcome="to_review")}
    assert set(review) == {"Carol", "Dave"}
    assert "check digits are wrong" in review["Carol"]["review_reason"]
    assert review["Carol"]["suggested_payment_id"] == typo["payment_id"]
    assert (await payment(payments, group, typo["payment_id"]))["state"] == "declared"
    assert review["Dave"]["review_reason"] == "no RF reference in the line"
    await spy.wait_for("payments.bank_line.to_review", 2, import_id=report["import_id"])
    [debit] = await lines(payments, group, outcome="debit")
    assert debit["amount"] == {"amount": -320, "currency": "EUR"} and debit["payment_id"] is None
    [announced] = await spy.wait_for("payments.bank_statement.imported", import_id=report["import_id"])
    assert announced.body["matched"] == 1 and announced.body["to_review"] == 2 and announced.body["debits"] == 1

    # the same file again: every line already imported, nothing else happens
    outbox_before = await payments.outbox_count()
    again = await imported(payments, group, statement)
    assert report_counts(again) == (0, 0, 0, 0, 0, 5)
    assert await payments.outbox_count() == outbox_before + 1  # only payments.bank_statement.imported
    assert len(spy.matching("payments.payment.received", payment_id=exact["payment_id"])) == 1


async def test_camt053_v02_standing_reference_tops_up_the_money_pot(payments: Payments, spy) -> None:
    group = await bank_group(payments)
    alice = group.members[0]
    response = await payments.client.get(
        f"/groups/{group.group_id}/members/{alice}/standing-reference", headers=payments.member(group, alice)
    )
    assert response.status_code == 200, response.text
    standing = response.json()
    assert standing["iban"] == IBAN and standing["beneficiary"] == "AMAP des Lilas"
    same = await payments.client.get(
        f"/groups/{group.group_id}/members/{alice}/standing-reference", headers=payments.coordinator(group)
    )
    assert same.json()["reference"] == standing["reference"]
    other = await payments.client.get(
        f"/groups/{group.group_id}/members/{alice}/standing-reference", headers=payments.member(group, group.members[1])
    )
    assert other.status_code == 403

    statement = camt053([Entry("50.00", MARCH_2, remittance=f"Cagnotte {standing['reference']}")], version="02")
    report = await imported(payments, group, statement)
    assert report["format"] == "camt.053.001.02" and report_counts(report) == (0, 0, 1, 0, 0, 0)
    [top_up] = [p for p in await payments.member_payments(group, alice) if p["source"] == "bank"]
    assert top_up["state"] == "received" and top_up["method"] == "transfer" and top_up["amount"]["amount"] == 5000
    assert top_up["distribution_id"] is None and top_up["order_id"] is None and top_up["paid_on"] == "2026-03-02"
    [received] = await spy.wait_for("payments.payment.received", payment_id=top_up["payment_id"])
    assert received.body["distribution_id"] is None  # the ledger credits the member's account
    [matched] = await spy.wait_for("payments.bank_line.matched", payment_id=top_up["payment_id"])
    assert matched.body["outcome"] == "top_up" and matched.body["member_id"] == str(alice)


async def test_mt940_german_structured_details_and_an_overlapping_statement(payments: Payments) -> None:
    group = await bank_group(payments)
    alice, bob = group.members
    first = await declared(payments, group, alice, PaymentMethod.TRANSFER, 1250)
    second = await declared(payments, group, bob, PaymentMethod.TRANSFER, 990)
    day_2 = Entry("12.50", MARCH_2, remittance=f"Panier AMAP {first['reference']} Alice")  # split over ?20/?21
    report = await imported(payments, group, mt940_german([day_2]))
    assert report["format"] == "mt940" and report_counts(report) == (1, 0, 0, 0, 0, 0)
    # the next statement repeats March 2 (no bank reference: the fingerprint identifies it)
    day_3 = Entry("9.90", MARCH_3, name="Bob", remittance=f"{second['reference']}")
    overlap = await imported(payments, group, mt940_german([day_2, day_3], opening=100000))
    assert report_counts(overlap) == (1, 0, 0, 0, 0, 1)
    assert (await payment(payments, group, second["payment_id"]))["state"] == "received"
    [bob_line] = [row for row in await lines(payments, group) if row["payment_id"] == second["payment_id"]]
    assert bob_line["counterparty"] == "Bob" and bob_line["counterparty_iban"] == "DE89370400440532013000"


async def test_mt940_dutch_slash_codes_and_true_duplicates_on_one_day(payments: Payments) -> None:
    group = await bank_group(payments)
    alice = group.members[0]
    transfer = await declared(payments, group, alice, PaymentMethod.TRANSFER, 700)
    gift = Entry("5.00", MARCH_2, name="Jan de Vries", remittance="gift")
    statement = mt940_dutch([Entry("7.00", MARCH_2, remittance=transfer["reference"]), gift, gift])
    report = await imported(payments, group, statement)
    assert report_counts(report) == (1, 0, 0, 2, 0, 0)  # the two identical gifts are two lines
    again = await imported(payments, group, statement)
    assert report_counts(again) == (0, 0, 0, 0, 0, 3)
    review = await lines(payments, group, outcome="to_review")
    assert [row["counterparty"] for row in review] == ["Jan de Vries", "Jan de Vries"]


async def test_csv_with_the_groups_mapping(payments: Payments) -> None:
    group = await bank_group(payments)
    alice = group.members[0]
    transfer = await declared(payments, group, alice, PaymentMethod.TRANSFER, 123456)
    data = csv_file(
        [Entry("1 234.56", MARCH_2, remittance=f"VIR {transfer['reference']}"), Entry("12.00", MARCH_3, credit=False)]
    )
    refused = await upload(payments, group, data, format="csv")
    assert refused.status_code == 422 and "mapping" in refused.json()["detail"]
    saved = await payments.client.put(
        f"/groups/{group.group_id}/bank-settings",
        json={"csv_mapping": CSV_MAPPING},
        headers=payments.coordinator(group),
    )
    assert saved.status_code == 200, saved.text
    report = await imported(payments, group, data, format="csv")
    assert report["format"] == "csv" and report_counts(report) == (1, 0, 0, 0, 1, 0)
    confirmed = await payment(payments, group, transfer["payment_id"])
    assert confirmed["state"] == "received" and confirmed["amount"]["amount"] == 123456


async def test_review_assign_to_a_payment_or_a_member_or_ignore(payments: Payments, spy) -> None:
    group = await bank_group(payments, 3)
    alice, bob, carol = group.members
    cheque = await declared(payments, group, alice, PaymentMethod.CHEQUE, 2000)
    statement = camt053(
        [
            Entry("20.00", MARCH_2, name="Alice", remittance=f"cheque ref {cheque['reference']}", bank_reference="R-1"),
            Entry("15.00", MARCH_2, name="B. Martin", remittance="pour Bob", bank_reference="R-2"),
            Entry("1.00", MARCH_2, name="???", remittance="test", bank_reference="R-3"),
        ]
    )
    report = await imported(payments, group, statement)
    assert report_counts(report) == (0, 0, 0, 3, 0, 0)
    review = {row["bank_reference"]: row for row in await lines(payments, group, outcome="to_review")}
    assert "declared as cheque" in review["R-1"]["review_reason"]
    coordinator = payments.coordinator(group)
    base = f"/groups/{group.group_id}/bank-lines"

    # a member cannot review
    forbidden = await payments.client.post(
        f"{base}/{review['R-2']['line_id']}/ignore", json={"reason": "x"}, headers=payments.member(group, bob)
    )
    assert forbidden.status_code == 403

    # the cheque came by transfer: cancelled, and a received transfer for the same order
    assigned = await payments.client.post(
        f"{base}/{review['R-1']['line_id']}/assign",
        json={"member_id": str(alice), "payment_id": cheque["payment_id"], "note": "paid by transfer"},
        headers=coordinator,
    )
    assert assigned.status_code == 200, assigned.text
    body = assigned.json()
    assert body["outcome"] == "assigned" and body["reviewed_by"] == str(group.coordinator) and body["reviewed_at"]
    assert (await payment(payments, group, cheque["payment_id"]))["state"] == "cancelled"
    transfer = await payment(payments, group, body["payment_id"])
    assert (
        transfer["method"] == "transfer"
        and transfer["state"] == "received"
        and transfer["order_id"] == cheque["order_id"]
    )
    await spy.wait_for("payments.bank_line.matched", outcome="assigned", payment_id=body["payment_id"])

    # to a member only: credited to their account
    to_bob = await payments.client.post(
        f"{base}/{review['R-2']['line_id']}/assign", json={"member_id": str(bob)}, headers=coordinator
    )
    assert to_bob.status_code == 200, to_bob.text
    assert to_bob.json()["member_name"] == "Member 1"  # the review list says whose money it is in words
    credited = await payment(payments, group, to_bob.json()["payment_id"])
    assert (
        credited["member_id"] == str(bob)
        and credited["amount"]["amount"] == 1500
        and credited["distribution_id"] is None
    )

    ignored = await payments.client.post(
        f"{base}/{review['R-3']['line_id']}/ignore", json={"reason": "bank test transfer"}, headers=coordinator
    )
    assert ignored.status_code == 200 and ignored.json()["outcome"] == "ignored"
    assert ignored.json()["review_note"] == "bank test transfer" and ignored.json()["member_name"] is None
    assert {row["member_name"] for row in await lines(payments, group, outcome="assigned")} == {"Member 0", "Member 1"}
    twice = await payments.client.post(
        f"{base}/{review['R-3']['line_id']}/assign", json={"member_id": str(carol)}, headers=coordinator
    )
    assert twice.status_code == 409
    assert await lines(payments, group, outcome="to_review") == []
    again = await imported(payments, group, statement)
    assert again["already_imported"] == 3 and again["ignored"] == 1


async def test_a_reference_of_another_group_or_two_references_never_match(payments: Payments) -> None:
    ours, theirs = await bank_group(payments), await bank_group(payments)
    foreign = await declared(payments, theirs, theirs.members[0], PaymentMethod.TRANSFER, 1000)
    mine_a = await declared(payments, ours, ours.members[0], PaymentMethod.TRANSFER, 1000)
    mine_b = await declared(payments, ours, ours.members[1], PaymentMethod.TRANSFER, 1000)
    statement = camt053(
        [
            Entry("10.00", MARCH_2, remittance=foreign["reference"], bank_reference="X-1"),
            Entry("10.00", MARCH_2, remittance=f"{mine_a['reference']} {mine_b['reference']}", bank_reference="X-2"),
        ]
    )
    report = await imported(payments, ours, statement)
    assert report_counts(report) == (0, 0, 0, 2, 0, 0)
    review = {row["bank_reference"]: row["review_reason"] for row in await lines(payments, ours, outcome="to_review")}
    assert "not one of the group's" in review["X-1"] and "several" in review["X-2"]
    assert (await payment(payments, theirs, foreign["payment_id"]))["state"] == "declared"
    assert (await payment(payments, ours, mine_a["payment_id"]))["state"] == "declared"


async def test_bad_files_are_refused_naming_the_problem_and_import_nothing(payments: Payments) -> None:
    group = await bank_group(payments)
    transfer = await declared(payments, group, group.members[0], PaymentMethod.TRANSFER, 1000)
    good = Entry("10.00", MARCH_2, remittance=transfer["reference"])
    whole = camt053([good, Entry("5.00", MARCH_2)])
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (b'{"not": "a statement"}', {}, 422, "mapping"),
        (b"%PDF-1.7 binary", {"format": "mt940"}, 422, "not an MT940"),
        (b"<html><body>hello</body></html>", {}, 422, "not an ISO 20022 camt.053"),
        (whole[: len(whole) // 2], {}, 422, "truncated"),
        (camt053([good], iban="DE89370400440532013000"), {}, 422, "not the group's account"),
        (camt053([good], currency="CHF"), {}, 422, "not the group's currency"),
        (
            camt053([good, Entry("1O.00", MARCH_2)], opening=None),
            {},
            422,
            "line 2: amount '1O.00' is not a decimal number",
        ),
        (camt053([good], closing=999), {}, 422, "do not add up"),
        (mt940_german([good]).replace(b"C10,00NTRF", b"C10,001NTRF"), {}, 422, "more than 2 decimals"),
        (b"", {}, 422, "empty"),
    ]
    for data, params, status, words in cases:
        response = await upload(payments, group, data, **params)
        assert response.status_code == status, (words, response.text)
        assert words in response.json()["detail"], (words, response.json())
    line_error = (await upload(payments, group, camt053([good, Entry("1O.00", MARCH_2)], opening=None))).json()
    assert line_error["context"] == {"line": 2}

    huge = b"<" + b"x" * (50 * 1024 * 1024)
    too_large = await upload(payments, group, huge)
    # Refused by the runtime's body guard before the endpoint reads it.
    assert too_large.status_code == 413 and "larger than 10485760 bytes" in too_large.json()["detail"]

    saved = await payments.client.put(
        f"/groups/{group.group_id}/bank-settings",
        json={"csv_mapping": CSV_MAPPING},
        headers=payments.coordinator(group),
    )
    assert saved.status_code == 200
    unfit = await upload(payments, group, b"Compte\r\nExport\r\nDate;Montant\r\n02/03/2026;10,00\r\n", format="csv")
    assert unfit.status_code == 422 and "does not fit" in unfit.json()["detail"]
    bad_row = csv_file([good]).replace(b"10,00", b"10,0,0")
    refused = await upload(payments, group, bad_row, format="csv")
    assert refused.status_code == 422 and refused.json()["context"] == {"line": 4}

    assert await lines(payments, group) == []
    assert await payments.scalar("SELECT count(*) FROM bank_imports WHERE group_id = :g", g=group.group_id) == 0
    assert (await payment(payments, group, transfer["payment_id"]))["state"] == "declared"

    member = await payments.client.post(
        f"/groups/{group.group_id}/bank-statements", content=whole, headers=payments.member(group, group.members[0])
    )
    assert member.status_code == 403
