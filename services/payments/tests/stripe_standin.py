"""A local stand-in for the few Stripe API endpoints the payments service calls, so the real
`stripe.StripeClient` code path runs in tests without the network.

It speaks Stripe's wire format: form-encoded bodies with bracketed keys (`metadata[k]=v`,
`line_items[0][price_data][currency]=eur`), Bearer secret key (401 otherwise), `Stripe-Account`
header (recorded, and objects are kept per account), `Idempotency-Key` (the same key with the same
parameters answers the same object again, with other parameters a 400 `idempotency_error`),
errors as `{"error": {"type", "code", "message"}}`.

Tests drive what Stripe would do on its own side (a card paid or declined, a session expiring,
a dispute) with the `pay` / `decline` / `expire` / `dispute` methods, and build real-shaped
webhook events from the objects with `event()`. Implemented: POST /v1/checkout/sessions,
GET /v1/checkout/sessions/{id}, POST /v1/refunds, GET /v1/payment_intents/{id},
GET /v1/charges/{id}, GET /v1/balance_transactions/{id}, GET /v1/accounts/{id}.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_VERSION = "2025-10-29.clover"
PLATFORM = "platform"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding back into nested dicts and lists."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = [key.split("[", 1)[0]] + [p.rstrip("]") for p in key.split("[")[1:]]
        node: Any = result
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            nxt_is_index = not last and parts[index + 1].isdigit()
            if isinstance(node, list):
                position = int(part)
                while len(node) <= position:
                    node.append(None)
                if last:
                    node[position] = value
                else:
                    if node[position] is None:
                        node[position] = [] if nxt_is_index else {}
                    node = node[position]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if nxt_is_index else {})
    return result


def error(status: int, type_: str, message: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "message": message}
    if code:
        body["code"] = code
    if param:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status)


@dataclass
class Seen:
    method: str
    path: str
    account: str | None
    idempotency_key: str | None
    params: dict[str, Any]
    status: int


@dataclass
class StripeStandIn:
    api_key: str
    fee_rate_bp: int = 140  # 1.4 % ...
    fee_fixed: int = 25  # ... + 0.25
    accounts: set[str] = field(default_factory=set)
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # account -> id -> object
    idempotency: dict[tuple[str, str], tuple[str, str, dict[str, Any], int, dict[str, Any]]] = field(
        default_factory=dict
    )
    requests: list[Seen] = field(default_factory=list)
    _events: itertools.count = field(default_factory=itertools.count)

    # -- the HTTP side -------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
                Route("/v1/checkout/sessions/{id}", self._retrieve("checkout.session"), methods=["GET"]),
                Route("/v1/refunds", self._create_refund, methods=["POST"]),
                Route("/v1/payment_intents/{id}", self._retrieve("payment_intent"), methods=["GET"]),
                Route("/v1/charges/{id}", self._retrieve("charge"), methods=["GET"]),
                Route("/v1/balance_transactions/{id}", self._retrieve("balance_transaction"), methods=["GET"]),
                Route("/v1/accounts/{id}", self._retrieve_account, methods=["GET"]),
            ]
        )

    def _store(self, account: str | None) -> dict[str, dict[str, Any]]:
        return self.objects.setdefault(account or PLATFORM, {})

    async def _begin(self, request: Request) -> tuple[dict[str, Any], str | None, JSONResponse | None]:
        params = parse_form(await request.body()) if request.method == "POST" else dict(request.query_params)
        account = request.headers.get("stripe-account")
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            return params, account, error(401, "invalid_request_error", "Invalid API Key provided")
        if account is not None and account not in self.accounts:
            return (
                params,
                account,
                error(
                    403,
                    "invalid_request_error",
                    f"The provided key does not have access to account '{account}'",
                    code="account_invalid",
                ),
            )
        return params, account, None

    def _record(self, request: Request, account: str | None, params: dict[str, Any], status: int) -> None:
        self.requests.append(
            Seen(request.method, request.url.path, account, request.headers.get("idempotency-key"), params, status)
        )

    async def _idempotent(self, request: Request, handler) -> JSONResponse:  # type: ignore[no-untyped-def]
        params, account, refused = await self._begin(request)
        if refused is not None:
            self._record(request, account, params, refused.status_code)
            return refused
        key = request.headers.get("idempotency-key")
        scope = (account or PLATFORM, key or "")
        if key and scope in self.idempotency:
            method, path, first_params, status, body = self.idempotency[scope]
            if (method, path, first_params) != (request.method, request.url.path, params):
                self._record(request, account, params, 400)
                return error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                )
            self._record(request, account, params, status)
            return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"})
        response_body, status = handler(params, account)
        if key and status < 500:
            self.idempotency[scope] = (request.method, request.url.path, params, status, response_body)
        self._record(request, account, params, status)
        return JSONResponse(response_body, status_code=status)

    def _retrieve(self, object_name: str):  # type: ignore[no-untyped-def]
        async def retrieve(request: Request) -> JSONResponse:
            params, account, refused = await self._begin(request)
            self._record(request, account, params, refused.status_code if refused else 200)
            if refused is not None:
                return refused
            found = self._store(account).get(request.path_params["id"])
            if found is None or found["object"] != object_name:
                return error(
                    404,
                    "invalid_request_error",
                    f"No such {object_name}: '{request.path_params['id']}'",
                    code="resource_missing",
                    param="id",
                )
            return JSONResponse(found)

        return retrieve

    async def _retrieve_account(self, request: Request) -> JSONResponse:
        params, account, refused = await self._begin(request)
        self._record(request, account, params, refused.status_code if refused else 200)
        if refused is not None:
            return refused
        account_id = request.path_params["id"]
        if account_id not in self.accounts:
            return error(
                403,
                "invalid_request_error",
                f"The provided key does not have access to account '{account_id}' (or that account does not exist).",
                code="account_invalid",
            )
        return JSONResponse({"id": account_id, "object": "account", "charges_enabled": True, "country": "FR"})

    async def _create_session(self, request: Request) -> JSONResponse:
        return await self._idempotent(request, self._new_session)

    def _new_session(self, params: dict[str, Any], account: str | None) -> tuple[dict[str, Any], int]:
        items = params.get("line_items") or []
        if params.get("mode") != "payment" or not items:
            return {
                "error": {"type": "invalid_request_error", "message": "mode=payment and line_items are required"}
            }, 400
        amount = 0
        currency = None
        for item in items:
            data = item.get("price_data") or {}
            amount += int(data["unit_amount"]) * int(item.get("quantity", 1))
            currency = data["currency"]
        for needed in ("success_url", "cancel_url"):
            if not params.get(needed):
                return {
                    "error": {
                        "type": "invalid_request_error",
                        "message": f"Missing required param: {needed}.",
                        "param": needed,
                    }
                }, 400
        session_id = _new_id("cs_test")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": amount,
            "amount_subtotal": amount,
            "currency": currency,
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "payment_intent": None,
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "success_url": params["success_url"],
            "cancel_url": params["cancel_url"],
            "expires_at": int(params.get("expires_at") or time.time() + 86400),
            "created": int(time.time()),
            "livemode": False,
            "payment_method_types": params.get("payment_method_types") or ["card"],
            "_payment_intent_data": params.get("payment_intent_data") or {},
        }
        self._store(account)[session_id] = session
        return self._public(session), 200

    async def _create_refund(self, request: Request) -> JSONResponse:
        return await self._idempotent(request, self._new_refund)

    def _new_refund(self, params: dict[str, Any], account: str | None) -> tuple[dict[str, Any], int]:
        store = self._store(account)
        intent = store.get(params.get("payment_intent") or "")
        if intent is None or intent["object"] != "payment_intent":
            return {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "message": f"No such payment_intent: '{params.get('payment_intent')}'",
                }
            }, 400
        charge = store[intent["latest_charge"]]
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = int(params.get("amount") or remaining)
        if amount <= 0 or amount > remaining:
            return {
                "error": {
                    "type": "invalid_request_error",
                    "code": "charge_already_refunded" if remaining == 0 else "amount_too_large",
                    "message": f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                }
            }, 400
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": intent["id"],
            "status": "succeeded",
            "reason": params.get("reason"),
            "metadata": params.get("metadata") or {},
            "created": int(time.time()),
        }
        store[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        charge["refunds"]["total_count"] += 1
        return refund, 200

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    # -- what happens on Stripe's side (driven by the tests) -----------------------------------

    def session(self, session_id: str, account: str | None = None) -> dict[str, Any]:
        return self._store(account)[session_id]

    def _intent_for(self, session: dict[str, Any], account: str | None) -> dict[str, Any]:
        store = self._store(account)
        if session["payment_intent"] is None:
            intent_id = _new_id("pi")
            store[intent_id] = {
                "id": intent_id,
                "object": "payment_intent",
                "amount": session["amount_total"],
                "amount_received": 0,
                "currency": session["currency"],
                "status": "requires_payment_method",
                "latest_charge": None,
                "metadata": dict(session["_payment_intent_data"].get("metadata") or {}),
                "description": session["_payment_intent_data"].get("description"),
                "last_payment_error": None,
                "created": int(time.time()),
                "livemode": False,
            }
            session["payment_intent"] = intent_id
        return store[session["payment_intent"]]

    def decline(self, session_id: str, account: str | None = None) -> dict[str, Any]:
        """A card declined in the checkout page: the session stays open. Returns the payment intent."""
        session = self.session(session_id, account)
        intent = self._intent_for(session, account)
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        }
        return self._public(intent)

    def pay(self, session_id: str, account: str | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The member paid: (session, payment intent, charge), with a balance transaction and its fee."""
        store = self._store(account)
        session = self.session(session_id, account)
        intent = self._intent_for(session, account)
        amount = intent["amount"]
        fee = amount * self.fee_rate_bp // 10000 + self.fee_fixed
        transaction = {
            "id": _new_id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "currency": intent["currency"],
            "type": "charge",
            "status": "pending",
        }
        charge = {
            "id": _new_id("ch"),
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "currency": intent["currency"],
            "paid": True,
            "captured": True,
            "refunded": False,
            "status": "succeeded",
            "payment_intent": intent["id"],
            "balance_transaction": transaction["id"],
            "metadata": dict(intent["metadata"]),
            "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0},
            "disputed": False,
            "created": int(time.time()),
            "livemode": False,
        }
        transaction["source"] = charge["id"]
        store[transaction["id"]] = transaction
        store[charge["id"]] = charge
        intent.update(status="succeeded", amount_received=amount, latest_charge=charge["id"], last_payment_error=None)
        session.update(status="complete", payment_status="paid")
        return self._public(session), self._public(intent), self._public(charge)

    def expire(self, session_id: str, account: str | None = None) -> dict[str, Any]:
        session = self.session(session_id, account)
        session.update(status="expired", url=None)
        return self._public(session)

    def dispute(self, charge_id: str, account: str | None = None, reason: str = "fraudulent") -> dict[str, Any]:
        charge = self._store(account)[charge_id]
        charge["disputed"] = True
        dispute = {
            "id": _new_id("dp"),
            "object": "dispute",
            "amount": charge["amount"],
            "currency": charge["currency"],
            "charge": charge_id,
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "needs_response",
            "created": int(time.time()),
            "livemode": False,
        }
        self._store(account)[dispute["id"]] = dispute
        return copy.deepcopy(dispute)

    def refund_outside(self, charge_id: str, amount: int, account: str | None = None) -> dict[str, Any]:
        """A refund made on Stripe's side (e.g. from the dashboard). Returns the charge."""
        charge = self._store(account)[charge_id]
        body, status = self._new_refund({"payment_intent": charge["payment_intent"], "amount": str(amount)}, account)
        assert status == 200, body
        return self._public(charge)

    def charge(self, charge_id: str, account: str | None = None) -> dict[str, Any]:
        return self._public(self._store(account)[charge_id])

    def event(
        self, type_: str, obj: dict[str, Any], account: str | None = None, created: int | None = None
    ) -> dict[str, Any]:
        """A webhook event as Stripe sends it (snapshot of the object)."""
        event: dict[str, Any] = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": API_VERSION,
            "created": created or int(time.time()),
            "type": type_,
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }
        if account:
            event["account"] = account
        return event

    def seen(self, path: str, method: str = "POST") -> list[Seen]:
        return [r for r in self.requests if r.path == path and r.method == method]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """An ASGI app served by uvicorn on a free local port, in the running event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                access_log=False,
                log_config=None,
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        for _ in range(200):
            if self.server.started:
                return
            await asyncio.sleep(0.02)
        raise RuntimeError("the local server did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task


def body_of(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))
