"""The member's own pages: My account (balance in words, the statement with pending payments
marked, my orders, my subscriptions), ordering for a distribution with the choice of how to pay
(R8, R9, R13), the instructions for paying (cheque payee and reference, transfer IBAN, BIC,
reference and EPC QR code, the card checkout and its outcome: R10, R11, R14, R21), and adding
products to a basket not yet validated (R6: never removing)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cagette_runtime.errors import Invalid

from ..adapters import ServiceRefused
from ..domain import parse_quantity
from .common import GroupVisit, Visit, back_to, group_of

router = APIRouter(include_in_schema=False)

WEIGHED_UNITS = ("kg", "litre")
# Methods whose payment the member makes later by hand, against a reference (R10, R11).
REFERENCED_METHODS = ("cheque", "transfer")


def balance_words(visit: Visit, balance: dict[str, Any]) -> str:
    """ "vous devez 14,65 €", "vous avez 6,00 € d'avance", "à jour" (R4)."""
    amount, currency = balance["amount"], balance["currency"]
    if amount < 0:
        return visit.t("member.you_owe", amount=visit.formats.money(-amount, currency))
    if amount > 0:
        return visit.t("member.in_reserve", amount=visit.formats.money(amount, currency))
    return visit.t("member.settled")


def _basket(order: dict[str, Any]) -> dict[str, Decimal]:
    """What the member holds in an order: its lines and those of its confirmed additions."""
    counted = {a["amendment_id"] for a in order["amendments"] if a["status"] == "confirmed"}
    held: dict[str, Decimal] = {}
    for line in order["lines"]:
        if line.get("amendment_id") is None or line["amendment_id"] in counted:
            held[line["product_id"]] = held.get(line["product_id"], Decimal(0)) + Decimal(line["quantity"])
    return held


def _can_add(group: Any, order: dict[str, Any], distribution: dict[str, Any] | None) -> bool:
    return bool(
        group.settings.get("payments_enabled")
        and order["status"] == "confirmed"
        and not order["locked"]
        and distribution is not None
        and distribution["open_for_orders"]
    )


async def _distributions(visit: Visit, group_id: UUID) -> dict[str, dict[str, Any]]:
    found = await visit.apis.get_all("orders", f"/groups/{group_id}/distributions")
    return {d["distribution_id"]: d for d in found}


async def _products(visit: Visit, group_id: UUID, distribution: dict[str, Any]) -> list[dict[str, Any]]:
    """The products one can order at a distribution: those of its variable catalogs."""
    catalogs = await asyncio.gather(
        *(visit.apis.get("orders", f"/groups/{group_id}/catalogs/{c}") for c in distribution["catalog_ids"])
    )
    return [
        {**product, "catalog_name": catalog["name"], "weighed": product["unit"] in WEIGHED_UNITS}
        for catalog in catalogs
        if catalog["kind"] == "variable"
        for product in catalog["products"]
    ]


# ------------------------------------------------------------------ my account


@router.get("/groups/{group_id}/me", response_class=HTMLResponse)
async def my_account(group_id: UUID, visit: GroupVisit) -> Response:
    me = f"/groups/{group_id}/members/{visit.person_id}"
    balance, statement, orders, distributions, subscriptions = await asyncio.gather(
        visit.apis.get("ledger", f"{me}/balance"),
        visit.apis.get("ledger", f"{me}/statement", limit=50),
        visit.apis.get_all("orders", f"/groups/{group_id}/orders"),
        _distributions(visit, group_id),
        visit.apis.get_all("orders", f"/groups/{group_id}/subscriptions"),
    )
    group = group_of(visit)
    shown = [
        {
            **order,
            "distribution": distributions.get(order["distribution_id"] or ""),
            "can_add": _can_add(group, order, distributions.get(order["distribution_id"] or "")),
        }
        for order in reversed(orders)
        if order["status"] not in ("abandoned", "cancelled")
    ]
    return visit.render(
        "member/account.html",
        balance=balance,
        words=balance_words(visit, balance["balance"]),
        statement=statement,
        orders=shown,
        subscriptions=subscriptions,
    )


# ------------------------------------------------------------------ ordering (R8, R9, R13)


def _methods(visit: Visit) -> list[str]:
    settings = group_of(visit).settings
    return list(settings.get("payment_methods") or []) if settings.get("payments_enabled") else []


def _typed_lines(products: list[dict[str, Any]], typed: dict[str, str]) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The lines typed in the form (product -> quantity), and the products whose quantity is wrong."""
    lines: list[dict[str, str]] = []
    errors: dict[str, str] = {}
    for product in products:
        try:
            quantity = parse_quantity(typed.get(product["product_id"], ""), weighed=product["weighed"])
        except Invalid as refused:
            errors[product["product_id"]] = refused.reason
            continue
        if quantity is not None:
            lines.append({"product_id": product["product_id"], "quantity": str(quantity)})
    return lines, errors


