"""The web service's HTTP side: the sign-in pages (server-rendered, CSRF-protected forms), the
JWKS, access tokens for a signed-in person and for machine clients.

Cookies: `cagette_session` holds a random session id (the table keeps its hash), `cagette_csrf`
the anonymous forms' CSRF token (double submit); both HttpOnly, SameSite=Lax, Secure unless
turned off for plain-http local development. Signed-in forms carry the session's own token.
"""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cagette_contracts import Language
from cagette_runtime.errors import Forbidden, Invalid, Unauthenticated
from cagette_runtime.http import DatabaseDep

from . import usecases
from .domain import new_secret
from .i18n import translator
from .keys import KeyRing
from .pages.common import SESSION_COOKIE, local_path, protect_page, templates, visitor_language
from .settings import WebSettings

log = logging.getLogger(__name__)

router = APIRouter()

CSRF_COOKIE = "cagette_csrf"
# Messages the sign-in page shows when sent there with ?m=
SIGN_IN_NOTICES = {"sign_in.signed_out", "sign_in.session_ended", "sign_in.password_set"}

FormText = Annotated[str, Form(max_length=1000)]


def _settings(request: Request) -> WebSettings:
    return request.app.state.settings


def _keys(request: Request) -> KeyRing:
    return request.app.state.service.keys


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _set_cookie(response: Response, settings: WebSettings, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax", secure=settings.web_cookie_secure, path="/"
    )


def page(
    request: Request,
    template: str,
    *,
    language: Language | None = None,
    status_code: int = 200,
    message: str | None = None,
    error: bool = False,
    csrf_token: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page in the visitor's language with an anonymous CSRF token (set as a cookie if new)."""
    chosen = language or visitor_language(request, None)
    anonymous_token = request.cookies.get(CSRF_COOKIE)
    fresh = not anonymous_token or len(anonymous_token) > 100
    if fresh:
        anonymous_token = new_secret()
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": translator(chosen),
            "language": chosen.value,
            "message": message,
            "error": error,
            "csrf_token": csrf_token or anonymous_token,
            "signed_in": csrf_token is not None,
            **context,
        },
        status_code=status_code,
    )
    if fresh:
        assert anonymous_token is not None
        _set_cookie(response, _settings(request), CSRF_COOKIE, anonymous_token, None)
    protect_page(response)
    return response


def anonymous_csrf_ok(request: Request, submitted: str) -> bool:
    expected = request.cookies.get(CSRF_COOKIE)
    return bool(expected) and bool(submitted) and secrets.compare_digest(expected or "", submitted)


def csrf_refused(request: Request, template: str, **context: Any) -> HTMLResponse:
    return page(request, template, status_code=400, message="csrf_failed", error=True, **context)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# ------------------------------------------------------------------ pages


@router.get("/sign-in", response_class=HTMLResponse, include_in_schema=False)
async def sign_in_page(request: Request, m: str | None = None, next: str | None = None) -> Response:
    notice = m if m in SIGN_IN_NOTICES else None
    return page(request, "sign_in.html", message=notice, email="", next=local_path(next))


@router.post("/sign-in", response_class=HTMLResponse, include_in_schema=False)
async def sign_in(
    request: Request,
    database: DatabaseDep,
    email: FormText,
    password: FormText,
    csrf_token: FormText = "",
    next: FormText = "/",
) -> Response:
    target = local_path(next)
    if not anonymous_csrf_ok(request, csrf_token):
        return csrf_refused(request, "sign_in.html", email="", next=target)
    settings = _settings(request)
    try:
        opened = await usecases.sign_in(database, settings, email, password, client_address(request))
    except usecases.SignInRefused as refused:
        status_code = 429 if refused.reason == "too_many_attempts" else 401
        return page(
            request, "sign_in.html", status_code=status_code, message=refused.reason, error=True, email="", next=target
        )
    response = redirect(target)
    _set_cookie(response, settings, SESSION_COOKIE, opened.session_id, int(settings.session_hours * 3600))
    return response


