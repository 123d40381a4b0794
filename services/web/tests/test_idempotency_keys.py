"""The web service sends an Idempotency-Key with each state-changing call it makes for a person,
derived from the submitted form's client_key (the same form submitted twice: the same keys), and
renders a client_key in its forms."""

from __future__ import annotations

import httpx
from starlette.requests import Request

from cagette_web.adapters import ServiceApis
from cagette_web.pages.common import new_client_key, submitted_client_key


def recording() -> tuple[ServiceApis, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://ledger")
    return ServiceApis({"ledger": client}), seen


async def test_each_call_of_a_form_submission_gets_a_key_from_its_client_key() -> None:
    apis, seen = recording()
    for _ in range(2):  # the same form submitted twice
        person = apis.as_person("token", form_key="web-form-1")
        await person.get("ledger", "/groups/g/balances")
        await person.post("ledger", "/groups/g/members/m/corrections", json={"a": 1})
        await person.put("ledger", "/groups/g/thing", json={"b": 2})
    keys = [request.headers.get("Idempotency-Key") for request in seen]
    assert keys == [None, "web-form-1.0", "web-form-1.1"] * 2


async def test_a_call_without_a_form_key_gets_a_new_key_each_time() -> None:
    apis, seen = recording()
    person = apis.as_person("token")
    await person.post("ledger", "/x")
    await person.post("ledger", "/x")
    explicit = apis.as_person("token", form_key="web-form-2")
    await explicit.post("ledger", "/x", headers={"Idempotency-Key": "mine"})
    first, second, third = (request.headers["Idempotency-Key"] for request in seen)
    assert first != second and first.startswith("web-") and third == "mine"


def form_request(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", content_type.encode())]}
    return Request(scope, receive)


async def test_the_submitted_client_key_is_read_from_the_form_when_well_formed() -> None:
    key = new_client_key()
    assert await submitted_client_key(form_request(f"client_key={key}&csrf_token=x".encode())) == key
    assert await submitted_client_key(form_request(b"client_key=%00bad")) is None
    assert await submitted_client_key(form_request(b"csrf_token=x")) is None
    assert await submitted_client_key(form_request(b"{}", "application/json")) is None
