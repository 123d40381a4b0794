"""Per-distribution takings (SPEC B8): money received by method, money still pending, and the
members whose basket is not settled. Pure: builds rows, the API writes them as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from cagette_contracts import Money

from .baskets import Figures, PaymentLine, Standing
from .methods import Method
from .states import Kind, State

# Methods listed in the takings, in this order, even when nothing was taken with them.
TAKINGS_METHODS = (Method.CASH, Method.CHEQUE, Method.TRANSFER, Method.CARD_TERMINAL, Method.CARD)
HEADER = ("section", "key", "member_name", "count", "amount", "ordered", "received", "currency")


@dataclass(frozen=True)
class MemberBasket:
    member_id: UUID
    name: str
    figures: Figures


@dataclass(frozen=True)
class Takings:
    currency: str
    received: dict[Method, tuple[int, Money]]  # payments received, by method: count, sum
    refunded: dict[Method, tuple[int, Money]]  # refunds (negative sums), by method
    pending: dict[Method, tuple[int, Money]]  # declared, not yet confirmed
    net_total: Money  # received + refunded
    members: list[MemberBasket]  # baskets not settled, in standing then name order

    @property
    def net_count(self) -> int:
        """How many payments and refunds make the net total."""
        return sum(count for count, _ in [*self.received.values(), *self.refunded.values()])

    @property
    def pending_total(self) -> tuple[int, Money]:
        total = Money.zero(self.currency)
        for _, amount in self.pending.values():
            total = total + amount
        return sum(count for count, _ in self.pending.values()), total

    def by_method(self, bucket: dict[Method, tuple[int, Money]]) -> list[tuple[Method, int, Money]]:
        """A bucket in the takings' order of methods; `received` lists every method, even at zero."""
        zero = Money.zero(self.currency)
        every = bucket is self.received
        return [(m, *bucket.get(m, (0, zero))) for m in TAKINGS_METHODS if every or m in bucket]


def takings(payments: Iterable[PaymentLine], baskets: Iterable[MemberBasket], currency: str) -> Takings:
    def add(bucket: dict[Method, tuple[int, Money]], line: PaymentLine) -> None:
        count, amount = bucket.get(line.method, (0, Money.zero(currency)))
        bucket[line.method] = (count + 1, amount + line.amount)

    received: dict[Method, tuple[int, Money]] = {}
    refunded: dict[Method, tuple[int, Money]] = {}
    pending: dict[Method, tuple[int, Money]] = {}
    net = Money.zero(currency)
    for line in payments:
        if line.state is State.RECEIVED:
            add(received if line.kind is Kind.PAYMENT else refunded, line)
            net = net + line.amount
        elif line.state is State.DECLARED:
            add(pending, line)
    order = {Standing.MISSING: 0, Standing.PARTLY_PAID: 1, Standing.OVERPAID: 2}
    unsettled = sorted(
        (b for b in baskets if b.figures.standing is not Standing.SETTLED),
        key=lambda b: (order[b.figures.standing], b.name, str(b.member_id)),
    )
    return Takings(currency, received, refunded, pending, net, unsettled)


def _cell(text: str) -> str:
    """Defuse spreadsheet formulas in free text (a member named "=HYPERLINK(...)")."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def rows(report: Takings) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [HEADER]

    def money_row(section: str, key: str, count: int, amount: Money) -> tuple[str, ...]:
        return (section, key, "", str(count), amount.decimal_text(), "", "", report.currency)

    for method, count, amount in report.by_method(report.received):
        out.append(money_row("received", method.value, count, amount))
    for method, count, amount in report.by_method(report.refunded):
        out.append(money_row("refunded", method.value, count, amount))
    out.append(money_row("total", "net_received", report.net_count, report.net_total))
    for method in sorted(report.pending, key=lambda m: m.value):
        count, amount = report.pending[method]
        out.append(money_row("pending", method.value, count, amount))
    out.append(money_row("pending", "total", *report.pending_total))
    section = {Standing.MISSING: "unpaid", Standing.PARTLY_PAID: "partly_paid", Standing.OVERPAID: "overpaid"}
    for basket in report.members:
        f = basket.figures
        shown = f.overpaid if f.standing is Standing.OVERPAID else f.missing
        out.append(
            (
                section[f.standing],
                str(basket.member_id),
                _cell(basket.name),
                "",
                shown.decimal_text(),
                f.due.decimal_text(),
                f.received.decimal_text(),
                report.currency,
            )
        )
    return out


def to_csv(report: Takings) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows(report))
    return buffer.getvalue()
