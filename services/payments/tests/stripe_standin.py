"""A local, strict stand-in for the Stripe API endpoints the payments service calls, so the real
`stripe.StripeClient` code path runs in tests without the network.

Strict both ways (see stripe_declared.py): every request's parameters are checked against the
params TypedDict the installed `stripe` package declares for that call, and an unknown or
mistyped parameter gets Stripe's own error (400 `invalid_request_error` with `param`); every
object it answers (and every event built by `event()`) has only fields the library's resource
classes declare.

It speaks Stripe's wire format: form-encoded bodies with bracketed keys (`metadata[k]=v`,
`line_items[0][price_data][currency]=eur`), Bearer secret key (401 otherwise), `Stripe-Account`
header (recorded, and objects are kept per account), `Idempotency-Key` (the same key with the same
parameters answers the same object again, with other parameters a 400 `idempotency_error`),
errors as `{"error": {"type", "code", "message", "param"}}`.

Tests drive what Stripe would do on its own side (a card paid or declined, a session expiring, a
refund failing, a dispute and its funds, an account onboarded or restricted) with the methods
below, and build real-shaped webhook events from the objects with `event()`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .stripe_declared import ParamError, check_params, check_response, params_of

API_VERSION = stripe.api_version
PLATFORM = "platform"
DISPUTE_FEE = 1500  # what Stripe charges for a dispute in the EU (15.00 EUR)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding back into nested dicts (`a[b][0][c]=v` -> {"a": {"b": {"0": {"c":
    "v"}}}}): whether `0` is a list index or a hash key is the declared type's to say."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False):
        parts = [key.split("[", 1)[0]] + [p.rstrip("]") for p in key.split("[")[1:]]
        node = result
        for part in parts[:-1]:
            inner = node.setdefault(part, {})
            if not isinstance(inner, dict):
                raise ParamError(key, f"Invalid {key}: {part} is both a value and a hash")
            node = inner
        if isinstance(node.get(parts[-1]), dict):
            raise ParamError(key, f"Invalid {key}: a value and a hash at once")
        node[parts[-1]] = value
    return result


def error(status: int, type_: str, message: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(type_, message, code, param), status_code=status)


def error_body(type_: str, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "message": message}
    if code:
        body["code"] = code
    if param:
        body["param"] = param
    return {"error": body}


@dataclass
class Seen:
    method: str
    path: str
    account: str | None
    idempotency_key: str | None
    params: dict[str, Any]
    status: int


Handler = Callable[[dict[str, Any], str | None], tuple[dict[str, Any], int]]


@dataclass
class StripeStandIn:
    api_key: str
    fee_rate_bp: int = 140  # 1.4 % ...
    fee_fixed: int = 25  # ... + 0.25
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # connected accounts by id
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # account -> id -> object
    idempotency: dict[tuple[str, str], tuple[str, str, dict[str, Any], int, dict[str, Any]]] = field(
        default_factory=dict
    )
    requests: list[Seen] = field(default_factory=list)

    # -- the HTTP side -------------------------------------------------------------------------

    def app(self) -> Starlette:
        client = stripe.StripeClient("sk_test_unused")
        v1 = client.v1
        return Starlette(
            routes=[
                self._post("/v1/checkout/sessions", v1.checkout.sessions.create_async, self._new_session),
                self._get("/v1/checkout/sessions/{id}", v1.checkout.sessions.retrieve_async, "checkout.session"),
                self._post("/v1/refunds", v1.refunds.create_async, self._new_refund),
                self._get("/v1/payment_intents/{id}", v1.payment_intents.retrieve_async, "payment_intent"),
                self._get("/v1/charges/{id}", v1.charges.retrieve_async, "charge"),
                self._get(
                    "/v1/balance_transactions/{id}", v1.balance_transactions.retrieve_async, "balance_transaction"
                ),
                self._get("/v1/disputes/{id}", v1.disputes.retrieve_async, "dispute"),
                self._post("/v1/accounts", v1.accounts.create_async, self._new_account),
                Route("/v1/accounts/{id}", self._retrieve_account(v1.accounts.retrieve_async), methods=["GET"]),
                self._post("/v1/account_links", v1.account_links.create_async, self._new_account_link),
            ]
        )

    def _store(self, account: str | None) -> dict[str, dict[str, Any]]:
        return self.objects.setdefault(account or PLATFORM, {})

    async def _begin(
        self, request: Request, params_class: type
    ) -> tuple[dict[str, Any], str | None, JSONResponse | None]:
        """The request's parameters checked against the call's declared TypedDict, its account,
        or the error Stripe would answer."""
        raw = await request.body() if request.method == "POST" else request.url.query.encode()
        account = request.headers.get("stripe-account")
        if request.headers.get("authorization", "") != f"Bearer {self.api_key}":
            return {}, account, error(401, "invalid_request_error", "Invalid API Key provided")
        try:
            params = check_params(parse_form(raw), params_class)
        except (ParamError, UnicodeDecodeError) as exc:
            if isinstance(exc, ParamError):
                return {}, account, error(400, "invalid_request_error", exc.message, code=exc.code, param=exc.param)
            return {}, account, error(400, "invalid_request_error", "the body is not UTF-8")
        if account is not None and account not in self.accounts:
            refused = error(
                403,
                "invalid_request_error",
                f"The provided key does not have access to account '{account}'",
                code="account_invalid",
            )
            return params, account, refused
        return params, account, None

    def _record(self, request: Request, account: str | None, params: dict[str, Any], status: int) -> None:
        self.requests.append(
            Seen(request.method, request.url.path, account, request.headers.get("idempotency-key"), params, status)
        )

    def _post(self, path: str, call: Any, handler: Handler) -> Route:
        params_class = params_of(call)

        async def create(request: Request) -> JSONResponse:
            params, account, refused = await self._begin(request, params_class)
            if refused is not None:
                self._record(request, account, params, refused.status_code)
                return refused
            key = request.headers.get("idempotency-key")
            scope = (account or PLATFORM, key or "")
            if key and scope in self.idempotency:
                method, seen_path, first_params, status, body = self.idempotency[scope]
                if (method, seen_path, first_params) != (request.method, request.url.path, params):
                    self._record(request, account, params, 400)
                    return error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first "
                        "used with.",
                    )
                self._record(request, account, params, status)
                return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"})
            response_body, status = handler(params, account)
            if key and status < 500:
                self.idempotency[scope] = (request.method, request.url.path, params, status, response_body)
            self._record(request, account, params, status)
            return JSONResponse(response_body, status_code=status)

        return Route(path, create, methods=["POST"])

    def _retriever(
        self, call: Any, find: Callable[[Request, str | None], dict[str, Any] | JSONResponse]
    ) -> Callable[[Request], Awaitable[JSONResponse]]:
        """A GET of one object: the call's parameters checked and recorded, then what `find`
        finds (or the error it answers)."""
        params_class = params_of(call)

        async def retrieve(request: Request) -> JSONResponse:
            params, account, refused = await self._begin(request, params_class)
            self._record(request, account, params, refused.status_code if refused else 200)
            if refused is not None:
                return refused
            found = find(request, account)
            return found if isinstance(found, JSONResponse) else JSONResponse(self._public(found))

        return retrieve

    def _get(self, path: str, call: Any, object_name: str) -> Route:
        def find(request: Request, account: str | None) -> dict[str, Any] | JSONResponse:
            found = self._store(account).get(request.path_params["id"])
            if found is None or found["object"] != object_name:
                return error(
                    404,
                    "invalid_request_error",
                    f"No such {object_name}: '{request.path_params['id']}'",
                    code="resource_missing",
                    param="id",
                )
            return found

        return Route(path, self._retriever(call, find), methods=["GET"])

    def _retrieve_account(self, call: Any) -> Callable[[Request], Awaitable[JSONResponse]]:
        def find(request: Request, account: str | None) -> dict[str, Any] | JSONResponse:
            found = self.accounts.get(request.path_params["id"])
            if found is None:
                return error(
                    403,
                    "invalid_request_error",
                    f"The provided key does not have access to account '{request.path_params['id']}' (or that "
                    "account does not exist).",
                    code="account_invalid",
                )
            return found

        return self._retriever(call, find)

    def _new_session(self, params: dict[str, Any], account: str | None) -> tuple[dict[str, Any], int]:
        items = params.get("line_items") or []
        if params.get("mode") != "payment" or not items:
            return error_body("invalid_request_error", "mode=payment and line_items are required"), 400
        amount = 0
        currency = None
        for item in items:
            data = item.get("price_data") or {}
            amount += int(data["unit_amount"]) * int(item.get("quantity", 1))
            currency = data["currency"]
        for needed in ("success_url", "cancel_url"):
            if not params.get(needed):
                return error_body("invalid_request_error", f"Missing required param: {needed}.", param=needed), 400
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
            "allowed_payment_method_types": params.get("allowed_payment_method_types") or ["card"],
            "_payment_intent_data": params.get("payment_intent_data") or {},
        }
        self._store(account)[session_id] = session
        return self._public(session), 200

    def _new_refund(self, params: dict[str, Any], account: str | None) -> tuple[dict[str, Any], int]:
        store = self._store(account)
        intent = store.get(params.get("payment_intent") or "")
        if intent is None or intent["object"] != "payment_intent":
            missing = f"No such payment_intent: '{params.get('payment_intent')}'"
            return error_body("invalid_request_error", missing, code="resource_missing", param="payment_intent"), 400
        charge = store[intent["latest_charge"]]
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = int(params.get("amount") or remaining)
        if amount <= 0 or amount > remaining:
            code = "charge_already_refunded" if remaining == 0 else "amount_too_large"
            message = f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"
            return error_body("invalid_request_error", message, code=code, param="amount"), 400
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
        return self._public(refund), 200

    def _new_account(self, params: dict[str, Any], account: str | None) -> tuple[dict[str, Any], int]:
        account_id = f"acct_{secrets.token_hex(8)}"
        self.accounts[account_id] = {
            "id": account_id,
            "object": "account",
            "country": params.get("country") or "FR",
            "charges_enabled": False,
            "payouts_enabled": False,
            "details_submitted": False,
            "capabilities": {"card_payments": "inactive", "transfers": "inactive"},
            "metadata": params.get("metadata") or {},
            "created": int(time.time()),
        }
        return self._public(self.accounts[account_id]), 200

    def _new_account_link(self, params: dict[str, Any], account: str | None) -> tuple[dict[str, Any], int]:
        if params["account"] not in self.accounts:
            missing = f"No such account: '{params['account']}'"
            return error_body("invalid_request_error", missing, code="resource_missing", param="account"), 400
        link = {
            "object": "account_link",
            "url": f"https://connect.stripe.test/setup/{params['type']}/{params['account']}/{secrets.token_hex(6)}",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 300,
        }
        return self._public(link), 200

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        """What Stripe shows of an object (our private `_` keys left out), checked against the
        fields the library declares."""
        public = {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}
        check_response(public)
        return public

    # -- what happens on Stripe's side (driven by the tests) -----------------------------------

    def add_account(self, account_id: str, *, charges_enabled: bool = True) -> dict[str, Any]:
        """A connected account the platform may act for (onboarded unless told otherwise)."""
        state = "active" if charges_enabled else "inactive"
        self.accounts[account_id] = {
            "id": account_id,
            "object": "account",
            "country": "FR",
            "charges_enabled": charges_enabled,
            "payouts_enabled": charges_enabled,
            "details_submitted": charges_enabled,
            "capabilities": {"card_payments": state, "transfers": state},
            "metadata": {},
            "created": int(time.time()),
        }
        return self._public(self.accounts[account_id])

    def set_account(
        self, account_id: str, *, charges_enabled: bool, card_payments: str | None = None
    ) -> dict[str, Any]:
        """The account onboarded, or restricted by Stripe: the account object for account.updated."""
        found = self.accounts[account_id]
        found.update(charges_enabled=charges_enabled, details_submitted=True)
        found["capabilities"]["card_payments"] = card_payments or ("active" if charges_enabled else "inactive")
        return self._public(found)

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

    def _transaction(
        self, account: str | None, source: str, amount: int, fee: int, currency: str, kind: str
    ) -> dict[str, Any]:
        transaction = {
            "id": _new_id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "currency": currency,
            "type": kind,
            "reporting_category": kind,
            "status": "pending",
            "source": source,
            "created": int(time.time()),
        }
        self._store(account)[transaction["id"]] = transaction
        return transaction

    def pay(self, session_id: str, account: str | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The member paid: (session, payment intent, charge), with a balance transaction and its fee."""
        store = self._store(account)
        session = self.session(session_id, account)
        intent = self._intent_for(session, account)
        amount = intent["amount"]
        charge_id = _new_id("ch")
        fee = amount * self.fee_rate_bp // 10000 + self.fee_fixed
        transaction = self._transaction(account, charge_id, amount, fee, intent["currency"], "charge")
        charge = {
            "id": charge_id,
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
            "refunds": {"object": "list", "data": [], "has_more": False, "url": f"/v1/charges/{charge_id}/refunds"},
            "disputed": False,
            "created": int(time.time()),
            "livemode": False,
        }
        store[charge["id"]] = charge
        intent.update(status="succeeded", amount_received=amount, latest_charge=charge["id"], last_payment_error=None)
        session.update(status="complete", payment_status="paid")
        return self._public(session), self._public(intent), self._public(charge)

    def expire(self, session_id: str, account: str | None = None) -> dict[str, Any]:
        session = self.session(session_id, account)
        session.update(status="expired", url=None)
        return self._public(session)

    def refund_outside(self, charge_id: str, amount: int, account: str | None = None) -> dict[str, Any]:
        """A refund made on Stripe's side (e.g. from the dashboard). Returns the charge."""
        charge = self._store(account)[charge_id]
        body, status = self._new_refund({"payment_intent": charge["payment_intent"], "amount": amount}, account)
        assert status == 200, body
        return self._public(charge)

    def fail_refund(
        self, refund_id: str, account: str | None = None, reason: str = "expired_or_canceled_card"
    ) -> dict[str, Any]:
        """A refund that failed after it was created (the card was closed): Stripe gives the money
        back to the balance and the charge's refunded total goes down. Returns the refund."""
        store = self._store(account)
        refund = store[refund_id]
        assert refund["status"] in ("succeeded", "pending"), refund
        charge = store[refund["charge"]]
        refund.update(status="failed", failure_reason=reason)
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        return self._public(refund)

    def refund(self, refund_id: str, account: str | None = None) -> dict[str, Any]:
        return self._public(self._store(account)[refund_id])

    def last_refund(self, charge_id: str, account: str | None = None) -> dict[str, Any]:
        return self._public(self._store(account)[charge_id]["refunds"]["data"][0])

    def dispute(
        self, charge_id: str, account: str | None = None, reason: str = "fraudulent", amount: int | None = None
    ) -> dict[str, Any]:
        charge = self._store(account)[charge_id]
        charge["disputed"] = True
        dispute = {
            "id": _new_id("dp"),
            "object": "dispute",
            "amount": charge["amount"] if amount is None else amount,
            "currency": charge["currency"],
            "charge": charge_id,
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "needs_response",
            "balance_transactions": [],
            "is_charge_refundable": False,
            "metadata": {},
            "created": int(time.time()),
            "livemode": False,
        }
        self._store(account)[dispute["id"]] = dispute
        return self._public(dispute)

    def withdraw_dispute_funds(
        self, dispute_id: str, account: str | None = None, fee: int = DISPUTE_FEE
    ) -> dict[str, Any]:
        """Stripe takes the disputed amount and its dispute fee from the balance (one balance
        transaction on the dispute). Returns the dispute, for charge.dispute.funds_withdrawn."""
        dispute = self._store(account)[dispute_id]
        taken = self._transaction(account, dispute_id, -dispute["amount"], fee, dispute["currency"], "adjustment")
        dispute["balance_transactions"].append(taken)
        dispute["status"] = "under_review"
        return self._public(dispute)

    def reinstate_dispute_funds(self, dispute_id: str, account: str | None = None, fee_back: int = 0) -> dict[str, Any]:
        """The dispute won: the amount comes back (the fee too where Stripe returns it). Returns
        the dispute, for charge.dispute.funds_reinstated."""
        dispute = self._store(account)[dispute_id]
        back = self._transaction(account, dispute_id, dispute["amount"], -fee_back, dispute["currency"], "adjustment")
        dispute["balance_transactions"].append(back)
        return self._public(dispute)

    def close_dispute(self, dispute_id: str, status: str, account: str | None = None) -> dict[str, Any]:
        """won, lost or warning_closed: the dispute for charge.dispute.closed."""
        dispute = self._store(account)[dispute_id]
        dispute["status"] = status
        return self._public(dispute)

    def charge(self, charge_id: str, account: str | None = None) -> dict[str, Any]:
        return self._public(self._store(account)[charge_id])

    def event(
        self,
        type_: str,
        obj: dict[str, Any],
        account: str | None = None,
        created: int | None = None,
        previous_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A webhook event as Stripe sends it (snapshot of the object), checked like an answer."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event: dict[str, Any] = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": API_VERSION,
            "created": created or int(time.time()),
            "type": type_,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }
        if account:
            event["account"] = account
        check_response(event)
        return event

    def seen(self, path: str, method: str = "POST") -> list[Seen]:
        return [r for r in self.requests if r.path == path and r.method == method]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