async def _typed(request: Request) -> dict[str, str]:
    form = await request.form()
    return {
        str(key)[2:]: str(value)[:20]
        for key, value in form.items()
        if str(key).startswith("q-") and isinstance(value, str)
    }


def _pot_refusal(visit: Visit, refused: ServiceRefused) -> str:
    """R13: a money-pot order the balance does not cover, with the amount available."""
    context = refused.context
    available, needed = context.get("available"), context.get("needed")
    if refused.status_code == 409 and isinstance(available, dict) and isinstance(needed, dict):
        return visit.t(
            "order.pot_refused",
            available=visit.formats.money(available["amount"], available["currency"]),
            needed=visit.formats.money(needed["amount"], needed["currency"]),
        )
    return visit.refusal(refused)


async def _order_form(
    visit: Visit,
    group_id: UUID,
    distribution_id: str,
    *,
    typed: dict[str, str] | None = None,
    method: str = "",
    errors: dict[str, str] | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> Response:
    distributions = await _distributions(visit, group_id)
    open_ones = [d for d in distributions.values() if d["open_for_orders"]]
    chosen = distributions.get(distribution_id)
    products: list[dict[str, Any]] = []
    if chosen is not None and chosen["open_for_orders"]:
        mine = await visit.apis.get_all("orders", f"/groups/{group_id}/orders", distribution_id=distribution_id)
        active = [o for o in mine if o["status"] in ("confirmed", "awaiting_payment", "payment_failed")]
        if active and typed is None:
            target = "add" if active[0]["status"] == "confirmed" else ""
            return RedirectResponse(f"/groups/{group_id}/orders/{active[0]['order_id']}/{target}".rstrip("/"), 303)
        products = await _products(visit, group_id, chosen)
    elif distribution_id:
        message = message or visit.t("order.not_open")
        chosen = None
    return visit.render(
        "member/order.html",
        status_code=status_code,
        message=message,
        distributions=open_ones,
        chosen=chosen,
        products=products,
        methods=_methods(visit),
        typed=typed or {},
        method=method,
        errors=errors or {},
    )


@router.get("/groups/{group_id}/order", response_class=HTMLResponse)
async def order_page(
    group_id: UUID, visit: GroupVisit, distribution_id: Annotated[str, Query(max_length=40)] = ""
) -> Response:
    return await _order_form(visit, group_id, distribution_id)


@router.post("/groups/{group_id}/order", response_class=HTMLResponse)
async def place_order(
    group_id: UUID,
    request: Request,
    visit: GroupVisit,
    csrf_token: Annotated[str, Form()] = "",
    distribution_id: Annotated[str, Form(max_length=40)] = "",
    payment_method: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    visit.check_csrf(csrf_token)
    typed = await _typed(request)
    distributions = await _distributions(visit, group_id)
    chosen = distributions.get(distribution_id)
    if chosen is None or not chosen["open_for_orders"]:
        return await _order_form(visit, group_id, "", message=visit.t("order.not_open"), status_code=409)

    def again(message: str, status_code: int, errors: dict[str, str] | None = None) -> Any:
        return _order_form(
            visit,
            group_id,
            distribution_id,
            typed=typed,
            method=payment_method,
            errors=errors,
            message=message,
            status_code=status_code,
        )

    lines, errors = _typed_lines(await _products(visit, group_id, chosen), typed)
    if errors:
        return await again(visit.t("order.fix_quantities"), 422, errors)
    if not lines:
        return await again(visit.t("order.nothing_chosen"), 422)
    methods = _methods(visit)
    if methods and payment_method not in methods:
        return await again(visit.t("order.choose_method"), 422)  # R8: no method, no order
    body: dict[str, Any] = {"distribution_id": distribution_id, "lines": lines}
    if methods:
        body["payment_method"] = payment_method
    try:
        order = await visit.apis.post("orders", f"/groups/{group_id}/orders", json=body)
    except ServiceRefused as refused:
        return await again(_pot_refusal(visit, refused), refused.status_code if refused.status_code < 500 else 400)
    return back_to(f"/groups/{group_id}/orders/{order['order_id']}", done="order.placed")


# ------------------------------------------------------------------ adding to an order (R6)


async def _add_form(
    visit: Visit,
    group_id: UUID,
    order: dict[str, Any],
    *,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> Response:
    distributions = await _distributions(visit, group_id)
    distribution = distributions.get(order["distribution_id"] or "")
    if not _can_add(group_of(visit), order, distribution):
        return visit.render(
            "member/add.html",
            status_code=409,
            message=visit.t("add.closed"),
            order=order,
            distribution=distribution,
            products=[],
            held={},
            typed={},
            errors={},
        )
    assert distribution is not None
    return visit.render(
        "member/add.html",
        status_code=status_code,
        message=message,
        order=order,
        distribution=distribution,
        products=await _products(visit, group_id, distribution),
        held={product: str(quantity) for product, quantity in _basket(order).items()},
        typed=typed or {},
        errors=errors or {},
    )


@router.get("/groups/{group_id}/orders/{order_id}/add", response_class=HTMLResponse)
async def add_page(group_id: UUID, order_id: UUID, visit: GroupVisit) -> Response:
    order = await visit.apis.get("orders", f"/groups/{group_id}/orders/{order_id}")
    return await _add_form(visit, group_id, order)


@router.post("/groups/{group_id}/orders/{order_id}/add", response_class=HTMLResponse)
async def add_to_order(
    group_id: UUID, order_id: UUID, request: Request, visit: GroupVisit, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    visit.check_csrf(csrf_token)
    typed = await _typed(request)
    order = await visit.apis.get("orders", f"/groups/{group_id}/orders/{order_id}")
    distribution = (await _distributions(visit, group_id)).get(order["distribution_id"] or "")
    if distribution is None:
        return await _add_form(visit, group_id, order)
    added, errors = _typed_lines(await _products(visit, group_id, distribution), typed)
    if errors:
        return await _add_form(
            visit, group_id, order, typed=typed, errors=errors, message=visit.t("order.fix_quantities"), status_code=422
        )
    if not added:
        return await _add_form(
            visit, group_id, order, typed=typed, message=visit.t("add.nothing_added"), status_code=422
        )
    basket = _basket(order)
    for line in added:
        basket[line["product_id"]] = basket.get(line["product_id"], Decimal(0)) + Decimal(line["quantity"])
    before = {a["amendment_id"] for a in order["amendments"]}
    try:
        changed = await visit.apis.put(
            "orders",
            f"/groups/{group_id}/orders/{order_id}",
            json={"lines": [{"product_id": p, "quantity": str(q)} for p, q in basket.items()]},
        )
    except ServiceRefused as refused:
        return await _add_form(
            visit, group_id, order, typed=typed, message=_pot_refusal(visit, refused), status_code=refused.status_code
        )
    new = [a["amendment_id"] for a in changed["amendments"] if a["amendment_id"] not in before]
    return back_to(f"/groups/{group_id}/orders/{order_id}", done="add.added", **({"amendment": new[-1]} if new else {}))


# ------------------------------------------------------------------ how to pay (R10, R11, R14, R21)


async def _declared_payment(
    visit: Visit, group_id: UUID, order_id: UUID, amendment: str | None
) -> dict[str, Any] | None:
    """The payment the payments service declared for this order (or this addition to it)."""
    payments = await visit.apis.get_all("payments", f"/groups/{group_id}/members/{visit.person_id}/payments")
    for payment in payments:
        same_part = payment["order_id"] == str(order_id) and payment["amendment_id"] == amendment
        if same_part and payment["kind"] == "payment":
            return payment
    return None


@router.get("/groups/{group_id}/orders/{order_id}", response_class=HTMLResponse)
async def order_payment_page(
    group_id: UUID,
    order_id: UUID,
    visit: GroupVisit,
    amendment: Annotated[UUID | None, Query()] = None,
    result: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    """The order and how to pay it (or the addition `amendment`); also where the card checkout
    sends the member back (`result=success|cancel`): only the webhook's outcome counts (B6), so
    an order still awaiting payment is shown as waiting, and the page looks again every 2 s."""
    group = group_of(visit)
    order = await visit.apis.get("orders", f"/groups/{group_id}/orders/{order_id}")
    distribution = (await _distributions(visit, group_id)).get(order["distribution_id"] or "")
    part = str(amendment) if amendment else None
    if part is not None and part not in {a["amendment_id"] for a in order["amendments"]}:
        part = None
    method = order["payment_method"]
    payment = instructions = None
    if method in REFERENCED_METHODS:
        payment = await _declared_payment(visit, group_id, order_id, part)
        if method == "transfer" and payment is not None and payment["state"] == "declared":
            try:
                instructions = await visit.apis.get(
                    "payments", f"/groups/{group_id}/payments/{payment['payment_id']}/transfer-instructions"
                )
            except ServiceRefused:
                instructions = None
    card_state = order["status"]
    if part is not None:
        card_state = next(a["status"] for a in order["amendments"] if a["amendment_id"] == part)
    waiting = (method in REFERENCED_METHODS and payment is None) or (
        method == "card" and result == "success" and card_state == "awaiting_payment"
    )
    balance = None
    if method == "money_pot":
        found = await visit.apis.get("ledger", f"/groups/{group_id}/members/{visit.person_id}/balance")
        balance = balance_words(visit, found["balance"])
    part_amount = order["total"]
    if part is not None:
        part_amount = next(a["added_total"] for a in order["amendments"] if a["amendment_id"] == part)
    # Products a coordinator took off as not delivered (R6) lower what is still to pay for this part.
    taken_off = _taken_off(order, part)
    to_pay = None
    if payment is not None and payment["state"] == "declared" and taken_off:
        to_pay = {**payment["amount"], "amount": max(payment["amount"]["amount"] - taken_off, 0)}
    return visit.render(
        "member/pay.html",
        order=order,
        distribution=distribution,
        part=part,
        part_amount=part_amount,
        method=method,
        payment=payment,
        instructions=instructions,
        cheque_payee=group.settings.get("cheque_payee"),
        card_state=card_state,
        result=result,
        waiting=waiting,
        balance_words=balance,
        can_add=_can_add(group, order, distribution),
        reload=str(visit.request.url.include_query_params()),
        taken_off=taken_off,
        to_pay=to_pay,
    )


def _taken_off(order: dict[str, Any], part: str | None) -> int:
    """What was taken off this part of the order (the order itself, or one addition) as not
    delivered, in minor units."""
    return sum(
        removal["amount"]["amount"]
        for line in order["lines"]
        if line.get("amendment_id") == part
        for removal in line.get("removals") or []
    )


@router.get("/groups/{group_id}/payments/{payment_id}/epc-qr.png")
async def epc_qr(group_id: UUID, payment_id: UUID, visit: GroupVisit) -> Response:
    """The transfer's EPC QR code, fetched from payments with the member's token (the browser has none)."""
    answer = await visit.apis.call(
        "payments", "GET", f"/groups/{group_id}/payments/{payment_id}/epc-qr", params={"image": "png"}
    )
    return Response(answer.content, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/groups/{group_id}/orders/{order_id}/card-checkout")
async def card_checkout(
    group_id: UUID, order_id: UUID, visit: GroupVisit, amendment: Annotated[UUID | None, Query()] = None
) -> Response:
    """Off to the card provider's checkout page. The payments service answers the same open
    attempt when asked again, so following this link twice never charges twice (R21)."""
    body = {"amendment_id": str(amendment)} if amendment else None
    try:
        started = await visit.apis.post("payments", f"/groups/{group_id}/orders/{order_id}/card-payment", json=body)
    except ServiceRefused as refused:
        target = f"/groups/{group_id}/orders/{order_id}"
        return visit.render(
            "member/card_refused.html",
            status_code=refused.status_code,
            message=visit.refusal(refused),
            back=target,
        )
    if not started.get("checkout_url"):
        return back_to(f"/groups/{group_id}/orders/{order_id}", done="pay.card_not_ready")
    return RedirectResponse(started["checkout_url"], status_code=303)