@router.post("/sign-out", include_in_schema=False)
async def sign_out(request: Request, database: DatabaseDep, csrf_token: FormText = "") -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    me = await usecases.signed_in(database, session_id)
    if me is not None and not secrets.compare_digest(me.csrf_token, csrf_token):
        return csrf_refused(request, "sign_in.html", email="", next="/")
    await usecases.sign_out(database, session_id)
    response = redirect("/sign-in?m=sign_in.signed_out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/set-password", response_class=HTMLResponse, include_in_schema=False)
async def set_password_page(request: Request, database: DatabaseDep, token: str = "") -> Response:
    problem = await usecases.link_problem(database, token[:100])
    return page(
        request,
        "set_password.html",
        status_code=400 if problem else 200,
        message=problem,
        error=bool(problem),
        usable=problem is None,
        token=token,
    )


@router.post("/set-password", response_class=HTMLResponse, include_in_schema=False)
async def set_password(
    request: Request,
    database: DatabaseDep,
    token: FormText,
    password: FormText,
    confirmation: FormText,
    csrf_token: FormText = "",
) -> Response:
    if not anonymous_csrf_ok(request, csrf_token):
        return csrf_refused(request, "set_password.html", usable=True, token=token)
    settings = _settings(request)
    try:
        account_id = await usecases.set_password(database, token, password, confirmation)
    except Invalid as refused:
        unusable = refused.reason.startswith("link_")
        return page(
            request,
            "set_password.html",
            status_code=400,
            message=refused.reason,
            error=True,
            usable=not unusable,
            token=token,
        )
    opened = await usecases.open_session(database, settings, account_id)
    response = redirect("/")
    _set_cookie(response, settings, SESSION_COOKIE, opened.session_id, int(settings.session_hours * 3600))
    return response


@router.get("/reset-password", response_class=HTMLResponse, include_in_schema=False)
async def reset_page(request: Request) -> Response:
    return page(request, "reset_password.html", sent=False)


@router.post("/reset-password", response_class=HTMLResponse, include_in_schema=False)
async def reset(request: Request, database: DatabaseDep, email: FormText, csrf_token: FormText = "") -> Response:
    if not anonymous_csrf_ok(request, csrf_token):
        return csrf_refused(request, "reset_password.html", sent=False)
    await usecases.request_reset(database, _settings(request), email)
    return page(request, "reset_password.html", message="reset.sent", sent=True)


# ------------------------------------------------------------------ keys and tokens


@router.get("/.well-known/jwks.json", tags=["tokens"])
async def jwks(request: Request) -> JSONResponse:
    """The public keys access tokens are signed with (several during a rotation, by `kid`)."""
    return JSONResponse(_keys(request).jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.post("/token", tags=["tokens"])
async def person_token(
    request: Request, database: DatabaseDep, x_csrf_token: Annotated[str, Header(max_length=100)] = ""
) -> dict[str, Any]:
    """A short-lived access token for the signed-in person (session cookie + X-CSRF-Token
    header), with the roles they hold now."""
    me = await usecases.signed_in(database, request.cookies.get(SESSION_COOKIE))
    if me is None:
        raise Unauthenticated("Sign in first: there is no live session.")
    if not secrets.compare_digest(me.csrf_token, x_csrf_token):
        raise Forbidden("The X-CSRF-Token header is missing or does not match the session.")
    token = await usecases.person_token(database, _keys(request), _settings(request), me.account.account_id)
    return {"access_token": token.access_token, "token_type": "Bearer", "expires_in": token.expires_in}


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:], validate=True).decode()
    except ValueError:
        return None
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


@router.post("/oauth/token", tags=["tokens"])
async def client_credentials(
    request: Request,
    database: DatabaseDep,
    grant_type: FormText,
    client_id: FormText = "",
    client_secret: FormText = "",
    authorization: Annotated[str | None, Header(max_length=2000)] = None,
) -> dict[str, Any]:
    """OAuth 2.0 client credentials (RFC 6749 4.4): a machine client's id and secret, in the form
    or as HTTP Basic, for a short-lived token carrying the client's scope."""
    if grant_type != "client_credentials":
        raise Invalid("grant_type must be client_credentials")
    basic = _basic_credentials(authorization)
    if basic is not None:
        client_id, client_secret = basic
    token = await usecases.client_token(database, _keys(request), _settings(request), client_id, client_secret)
    return {"access_token": token.access_token, "token_type": "Bearer", "expires_in": token.expires_in}
