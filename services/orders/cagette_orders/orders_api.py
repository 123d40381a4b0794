"""Orders HTTP API, part 2: baskets (variable orders) and subscriptions. Request schemas and
thin endpoints; what each action does is in usecases.py, the rules in domain.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from cagette_contracts import PaymentMethod
from cagette_contracts.inputs import SINGLE_LINE, AsciiDecimal, RequestBody
from cagette_runtime import idempotency
from cagette_runtime.auth import CurrentPrincipal
from cagette_runtime.db import Database
from cagette_runtime.http import DatabaseDep
from cagette_runtime.pagination import PAGINATED, Page

from . import domain, store, usecases
from .holds import LedgerHolds
from .store import OrderOut, SubscriptionOut

router = APIRouter(route_class=idempotency.IdempotentRoute)


def ledger_holds(request: Request) -> LedgerHolds:
    """The service's LedgerHolds (settings: CAGETTE_ORDERS_HOLD_*), unless app.state.holds replaces it."""
    holds: LedgerHolds | None = getattr(request.app.state, "holds", None)
    if holds is None:
        service = request.app.state.service
        holds = request.app.state.holds = getattr(service, "holds", None) or LedgerHolds(service.broker)
    return holds


HoldsDep = Annotated[LedgerHolds, Depends(ledger_holds)]
_Route = TypeVar("_Route", bound=Callable[..., Any])
_TAGS: dict[type[BaseModel], str] = {OrderOut: "orders", SubscriptionOut: "subscriptions"}


def _changes(
    declare: Callable[..., Callable[[_Route], _Route]], path: str, answer: type[BaseModel], *, created: bool = False
) -> Callable[[_Route], _Route]:
    """A route that changes an order or a subscription and answers it as it is now: an
    Idempotency-Key is required (a retry gets the first answer); 201 when it `created` one."""
    status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return declare(
        path, dependencies=[idempotency.REQUIRED], status_code=status_code, response_model=answer, tags=[_TAGS[answer]]
    )


async def _order_now(database: Database, group_id: UUID, order_id: UUID) -> OrderOut:
    async with database.transaction() as session:
        return await store.load_order(session, group_id, order_id)


async def _subscription_now(database: Database, group_id: UUID, subscription_id: UUID) -> SubscriptionOut:
    async with database.transaction() as session:
        return await store.load_subscription(session, group_id, subscription_id)


class LineIn(RequestBody):
    product_id: UUID
    quantity: Annotated[
        AsciiDecimal, Field(max_digits=12, decimal_places=3, description="Fractions only for kg / litre products")
    ]


def _requested(lines: list[LineIn]) -> list[domain.LineRequest]:
    return [domain.LineRequest(line.product_id, line.quantity) for line in lines]


class OrderIn(RequestBody):
    distribution_id: UUID
    payment_method: PaymentMethod | None = Field(default=None, description="Required with payments on (R8)")
    lines: list[LineIn] = Field(min_length=1, max_length=200)


class BasketIn(RequestBody):
    lines: list[LineIn] = Field(
        min_length=1,
        max_length=200,
        description="The whole basket wanted. With payments on it may only grow (R6): the difference is added.",
    )


class UndeliveredIn(RequestBody):
    quantity: (
        Annotated[
            AsciiDecimal,
            Field(
                gt=0,
                max_digits=12,
                decimal_places=3,
                description="How much of the line was not delivered; all that is left of it when omitted",
            ),
        ]
        | None
    ) = None
    reason: Annotated[
        str,
        Field(min_length=1, max_length=domain.MAX_UNDELIVERED_REASON, description="Why, in words the member reads"),
        SINGLE_LINE,
    ]


class SubscriptionIn(RequestBody):
    payment_method: PaymentMethod | None = Field(default=None, description="Optional; if given, one the group offers")
    lines: list[LineIn] = Field(
        min_length=1, max_length=100, description="Products and quantities for every distribution"
    )


# ------------------------------------------------------------------ orders


@_changes(router.post, "/groups/{group_id}/orders", OrderOut, created=True)
async def place_order(
    group_id: UUID, body: OrderIn, principal: CurrentPrincipal, database: DatabaseDep, holds: HoldsDep
) -> OrderOut:
    """Validate your basket for a distribution with a payment method (R8).

    cheque, cash, transfer, on the spot, money pot with negatives allowed: confirmed at once
    (OrderConfirmed). Money pot without negatives: the ledger must hold the amount first, or the
    order is refused (409, with the available amount); no answer from the ledger -> 503. Card:
    the order waits for the card payment (status awaiting_payment, OrderAwaitingPayment).
    Payments off (R1): recorded, no money events."""
    command = usecases.PlaceOrder(group_id, body.distribution_id, body.payment_method, _requested(body.lines))
    return await usecases.place_order(database, holds, principal, command)


@router.get("/groups/{group_id}/orders/{order_id}", response_model=OrderOut, tags=["orders"])
async def get_order(group_id: UUID, order_id: UUID, principal: CurrentPrincipal, database: DatabaseDep) -> OrderOut:
    """An order with its lines and additions (its member, or a coordinator)."""
    async with database.transaction() as session:
        return await usecases.get_order(session, principal, group_id, order_id)


