"""Payments HTTP API: manual payments and refunds, payment transitions, baskets and distribution
validation, subscription mass entry, takings export. Every route checks the caller's role in
the group of its path; a refusal is a 4xx that changed nothing and published nothing."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Query, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_contracts import Money
from cagette_contracts.inputs import BusinessDate, Label, Note, QueryText, Reason, RequestBody
from cagette_runtime import idempotency
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.errors import Invalid, NotFound
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page
from cagette_runtime.rows import record

from . import store, usecases
from .domain import references
from .domain.baskets import Figures
from .domain.methods import Method
from .domain.takings import Takings, to_csv

router = APIRouter(route_class=idempotency.IdempotentRoute)

ClientKey = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")]


CommandT = TypeVar("CommandT")


class Body(RequestBody):
    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def entry(self, command: type[CommandT], **route: Any) -> CommandT:
        """The use case's entry from the body's fields, its fingerprint (the client key's request)
        and what the route adds (the path's distribution, say)."""
        return record(command, dict(self), request_hash=self.fingerprint(), **route)


class ManualPayment(Body):
    method: Method = Field(description="cheque, cash, transfer or card_terminal")
    amount: Money
    paid_on: BusinessDate | None = Field(default=None, description="default: today")
    label: Label | None = Field(default=None, description="e.g. the cheque number")
    order_id: UUID | None = None
    subscription_id: UUID | None = None
    distribution_id: UUID | None = None
    client_key: ClientKey | None = Field(default=None, description="the same key again returns the same payment")


class BasketPayment(Body):
    method: Method
    amount: Money
    paid_on: BusinessDate | None = None
    label: Label | None = None
    client_key: ClientKey | None = None


class Refund(Body):
    method: Method
    amount: Money = Field(description="positive: the money given back")
    reason: Reason
    paid_on: BusinessDate | None = None
    label: Label | None = None
    distribution_id: UUID | None = None
    payment_id: UUID | None = Field(default=None, description="the payment given back, if it is one")
    client_key: ClientKey | None = None


class BasketRefund(Body):
    method: Method
    amount: Money
    reason: Reason = "overpayment"
    paid_on: BusinessDate | None = None
    label: Label | None = None
    client_key: ClientKey | None = None


class Confirm(Body):
    amount: Money | None = Field(default=None, description="the amount actually received, if not the declared one")
    method: Method | None = Field(
        default=None,
        description="the method actually used, if not the declared one (R20): cash, cheque, transfer or "
        "card_terminal; required for on_the_spot (cash, cheque or card_terminal)",
    )
    label: Label | None = None
    note: Note = ""


class Cancel(Body):
    reason: Note = ""


class Reverse(Body):
    reason: Reason


class ConfirmAll(Body):
    on_the_spot_method: Method | None = Field(
        default=None, description="what on-the-spot payments were (cash, cheque, card_terminal)"
    )


class MassEntryRow(Body):
    member_id: UUID
    subscription_id: UUID | None = None
    method: Method = Method.CHEQUE
    amount: Money
    label: Label | None = None
    paid_on: BusinessDate | None = None


class MassEntry(Body):
    client_key: ClientKey
    rows: list[MassEntryRow] = Field(min_length=1, max_length=1000)


# -- response shapes (OpenAPI) --------------------------------------------------------------


class TransitionOut(BaseModel):
    from_: str | None = Field(alias="from", description="null: the payment was created")
    to: str
    by: UUID | None = Field(description="who; null when it came from an orders event")
    at: datetime
    note: str
    amount_before: Money | None
    amount_after: Money
    method_before: str | None
    method_after: str


class PaymentOut(BaseModel):
    payment_id: UUID
    member_id: UUID
    kind: str = Field(description="payment, or refund (negative amount)")
    state: str = Field(description="declared, received or cancelled")
    method: str
    amount: Money = Field(description="signed; the amount received once confirmed")
    declared_amount: Money | None
    reference: str | None = Field(description="RF creditor reference, in groups of four")
    label: str | None
    reason: str | None
    paid_on: BusinessDate | None
    order_id: UUID | None
    amendment_id: UUID | None
    subscription_id: UUID | None
    distribution_id: UUID | None
    reverses_payment_id: UUID | None
    source: str
    created_at: datetime
    transitions: list[TransitionOut] | None = None


class FiguresOut(BaseModel):
    ordered: Money
    paid_from_money_pot: Money
    due: Money = Field(description="ordered minus the money-pot part")
    received: Money = Field(description="confirmed payments minus refunds")
    pending: Money
    difference: Money = Field(description="received - due: negative missing, positive overpaid")
    missing: Money
    overpaid: Money
    standing: str = Field(description="settled, missing, partly_paid or overpaid")


class BasketOut(FiguresOut):
    distribution_id: UUID
    member_id: UUID
    member_name: str
    state: str = Field(description="to_validate or validated")
    validated_at: datetime | None
    validated_by: UUID | None
    pending_payments: int


class BasketDetailOut(BasketOut):
    orders: list[dict[str, Any]]
    payments: list[PaymentOut]
    subscriptions_delivered: list[dict[str, Any]]
    history: list[dict[str, Any]]


class BasketListOut(BaseModel):
    distribution_id: UUID
    baskets: list[BasketOut]
    to_validate: int
    validated: int


class DistributionValidationOut(BaseModel):
    validated: list[UUID]
    already_validated: list[UUID]
    not_validated: list[dict[str, Any]]


class TakingsLineOut(BaseModel):
    method: str
    count: int
    amount: Money


class TakingsCountOut(BaseModel):
    count: int
    amount: Money


class UnsettledOut(BaseModel):
    member_id: UUID
    member_name: str
    standing: str = Field(description="missing, partly_paid or overpaid")
    amount: Money = Field(description="what is missing, or what was overpaid")
    due: Money
    received: Money


class TakingsOut(BaseModel):
    distribution_id: UUID
    currency: str
    received: list[TakingsLineOut] = Field(description="received payments by method (every method, even at zero)")
    refunded: list[TakingsLineOut] = Field(description="refunds by method (negative)")
    net_received: TakingsCountOut = Field(description="received minus refunded")
    pending: list[TakingsLineOut] = Field(description="declared, not yet confirmed, by method")
    pending_total: TakingsCountOut
    not_settled: list[UnsettledOut]


class MassEntryOut(BaseModel):
    client_key: str
    payments: list[PaymentOut]


class SubscriptionOut(FiguresOut):
    subscription_id: UUID
    member_id: UUID
    member_name: str
    contract_name: str | None
    distribution_count: int | None
    payments: list[PaymentOut]


class ContractOut(BaseModel):
    contract_id: UUID
    subscriptions: list[SubscriptionOut]


# -- JSON shapes ----------------------------------------------------------------------------


def money(amount: int | None, currency: str) -> dict[str, Any] | None:
    return None if amount is None else {"amount": amount, "currency": currency}


def payment_json(row: Row, transitions: list[Row] | None = None) -> dict[str, Any]:
    body = {
        "payment_id": row.payment_id,
        "member_id": row.member_id,
        "kind": row.kind,
        "state": row.state,
        "method": row.method,
        "amount": money(row.amount, row.currency),
        "declared_amount": money(row.declared_amount, row.currency),
        "reference": references.format_reference(row.reference) if row.reference else None,
        "label": row.label,
        "reason": row.reason,
        "paid_on": row.paid_on,
        "order_id": row.order_id,
        "amendment_id": row.amendment_id,
        "subscription_id": row.subscription_id,
        "distribution_id": row.distribution_id,
        "reverses_payment_id": row.reverses_payment_id,
        "source": row.source,
        "created_at": row.created_at,
    }
    if transitions is not None:
        body["transitions"] = [
            {
                "from": t.from_state,
                "to": t.to_state,
                "by": t.by,
                "at": t.at,
                "note": t.note,
                "amount_before": money(t.amount_before, t.currency),
                "amount_after": money(t.amount_after, t.currency),
                "method_before": t.method_before,
                "method_after": t.method_after,
            }
            for t in transitions
        ]
    return body


def figures_json(f: Figures) -> dict[str, Any]:
    c = f.due.currency
    return {
        "ordered": money(f.ordered.amount, c),
        "paid_from_money_pot": money(f.money_pot.amount, c),
        "due": money(f.due.amount, c),
        "received": money(f.received.amount, c),
        "pending": money(f.pending.amount, c),
        "difference": money(f.difference.amount, c),
        "missing": money(f.missing.amount, c),
        "overpaid": money(f.overpaid.amount, c),
        "standing": f.standing.value,
    }


def takings_json(distribution_id: UUID, report: Takings) -> dict[str, Any]:
    """The takings' figures as the CSV has them, amounts in minor units."""
    c = report.currency

    def lines(bucket: dict[Method, tuple[int, Money]]) -> list[dict[str, Any]]:
        return [{"method": m.value, "count": n, "amount": money(a.amount, c)} for m, n, a in report.by_method(bucket)]

    pending_count, pending_total = report.pending_total
    return {
        "distribution_id": distribution_id,
        "currency": c,
        "received": lines(report.received),
        "refunded": lines(report.refunded),
        "net_received": {"count": report.net_count, "amount": money(report.net_total.amount, c)},
        "pending": [
            {"method": m.value, "count": n, "amount": money(a.amount, c)}
            for m, (n, a) in sorted(report.pending.items(), key=lambda item: item[0].value)
        ],
        "pending_total": {"count": pending_count, "amount": money(pending_total.amount, c)},
        "not_settled": [
            {
                "member_id": b.member_id,
                "member_name": b.name,
                "standing": b.figures.standing.value,
                "amount": money((b.figures.overpaid if b.figures.overpaid.amount else b.figures.missing).amount, c),
                "due": money(b.figures.due.amount, c),
                "received": money(b.figures.received.amount, c),
            }
            for b in report.members
        ],
    }


OWED_FIELDS = ("kind", "order_id", "amendment_id", "payment_method", "amount", "lines", "occurred_at")


def owed_json(row: Row) -> dict[str, Any]:
    return {name: money(row.amount, row.currency) if name == "amount" else getattr(row, name) for name in OWED_FIELDS}


async def with_transitions(session: AsyncSession, rows: list[Row]) -> list[dict[str, Any]]:
    found = await store.transitions_of(session, [r.payment_id for r in rows])
    return [payment_json(r, found[r.payment_id]) for r in rows]


async def basket_json(session: AsyncSession, view: usecases.BasketView, *, detail: bool) -> dict[str, Any]:
    b = view.basket
    body: dict[str, Any] = {
        "distribution_id": b.distribution_id,
        "member_id": b.member_id,
        "member_name": view.name,
        "state": b.state,
        "validated_at": b.validated_at,
        "validated_by": b.validated_by,
        **figures_json(view.figures),
        "pending_payments": sum(1 for p in view.payments if p.state == "declared"),
    }
    if detail:
        body["orders"] = [owed_json(r) for r in view.owed]
        body["payments"] = await with_transitions(session, view.payments)
        body["subscriptions_delivered"] = [
            {
                "subscription_id": s.item_id,
                "contract_id": s.contract_id,
                "contract_name": s.contract_name,
                "lines": s.lines,
                "note": "paid per subscription contract, not in this basket's figures",
            }
            for s in await store.subscriptions_delivered_at(session, b.group_id, b.distribution_id, b.member_id)
        ]
        body["history"] = [
            {"action": h.action, "by": h.by, "at": h.at, "difference": money(h.difference, h.currency)}
            for h in await store.basket_history_of(session, b.group_id, b.distribution_id, b.member_id)
        ]
    return body


def created(body: Any, is_new: bool = True) -> JSONResponse:
    """201 for what this request created, 200 for the replay of an earlier one (same client key)."""
    return JSONResponse(status_code=201 if is_new else 200, content=jsonable_encoder(body))


async def recorded_json(session: AsyncSession, recorded: usecases.Recorded) -> JSONResponse:
    return created((await with_transitions(session, [recorded.payment]))[0], recorded.created)


# -- members: manual payments and refunds (R7, R22) -----------------------------------------


@router.post(
    "/groups/{group_id}/members/{member_id}/payments",
    dependencies=[idempotency.REQUIRED],
    status_code=201,
    response_model=PaymentOut,
    tags=["manual payments"],
    summary="Record a payment received from a member (coordinator)",
)
async def record_payment(
    group_id: UUID, member_id: UUID, body: ManualPayment, principal: CurrentPrincipal, database: DatabaseDep
) -> JSONResponse:
    async with database.transaction() as session:
        entry = body.entry(usecases.PaymentEntry)
        recorded = await usecases.record_payment(session, principal, group_id, member_id, entry)
        return await recorded_json(session, recorded)


@router.post(
    "/groups/{group_id}/members/{member_id}/refunds",
    dependencies=[idempotency.REQUIRED],
    status_code=201,
    response_model=PaymentOut,
    tags=["manual payments"],
    summary="Record money given back to a member, with a reason (coordinator)",
)
async def record_refund(
    group_id: UUID, member_id: UUID, body: Refund, principal: CurrentPrincipal, database: DatabaseDep
) -> JSONResponse:
    async with database.transaction() as session:
        recorded = await usecases.record_refund(
            session, principal, group_id, member_id, body.entry(usecases.RefundEntry)
        )
        return await recorded_json(session, recorded)


@router.get(
    "/groups/{group_id}/members/{member_id}/payments",
    response_model=list[PaymentOut],
    tags=["manual payments"],
    summary="A member's payments with their states and transitions, oldest first (the member or a coordinator)",
    responses=PAGINATED,
)
async def member_payments(
    group_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep, page: Page, response: Response
) -> list[dict[str, Any]]:
    principal.require_self_or_coordinator(group_id, member_id)
    async with database.transaction() as session:
        rows = await store.member_payments(session, group_id, member_id, page)
        shown = page.finish(rows, lambda row: (row.created_at, row.payment_id), response)
        return await with_transitions(session, shown)


# -- payments and their transitions (B3) ----------------------------------------------------


@router.get(
    "/groups/{group_id}/payments",
    response_model=PaymentOut,
    tags=["payments"],
    summary="Find a payment by its RF reference (typos are caught by the check digits)",
)
async def find_by_reference(
    group_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    reference: Annotated[QueryText, Query(max_length=40)],
) -> dict[str, Any]:
    principal.require_coordinator(group_id)
    try:
        compact = references.parse_reference(reference)
    except references.InvalidReference as exc:
        raise Invalid(f"{exc}; check it for a typo") from None
    async with database.transaction() as session:
        row = await store.payment_by_reference(session, group_id, compact)
        if row is None:
            raise NotFound(f"no payment with reference {references.format_reference(compact)} in group {group_id}")
        return (await with_transitions(session, [row]))[0]


@router.get(
    "/groups/{group_id}/payments/{payment_id}",
    response_model=PaymentOut,
    tags=["payments"],
    summary="One payment with its transitions",
)
async def get_payment(
    group_id: UUID, payment_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        row = await usecases.visible_payment(session, principal, group_id, payment_id)
        return (await with_transitions(session, [row]))[0]


@router.post(
    "/groups/{group_id}/payments/{payment_id}/confirm",
    dependencies=[idempotency.REQUIRED],
    response_model=PaymentOut,
    tags=["payments"],
    summary="Declared -> received, correcting the amount and the method to what was actually paid (R20)",
)
async def confirm(
    group_id: UUID, payment_id: UUID, body: Confirm, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        row = await usecases.confirm_payment(
            session, principal, group_id, payment_id, record(usecases.Confirmation, dict(body))
        )
        return (await with_transitions(session, [row]))[0]


@router.post(
    "/groups/{group_id}/payments/{payment_id}/cancel",
    dependencies=[idempotency.REQUIRED],
    response_model=PaymentOut,
    tags=["payments"],
    summary="Declared -> cancelled",
)
async def cancel(
    group_id: UUID, payment_id: UUID, body: Cancel, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        row = await usecases.cancel_payment(session, principal, group_id, payment_id, reason=body.reason)
        return (await with_transitions(session, [row]))[0]


@router.post(
    "/groups/{group_id}/payments/{payment_id}/reverse",
    dependencies=[idempotency.REQUIRED],
    status_code=201,
    response_model=PaymentOut,
    tags=["payments"],
    summary="Correct a received payment by a new reversing payment (the original is kept)",
)
async def reverse(
    group_id: UUID, payment_id: UUID, body: Reverse, principal: CurrentPrincipal, database: DatabaseDep
) -> JSONResponse:
    async with database.transaction() as session:
        row = await usecases.reverse_payment(session, principal, group_id, payment_id, reason=body.reason)
        return created((await with_transitions(session, [row]))[0])


# -- distribution validation (R20) ----------------------------------------------------------


@router.get(
    "/groups/{group_id}/distributions/{distribution_id}/baskets",
    response_model=BasketListOut,
    tags=["distribution validation"],
    summary="The baskets of a distribution with their state and figures",
)
async def list_baskets(
    group_id: UUID, distribution_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        views = await usecases.distribution_view(session, group_id, distribution_id)
        return {
            "distribution_id": distribution_id,
            "baskets": [await basket_json(session, v, detail=False) for v in views],
            "to_validate": sum(1 for v in views if v.basket.state == "to_validate"),
            "validated": sum(1 for v in views if v.basket.state == "validated"),
        }


@router.get(
    "/groups/{group_id}/distributions/{distribution_id}/baskets/{member_id}",
    response_model=BasketDetailOut,
    tags=["distribution validation"],
    summary="One basket: order lines, ordered, each payment with its state, and the difference",
)
async def get_basket(
    group_id: UUID, distribution_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    principal.require_self_or_coordinator(group_id, member_id)
    async with database.transaction() as session:
        return await basket_json(
            session, await usecases.basket_view(session, group_id, distribution_id, member_id), detail=True
        )


async def _basket_detail(
    session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID
) -> dict[str, Any]:
    return await basket_json(
        session, await usecases.basket_view(session, group_id, distribution_id, member_id), detail=True
    )


async def _require_basket(session: AsyncSession, group_id: UUID, distribution_id: UUID, member_id: UUID) -> None:
    if await store.get_basket(session, group_id, distribution_id, member_id) is None:
        raise NotFound(f"member {member_id} has no basket for distribution {distribution_id} in group {group_id}")


@router.post(
    "/groups/{group_id}/distributions/{distribution_id}/baskets/{member_id}/payments",
    dependencies=[idempotency.REQUIRED],
    status_code=201,
    response_model=BasketDetailOut,
    tags=["distribution validation"],
    summary="Record an extra payment for the basket",
)
async def basket_payment(
    group_id: UUID,
    distribution_id: UUID,
    member_id: UUID,
    body: BasketPayment,
    principal: CurrentPrincipal,
    database: DatabaseDep,
) -> JSONResponse:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        await _require_basket(session, group_id, distribution_id, member_id)
        entry = body.entry(usecases.PaymentEntry, distribution_id=distribution_id, source="basket")
        recorded = await usecases.record_payment(session, principal, group_id, member_id, entry)
        return created(await _basket_detail(session, group_id, distribution_id, member_id), recorded.created)


@router.post(
    "/groups/{group_id}/distributions/{distribution_id}/baskets/{member_id}/refunds",
    dependencies=[idempotency.REQUIRED],
    status_code=201,
    response_model=BasketDetailOut,
    tags=["distribution validation"],
    summary="Give back an overpayment (at most what was overpaid)",
)
async def basket_refund(
    group_id: UUID,
    distribution_id: UUID,
    member_id: UUID,
    body: BasketRefund,
    principal: CurrentPrincipal,
    database: DatabaseDep,
) -> JSONResponse:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        await _require_basket(session, group_id, distribution_id, member_id)
        entry = body.entry(usecases.RefundEntry, distribution_id=distribution_id, overpayment_only=True)
        recorded = await usecases.record_refund(session, principal, group_id, member_id, entry)
        return created(await _basket_detail(session, group_id, distribution_id, member_id), recorded.created)


@router.post(
    "/groups/{group_id}/distributions/{distribution_id}/baskets/{member_id}/validate",
    response_model=BasketDetailOut,
    tags=["distribution validation"],
    summary="Validate the basket (no payment may be pending)",
)
async def validate_basket(
    group_id: UUID, distribution_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        await usecases.validate_basket(session, principal, group_id, distribution_id, member_id)
        return await _basket_detail(session, group_id, distribution_id, member_id)


@router.post(
    "/groups/{group_id}/distributions/{distribution_id}/baskets/{member_id}/confirm-all-and-validate",
    dependencies=[idempotency.REQUIRED],
    response_model=BasketDetailOut,
    tags=["distribution validation"],
    summary="Confirm every pending payment as received for its declared amount, then validate",
)
async def confirm_all_and_validate(
    group_id: UUID,
    distribution_id: UUID,
    member_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    body: ConfirmAll | None = None,
) -> dict[str, Any]:
    async with database.transaction() as session:
        await usecases.confirm_all_and_validate(
            session,
            principal,
            group_id,
            distribution_id,
            member_id,
            on_the_spot_method=body.on_the_spot_method if body else None,
        )
        return await _basket_detail(session, group_id, distribution_id, member_id)


@router.post(
    "/groups/{group_id}/distributions/{distribution_id}/baskets/{member_id}/unvalidate",
    response_model=BasketDetailOut,
    tags=["distribution validation"],
    summary="Undo a basket validation (platform administrator only)",
)
async def unvalidate_basket(
    group_id: UUID, distribution_id: UUID, member_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        await usecases.unvalidate_basket(session, principal, group_id, distribution_id, member_id)
        return await _basket_detail(session, group_id, distribution_id, member_id)


@router.post(
    "/groups/{group_id}/distributions/{distribution_id}/validate",
    response_model=DistributionValidationOut,
    tags=["distribution validation"],
    summary="Validate every basket that can be; report those that cannot",
)
async def validate_distribution(
    group_id: UUID, distribution_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    async with database.transaction() as session:
        report = await usecases.validate_distribution(session, principal, group_id, distribution_id)
        return {
            "validated": report.validated,
            "already_validated": report.already_validated,
            "not_validated": report.blocked,
        }


@router.get(
    "/groups/{group_id}/distributions/{distribution_id}/takings",
    response_model=TakingsOut,
    tags=["exports"],
    summary="Takings of the distribution: received by method, refunded, pending, members not settled",
)
async def takings(
    group_id: UUID, distribution_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        report = await usecases.distribution_takings(session, group_id, distribution_id)
    return takings_json(distribution_id, report)


@router.get(
    "/groups/{group_id}/distributions/{distribution_id}/takings.csv",
    tags=["exports"],
    summary="Takings of the distribution (CSV): by method, pending, members not settled",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def takings_csv(
    group_id: UUID, distribution_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> Response:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        report = await usecases.distribution_takings(session, group_id, distribution_id)
    return Response(
        content=to_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="takings-{distribution_id}.csv"'},
    )


# -- subscriptions (R7, R19, R22) -----------------------------------------------------------


@router.post(
    "/groups/{group_id}/contracts/{contract_id}/payments",
    dependencies=[idempotency.REQUIRED],
    status_code=201,
    response_model=MassEntryOut,
    tags=["subscriptions"],
    summary="Mass entry: one received payment per subscriber row, all or nothing, idempotent by client_key",
)
async def mass_entry(
    group_id: UUID, contract_id: UUID, body: MassEntry, principal: CurrentPrincipal, database: DatabaseDep
) -> JSONResponse:
    async with database.transaction() as session:
        rows, is_new = await usecases.mass_entry(
            session,
            principal,
            group_id,
            contract_id,
            client_key=body.client_key,
            request_hash=hashlib.sha256(body.model_dump_json(exclude={"client_key"}).encode()).hexdigest(),
            rows=[record(usecases.MassRow, dict(r)) for r in body.rows],
        )
        return created({"client_key": body.client_key, "payments": [payment_json(r) for r in rows]}, is_new)


@router.get(
    "/groups/{group_id}/contracts/{contract_id}/subscriptions",
    response_model=ContractOut,
    tags=["subscriptions"],
    summary="Each subscription to the contract: owed, received, pending, difference",
)
async def contract_subscriptions(
    group_id: UUID, contract_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    principal.require_coordinator(group_id)
    async with database.transaction() as session:
        views = await usecases.contract_view(session, group_id, contract_id)
        return {
            "contract_id": contract_id,
            "subscriptions": [
                {
                    "subscription_id": v.subscription.item_id,
                    "member_id": v.subscription.member_id,
                    "member_name": v.name,
                    "contract_name": v.subscription.contract_name,
                    "distribution_count": v.subscription.distribution_count,
                    **figures_json(v.figures),
                    "payments": [payment_json(p) for p in v.payments],
                }
                for v in views
            ],
        }
