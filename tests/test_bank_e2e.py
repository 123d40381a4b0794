"""Bank statements on the running services (issue 19): a transfer order is settled by importing
the bank's camt.053 carrying its reference; the member's balance is zero, the takings show a
transfer, a standing reference tops a member's money pot up, and importing the file again
changes nothing."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from typing import Any

from .conftest import clients, eventually
from .groups import Group, Product

IBAN = "FR7630006000011234567890189"


def eur(cents: int) -> dict[str, Any]:
    return {"amount": cents, "currency": "EUR"}


def camt053_v04(
    credits: list[tuple[str, str, str]], *, booked: date, opening: str = "500.00", iban: str = IBAN
) -> bytes:
    """An ISO 20022 camt.053.001.04 statement of this account with one booked SEPA credit per
    (amount, name, remittance), the balances adding up."""
    closing = sum((float_free(amount) for amount, _, _ in credits), float_free(opening))
    entries = "".join(
        f'<Ntry><NtryRef>{n}</NtryRef><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>'
        f"<BookgDt><Dt>{booked.isoformat()}</Dt></BookgDt><ValDt><Dt>{booked.isoformat()}</Dt></ValDt>"
        f"<AcctSvcrRef>E2E-{booked:%Y%m%d}-{n}</AcctSvcrRef>"
        "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f'<NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs><AmtDtls><TxAmt><Amt Ccy="EUR">{amount}'
        f"</Amt></TxAmt></AmtDtls><RltdPties><Dbtr><Nm>{name}</Nm></Dbtr></RltdPties>"
        f"<RmtInf><Ustrd>{remittance}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"
        for n, (amount, name, remittance) in enumerate(credits, start=1)
    )
    balances = "".join(
        f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{cents // 100}.{cents % 100:02d}</Amt>'
        f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{booked.isoformat()}</Dt></Dt></Bal>"
        for code, cents in (("OPBD", float_free(opening)), ("CLBD", closing))
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.04"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>E2E</MsgId><CreDtTm>2026-03-03T06:00:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>E2E-{booked:%Y%m%d}</Id><CreDtTm>2026-03-03T06:00:00</CreDtTm>"
        f"<Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>EUR</Ccy></Acct>{balances}{entries}</Stmt>"
        "</BkToCstmrStmt></Document>"
    ).encode()


def float_free(text: str) -> int:
    units, _, cents = text.partition(".")
    return int(units) * 100 + int(cents.ljust(2, "0"))


async def test_transfer_settled_by_a_camt053_import_and_reimport_changes_nothing(stack) -> None:
    async with clients(stack, "orders", "payments", "ledger") as (orders, payments, ledger):
        lilas = await Group.create(
            orders,
            "AMAP des Lilas",
            payment_methods=["transfer"],
            transfer_iban="FR76 3000 6000 0112 3456 7890 189",
            transfer_bic="BNPAFRPP",
        )
        group = lilas.group_id
        coord = lilas.coordinator
        await lilas.join_coordinator("Claire")
        alice, bob = await lilas.join("Alice"), await lilas.join("Bob")
        as_alice, as_bob = lilas.member(alice), lilas.member(bob)
        shop = await lilas.catalog("Farm shop", [Product("Cheese", 1250)])
        d = await lilas.distribution([shop], "Market hall")
        placed = await lilas.order(alice, d, "transfer", [(shop.product_ids[0], "2")])
        assert placed.status_code == 201, placed.text

        async def declared() -> dict[str, Any] | None:
            listed = (await payments.get(f"/groups/{group}/members/{alice}/payments", headers=as_alice)).json()
            return next((p for p in listed if p["state"] == "declared"), None)

        transfer = await eventually(declared)
        assert transfer["method"] == "transfer" and transfer["amount"] == eur(2500)

        async def balance_is(who: uuid.UUID, cents: int, pending: int = 0) -> bool:
            answer = (await ledger.get(f"/groups/{group}/members/{who}/balance", headers=coord)).json()
            return answer.get("balance") == eur(cents) and answer.get("pending") == eur(pending)

        await eventually(lambda: balance_is(alice, -2500, 2500))

        # Bob's standing reference, for topping up his money pot
        standing = (await payments.get(f"/groups/{group}/members/{bob}/standing-reference", headers=as_bob)).json()

        # The member's page can show the EPC QR payload of the transfer
        instructions = (
            await payments.get(
                f"/groups/{group}/payments/{transfer['payment_id']}/transfer-instructions", headers=as_alice
            )
        ).json()
        assert instructions["epc_payload"].endswith("\nEUR25\n\n" + transfer["reference"].replace(" ", ""))

        statement = camt053_v04(
            [
                ("25.00", "Alice Martin", f"Commande {transfer['reference'].lower()}"),
                ("10.00", "Bob Durand", f"cagnotte {standing['reference']}"),
            ],
            booked=date(2026, 3, 2),
        )
        upload = {**coord, "Content-Type": "application/xml"}
        first = await payments.post(f"/groups/{group}/bank-statements", headers=upload, content=statement)
        assert first.status_code == 201, first.text
        report = first.json()
        assert report["format"] == "camt.053.001.04"
        assert (report["matched"], report["top_up"], report["to_review"], report["already_imported"]) == (1, 1, 0, 0)

        await eventually(lambda: balance_is(alice, 0))
        await eventually(lambda: balance_is(bob, 1000))
        settled = (await payments.get(f"/groups/{group}/payments/{transfer['payment_id']}", headers=coord)).json()
        assert settled["state"] == "received" and settled["paid_on"] == "2026-03-02"

        async def takings() -> dict[tuple[str, str], dict[str, str]]:
            answer = await payments.get(f"/groups/{group}/distributions/{d}/takings.csv", headers=coord)
            assert answer.status_code == 200
            return {(r["section"], r["key"]): r for r in csv.DictReader(io.StringIO(answer.text))}

        before = await takings()
        assert (before[("received", "transfer")]["count"], before[("received", "transfer")]["amount"]) == ("1", "25.00")
        assert before[("total", "net_received")]["amount"] == "25.00"
        assert ("pending", "transfer") not in before or before[("pending", "transfer")]["amount"] == "0.00"

        # The same statement again: every line already imported, nothing moves
        payments_before = (await payments.get(f"/groups/{group}/members/{alice}/payments", headers=coord)).json()
        again = await payments.post(f"/groups/{group}/bank-statements", headers=upload, content=statement)
        assert again.status_code == 201, again.text
        assert (again.json()["matched"], again.json()["top_up"], again.json()["already_imported"]) == (0, 0, 2)
        assert await takings() == before
        assert (
            await payments.get(f"/groups/{group}/members/{alice}/payments", headers=coord)
        ).json() == payments_before
        assert await balance_is(alice, 0) and await balance_is(bob, 1000)