@router.get("/groups/{group_id}/orders", response_model=list[OrderOut], tags=["orders"], responses=PAGINATED)
async def list_orders(
    group_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    page: Page,
    response: Response,
    distribution_id: Annotated[UUID | None, Query()] = None,
    member_id: Annotated[UUID | None, Query()] = None,
) -> list[OrderOut]:
    """Orders of the group (coordinators) or your own (members), optionally for one distribution;
    oldest first, one page at a time."""
    async with database.transaction() as session:
        query = usecases.ListOrders(group_id, member_id=member_id, page=page, distribution_id=distribution_id)
        found = await usecases.list_orders(session, principal, query)
    return page.finish(found, lambda order: (order.created_at, order.order_id), response)


@_changes(router.put, "/groups/{group_id}/orders/{order_id}", OrderOut)
async def change_order(
    group_id: UUID, order_id: UUID, body: BasketIn, principal: CurrentPrincipal, database: DatabaseDep, holds: HoldsDep
) -> OrderOut:
    """Change a basket until the cut-off (its member, or a coordinator).

    Payments off (R1): any change, no money events. Payments on (R6): the basket may only grow;
    what is added is paid by the order's method under the same rules as an order and publishes
    OrderAmended (card: after the card payment). Removing or lowering is refused with the reason."""
    command = usecases.ChangeOrder(group_id, order_id, _requested(body.lines))
    await usecases.change_order(database, holds, principal, command)
    return await _order_now(database, group_id, order_id)


@_changes(router.delete, "/groups/{group_id}/orders/{order_id}", OrderOut)
async def withdraw_order(
    group_id: UUID, order_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> OrderOut:
    """Abandon a card order that is not paid (any time), or cancel an order with payments off
    (until the cut-off). A confirmed order with payments on cannot be removed (R6)."""
    async with database.transaction() as session:
        await usecases.withdraw_order(session, principal, group_id, order_id)
        return await store.load_order(session, group_id, order_id)


@_changes(router.post, "/groups/{group_id}/orders/{order_id}/lines/{line_number}/undelivered", OrderOut, created=True)
async def take_off_undelivered(
    group_id: UUID,
    order_id: UUID,
    line_number: Annotated[int, Path(ge=1, le=100_000)],
    body: UndeliveredIn,
    principal: CurrentPrincipal,
    database: DatabaseDep,
) -> OrderOut:
    """A product the producer could not deliver, taken off a confirmed order (R6, coordinators
    only, with a reason; also after the basket was validated). All of the line, or `quantity`
    of what is left of it. The order's total is lowered and OrderLineUndelivered published: the
    ledger credits the member that much, payments lowers what the basket owes, the member is
    emailed. Nothing left of the line: 409; more than is left: 422."""
    command = usecases.TakeOffUndelivered(group_id, order_id, line_number, body.quantity, body.reason)
    async with database.transaction() as session:
        await usecases.take_off_undelivered(session, principal, command)
    return await _order_now(database, group_id, order_id)


# ------------------------------------------------------------------ subscriptions (R19)


@_changes(router.post, "/groups/{group_id}/contracts/{contract_id}/subscriptions", SubscriptionOut, created=True)
async def subscribe(
    group_id: UUID,
    contract_id: UUID,
    body: SubscriptionIn,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    holds: HoldsDep,
) -> SubscriptionOut:
    """Subscribe to a contract: the same products and quantities at each of its remaining
    distributions. With payments on, publishes SubscriptionConfirmed whose total is
    price x quantity x number of distributions (R19)."""
    command = usecases.Subscribe(group_id, contract_id, body.payment_method, _requested(body.lines))
    subscription_id = await usecases.subscribe(database, holds, principal, command)
    return await _subscription_now(database, group_id, subscription_id)


@router.get(
    "/groups/{group_id}/subscriptions",
    response_model=list[SubscriptionOut],
    tags=["subscriptions"],
    responses=PAGINATED,
)
async def list_subscriptions(
    group_id: UUID,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    page: Page,
    response: Response,
    member_id: Annotated[UUID | None, Query()] = None,
    contract_id: Annotated[UUID | None, Query(description="only the subscriptions to this contract")] = None,
) -> list[SubscriptionOut]:
    """Subscriptions of the group (coordinators) or your own (members), with the member's and the
    contract's names, oldest first, one page at a time."""
    async with database.transaction() as session:
        query = usecases.ListSubscriptions(group_id, member_id=member_id, page=page, contract_id=contract_id)
        found = await usecases.list_subscriptions(session, principal, query)
    return page.finish(found, lambda sub: (sub.created_at, sub.subscription_id), response)


@router.get(
    "/groups/{group_id}/subscriptions/{subscription_id}", response_model=SubscriptionOut, tags=["subscriptions"]
)
async def get_subscription(
    group_id: UUID, subscription_id: UUID, principal: CurrentPrincipal, database: DatabaseDep
) -> SubscriptionOut:
    async with database.transaction() as session:
        return await usecases.get_subscription(session, principal, group_id, subscription_id)


@_changes(router.put, "/groups/{group_id}/subscriptions/{subscription_id}", SubscriptionOut)
async def change_subscription(
    group_id: UUID,
    subscription_id: UUID,
    body: BasketIn,
    principal: CurrentPrincipal,
    database: DatabaseDep,
    holds: HoldsDep,
) -> SubscriptionOut:
    """Change a subscription's products for its remaining distributions. Payments on: add-only
    (R6); the addition x remaining distributions is owed and published as SubscriptionAmended."""
    command = usecases.ChangeSubscription(group_id, subscription_id, _requested(body.lines))
    await usecases.change_subscription(database, holds, principal, command)
    return await _subscription_now(database, group_id, subscription_id)
