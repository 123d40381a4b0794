"""Distribution validation (R20, B3), for coordinators: the group's distributions; a
distribution's baskets with their state (filter "to validate"); one basket with what was
ordered, what was paid, the pending declared payments and the difference, and the actions of
the evening (confirm a payment correcting its amount and method, cancel it, add a payment,
record a refund, validate, "confirm all and validate", an administrator's undo); validating the
whole distribution with the baskets that could not be and why; the takings with their CSV.

Everything is asked of the services with the coordinator's token: distributions from orders,
baskets, payments and takings from payments (which refuses what the rules refuse)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Path, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from cagette_runtime.errors import Invalid

from ..adapters import ServiceRefused
from ..domain import AmountRefused, parse_amount, parse_quantity
from .common import CoordinatorVisit, Visit, back_to, csv_download, group_of

router = APIRouter(include_in_schema=False)

# The methods a coordinator can say a payment was actually made with (payments' manual methods).
MANUAL_METHODS = ("cash", "cheque", "transfer", "card_terminal")
ON_THE_SPOT_METHODS = ("cash", "cheque", "card_terminal")
Show = Literal["all", "to_validate"]
MAX_REPORTED = 200


def _base(group_id: UUID, distribution_id: UUID) -> str:
    return f"/groups/{group_id}/distributions/{distribution_id}"


def _upcoming_first(distributions: list[dict[str, Any]], moment: datetime) -> list[dict[str, Any]]:
    """The next distributions first (soonest first), then the past ones (most recent first)."""
    coming = [d for d in distributions if datetime.fromisoformat(d["starts_at"]) >= moment]
    past = [d for d in distributions if datetime.fromisoformat(d["starts_at"]) < moment]
    return sorted(coming, key=lambda d: d["starts_at"]) + sorted(past, key=lambda d: d["starts_at"], reverse=True)


def _state(baskets: dict[str, Any]) -> str:
    if not baskets["baskets"]:
        return "no_basket"
    return "validated" if baskets["to_validate"] == 0 else "to_validate"


@router.get("/groups/{group_id}/distributions", response_class=HTMLResponse)
async def distributions_page(group_id: UUID, visit: CoordinatorVisit) -> Response:
    found = _upcoming_first(await visit.apis.get_all("orders", f"/groups/{group_id}/distributions"), datetime.now(UTC))
    baskets = await asyncio.gather(
        *(visit.apis.get("payments", f"{_base(group_id, d['distribution_id'])}/baskets") for d in found)
    )
    rows = [
        {**d, "state": _state(b), "baskets": len(b["baskets"]), "to_validate": b["to_validate"]}
        for d, b in zip(found, baskets, strict=True)
    ]
    return visit.render("distributions/list.html", distributions=rows)


async def _distribution(visit: Visit, group_id: UUID, distribution_id: UUID) -> dict[str, Any]:
    found: dict[str, Any] = await visit.apis.get("orders", _base(group_id, distribution_id))
    return found


def _ids(text: str) -> list[UUID]:
    out = []
    for part in text.split(",")[:MAX_REPORTED]:
        try:
            out.append(UUID(part))
        except ValueError:
            continue
    return out


@router.get("/groups/{group_id}/distributions/{distribution_id}", response_class=HTMLResponse)
async def distribution_page(
    group_id: UUID,
    distribution_id: UUID,
    visit: CoordinatorVisit,
    show: Show = "all",
    validated: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    blocked: Annotated[str, Query(max_length=MAX_REPORTED * 37)] = "",
) -> Response:
    distribution, baskets = await asyncio.gather(
        _distribution(visit, group_id, distribution_id),
        visit.apis.get("payments", f"{_base(group_id, distribution_id)}/baskets"),
    )
    baskets["baskets"].sort(key=lambda b: (b["member_name"].casefold(), b["member_id"]))
    shown = [b for b in baskets["baskets"] if show == "all" or b["state"] == "to_validate"]
    by_member = {b["member_id"]: b for b in baskets["baskets"]}
    report = None
    if validated is not None:
        report = {
            "validated": validated,
            "blocked": [by_member[str(m)] for m in _ids(blocked) if str(m) in by_member],
        }
    return visit.render(
        "distributions/baskets.html",
        distribution=distribution,
        baskets=baskets,
        shown=shown,
        show=show,
        report=report,
    )


@router.post("/groups/{group_id}/distributions/{distribution_id}/validate", response_class=HTMLResponse)
async def validate_distribution(
    group_id: UUID, distribution_id: UUID, visit: CoordinatorVisit, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    visit.check_csrf(csrf_token)
    try:
        report = await visit.apis.post("payments", f"{_base(group_id, distribution_id)}/validate")
    except ServiceRefused as refused:
        distribution, baskets = await asyncio.gather(
            _distribution(visit, group_id, distribution_id),
            visit.apis.get("payments", f"{_base(group_id, distribution_id)}/baskets"),
        )
        return visit.render(
            "distributions/baskets.html",
            status_code=409 if refused.status_code == 409 else 400,
            message=visit.refusal(refused),
            distribution=distribution,
            baskets=baskets,
            shown=baskets["baskets"],
            show="all",
            report=None,
        )
    blocked = [entry["member_id"] for entry in report["not_validated"]]
    return back_to(
        _base(group_id, distribution_id),
        done="distribution.validated_notice",
        validated=str(len(report["validated"])),
        blocked=",".join(blocked[:MAX_REPORTED]),
    )


# -- one basket ------------------------------------------------------------------------------


@dataclass
class Typed:
    """What the coordinator typed in the form that was refused, to show it again."""

    form: str = ""
    payment_id: str = ""
    values: dict[str, str] = field(default_factory=dict)


BASKET = "/groups/{group_id}/distributions/{distribution_id}/baskets/{member_id}"


@dataclass(frozen=True)
class BasketRef:
    """One member's basket at a distribution, as the page's path (BASKET) names it."""

    group_id: UUID
    distribution_id: UUID
    member_id: UUID

    @property
    def path(self) -> str:
        """The basket on payments (the page has the same path)."""
        return f"{_base(self.group_id, self.distribution_id)}/baskets/{self.member_id}"


BasketPath = Annotated[BasketRef, Depends()]


async def _basket_page(
    visit: Visit, ref: BasketRef, *, typed: Typed | None = None, message: str | None = None, status_code: int = 200
) -> Response:
    distribution, basket, orders = await asyncio.gather(
        _distribution(visit, ref.group_id, ref.distribution_id),
        visit.apis.get("payments", ref.path),
        visit.apis.get_all(
            "orders",
            f"/groups/{ref.group_id}/orders",
            distribution_id=str(ref.distribution_id),
            member_id=str(ref.member_id),
        ),
    )
    pending = [p for p in basket["payments"] if p["state"] == "declared"]
    return visit.render(
        "distributions/basket.html",
        status_code=status_code,
        message=message,
        distribution=distribution,
        basket=basket,
        pending=pending,
        others=[p for p in basket["payments"] if p["state"] != "declared"],
        lines=_held_lines(orders),
        needs_on_the_spot=any(p["method"] == "on_the_spot" for p in pending),
        manual_methods=MANUAL_METHODS,
        on_the_spot_methods=ON_THE_SPOT_METHODS,
        typed=typed or Typed(),
        is_admin=visit.me.account.platform_admin,
    )


def _held_lines(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines of the member's confirmed orders (and confirmed additions) for the distribution,
    as orders has them: numbered, with what was taken off as not delivered (R6)."""
    held = []
    for order in orders:
        if order["status"] != "confirmed":
            continue
        counted = {a["amendment_id"] for a in order["amendments"] if a["status"] == "confirmed"}
        for line in order["lines"]:
            if line.get("amendment_id") is None or line["amendment_id"] in counted:
                left = Decimal(line["quantity"]) - Decimal(line.get("removed_quantity") or 0)
                held.append({**line, "order_id": order["order_id"], "quantity_left": left})
    return held


@router.get(BASKET, response_class=HTMLResponse)
async def basket_page(ref: BasketPath, visit: CoordinatorVisit) -> Response:
    return await _basket_page(visit, ref)


async def _act(
    visit: Visit, ref: BasketRef, path: str, body: dict[str, Any] | None, done: str, typed: Typed, *, then: str = ""
) -> Response:
    """Send one action to payments; back to the basket (or `then`) with a notice, or the
    basket again with the refusal and what was typed."""
    try:
        await visit.apis.post("payments", path, json=body)
    except ServiceRefused as refused:
        status = refused.status_code if refused.status_code in (409, 422) else 400
        return await _basket_page(visit, ref, typed=typed, message=visit.refusal(refused), status_code=status)
    return back_to(then or ref.path, done=done)


def _money(visit: Visit, text: str) -> dict[str, Any]:
    currency = group_of(visit).currency
    return {"amount": parse_amount(text, currency), "currency": currency}


def _method(method: str, allowed: tuple[str, ...]) -> str:
    if method not in allowed:
        raise AmountRefused("distribution.method_invalid")
    return method


@router.post(f"{BASKET}/payments/{{payment_id}}/confirm", response_class=HTMLResponse)
async def confirm_payment(
    ref: BasketPath,
    payment_id: UUID,
    visit: CoordinatorVisit,
    amount: Annotated[str, Form(max_length=40)],
    method: Annotated[str, Form(max_length=20)],
    declared_amount: Annotated[int, Form()],
    declared_method: Annotated[str, Form(max_length=20)],
    label: Annotated[str, Form(max_length=200)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    visit.check_csrf(csrf_token)
    typed = Typed("confirm", str(payment_id), {"amount": amount, "method": method, "label": label, "note": note})
    try:
        received = _money(visit, amount)
        actual = _method(method, MANUAL_METHODS)
    except AmountRefused as bad:
        return await _basket_page(visit, ref, typed=typed, message=visit.t(bad.reason, **bad.details), status_code=422)
    # Only what differs from the declaration is sent as a correction (payments keeps both).
    body: dict[str, Any] = {"note": note.strip()}
    if received["amount"] != declared_amount:
        body["amount"] = received
    if actual != declared_method:
        body["method"] = actual
    if label.strip():
        body["label"] = label.strip()
    path = f"/groups/{ref.group_id}/payments/{payment_id}/confirm"
    return await _act(visit, ref, path, body, "distribution.confirmed_notice", typed)


@router.post(f"{BASKET}/payments/{{payment_id}}/cancel", response_class=HTMLResponse)
async def cancel_payment(
    ref: BasketPath,
    payment_id: UUID,
    visit: CoordinatorVisit,
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    visit.check_csrf(csrf_token)
    path = f"/groups/{ref.group_id}/payments/{payment_id}/cancel"
    typed = Typed("cancel", str(payment_id), {"reason": reason})
    return await _act(visit, ref, path, {"reason": reason.strip()}, "distribution.cancelled_notice", typed)


class MoneyForm(BaseModel):
    """Money handed over for the basket: a payment received or a refund given, with its method,
    amount and a label or reason; payments records it at `<basket>/<kind>`."""

    kind: ClassVar[str]
    typed_as: ClassVar[str]  # the form on the page
    done: ClassVar[str]
    amount: Annotated[str, Field(max_length=40)]
    method: Annotated[str, Field(max_length=20)]
    csrf_token: str = ""

    def said(self) -> dict[str, str]:
        """The label or reason, when there is one."""
        raise NotImplementedError


async def _record_money(visit: Visit, ref: BasketRef, form: MoneyForm) -> Response:
    visit.check_csrf(form.csrf_token)
    typed = Typed(form.typed_as, "", form.model_dump(exclude={"csrf_token"}))
    try:
        body = {"amount": _money(visit, form.amount), "method": _method(form.method, MANUAL_METHODS), **form.said()}
    except AmountRefused as bad:
        return await _basket_page(visit, ref, typed=typed, message=visit.t(bad.reason, **bad.details), status_code=422)
    return await _act(visit, ref, f"{ref.path}/{form.kind}", body, form.done, typed)


class PaymentForm(MoneyForm):
    kind = "payments"
    typed_as = "payment"
    done = "distribution.payment_added_notice"
    label: Annotated[str, Field(max_length=200)] = ""

    def said(self) -> dict[str, str]:
        return {"label": self.label.strip()} if self.label.strip() else {}


@router.post(f"{BASKET}/payments", response_class=HTMLResponse)
async def add_payment(ref: BasketPath, visit: CoordinatorVisit, form: Annotated[PaymentForm, Form()]) -> Response:
    return await _record_money(visit, ref, form)


class RefundForm(MoneyForm):
    kind = "refunds"
    typed_as = "refund"
    done = "distribution.refunded_notice"
    reason: Annotated[str, Field(max_length=500)] = ""

    def said(self) -> dict[str, str]:
        return {"reason": self.reason.strip()} if self.reason.strip() else {}


@router.post(f"{BASKET}/refunds", response_class=HTMLResponse)
async def add_refund(ref: BasketPath, visit: CoordinatorVisit, form: Annotated[RefundForm, Form()]) -> Response:
    return await _record_money(visit, ref, form)


@router.post(f"{BASKET}/orders/{{order_id}}/lines/{{line_number}}/undelivered", response_class=HTMLResponse)
async def take_off_undelivered(
    ref: BasketPath,
    order_id: UUID,
    line_number: Annotated[int, Path(ge=1, le=100_000)],
    visit: CoordinatorVisit,
    quantity: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=300)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """R6: a product the producer could not deliver, taken off the member's order with a reason
    (orders refuses what the rule refuses: more than is left, no reason)."""
    visit.check_csrf(csrf_token)
    typed = Typed("undelivered", f"{order_id}:{line_number}", {"quantity": quantity, "reason": reason})
    body: dict[str, Any] = {"reason": reason.strip()}
    if quantity.strip():
        try:
            # Orders says whether a fraction of a piece is refused; zero takes nothing off.
            parsed = parse_quantity(quantity, weighed=True)
            if parsed is None:
                raise Invalid("zero")
            body["quantity"] = str(parsed)
        except Invalid:
            message = visit.t("distribution.undelivered_quantity_invalid")
            return await _basket_page(visit, ref, typed=typed, message=message, status_code=422)
    path = f"/groups/{ref.group_id}/orders/{order_id}/lines/{line_number}/undelivered"
    try:
        await visit.apis.post("orders", path, json=body)
    except ServiceRefused as refused:
        status = refused.status_code if refused.status_code in (403, 404, 409, 422) else 400
        return await _basket_page(visit, ref, typed=typed, message=visit.refusal(refused), status_code=status)
    return back_to(ref.path, done="distribution.undelivered_notice")


@router.post(f"{BASKET}/validate", response_class=HTMLResponse)
async def validate_basket(
    ref: BasketPath,
    visit: CoordinatorVisit,
    confirm_all: Annotated[str, Form(max_length=5)] = "",
    on_the_spot_method: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Validate the basket; with `confirm_all`, first confirm every pending payment as declared."""
    visit.check_csrf(csrf_token)
    path = ref.path
    typed = Typed("validate", "", {"on_the_spot_method": on_the_spot_method})
    body: dict[str, Any] | None = None
    if confirm_all:
        path += "/confirm-all-and-validate"
        if on_the_spot_method:
            try:
                body = {"on_the_spot_method": _method(on_the_spot_method, ON_THE_SPOT_METHODS)}
            except AmountRefused as bad:
                message = visit.t(bad.reason, **bad.details)
                return await _basket_page(visit, ref, typed=typed, message=message, status_code=422)
    else:
        path += "/validate"
    done = "distribution.basket_validated_notice"
    return await _act(visit, ref, path, body, done, typed, then=_base(ref.group_id, ref.distribution_id))


@router.post(f"{BASKET}/unvalidate", response_class=HTMLResponse)
async def unvalidate_basket(
    ref: BasketPath, visit: CoordinatorVisit, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Platform administrators only (payments checks it too)."""
    visit.check_csrf(csrf_token)
    return await _act(visit, ref, f"{ref.path}/unvalidate", None, "distribution.unvalidated_notice", Typed())


# -- takings -----------------------------------------------------------------------------------


@router.get("/groups/{group_id}/distributions/{distribution_id}/takings", response_class=HTMLResponse)
async def takings_page(group_id: UUID, distribution_id: UUID, visit: CoordinatorVisit) -> Response:
    distribution = await _distribution(visit, group_id, distribution_id)
    try:
        takings = await visit.apis.get("payments", f"{_base(group_id, distribution_id)}/takings")
    except ServiceRefused as refused:
        if refused.status_code != 404:
            raise
        takings = None  # no basket yet: nothing taken
    return visit.render("distributions/takings.html", distribution=distribution, takings=takings)


@router.get("/groups/{group_id}/distributions/{distribution_id}/takings.csv")
async def takings_csv(group_id: UUID, distribution_id: UUID, visit: CoordinatorVisit) -> Response:
    answer = await visit.apis.call("payments", "GET", f"{_base(group_id, distribution_id)}/takings.csv")
    return csv_download(answer, "takings.csv")
