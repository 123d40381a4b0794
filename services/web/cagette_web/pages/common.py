"""What every signed-in page shares: who is visiting (session, language, a short-lived token for
the other services), the group being looked at and the visitor's role in it, rendering in the
visitor's language, CSRF checks on forms, and refusals turned into messages on the page.

A page handler takes `visit: SignedInVisit` (or `GroupVisit` for /groups/{group_id}/...) and
returns `visit.render(...)`. Forms post back and redirect (303) on success; on a refusal the
same page is rendered again with the message and the values as typed. Every form works without
JavaScript; htmx (served from /static) only makes links and forms lighter (`hx-boost`).
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cagette_contracts import Language, Role
from cagette_runtime.db import Database

from .. import usecases
from ..adapters import Answer, PersonApis, ServiceApis, ServiceRefused, ServiceUnavailable
from ..i18n import Formats, formats, language_from, translator
from ..keys import KeyRing
from ..settings import WebSettings

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent.parent / "templates"
STATIC_DIR = Path(__file__).parent.parent / "static"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
SESSION_COOKIE = "cagette_session"
LANGUAGE_COOKIE = "cagette_language"
# Pages load their own CSS, scripts and images only (no inline script, no other origin); the
# services' JSON answers keep the runtime's stricter `default-src 'none'`.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def protect_page(response: Response) -> Response:
    """Headers every HTML page gets: not cached (balances and statements are personal), the page CSP."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


# Refusals the services give, by their stable beginning, shown as a sentence of the visitor's
# language (keys in locale/*/LC_MESSAGES/refusals.po); anything else is shown as the service
# wrote it, after a translated lead.
KNOWN_REFUSALS: dict[str, str] = {
    "the file was refused, nothing was recorded": "opening.file_refused",
    "the money pot cannot be combined with another payment method": "settings.money_pot_alone",
}


class SignInRequired(Exception):
    """No live session: the visitor is sent to the sign-in page, then back here."""

    def __init__(self, back_to: str, ended: bool) -> None:
        super().__init__(back_to)
        self.back_to = back_to
        self.ended = ended


class PageRefused(Exception):
    """The visitor may not see this page (403) or it does not exist (404): an error page."""

    def __init__(self, status_code: int, message_key: str) -> None:
        super().__init__(message_key)
        self.status_code = status_code
        self.message_key = message_key


def _settings(request: Request) -> WebSettings:
    return request.app.state.settings


def _apis(request: Request) -> ServiceApis:
    return request.app.state.service.apis


def visitor_language(request: Request, account_language: Language | None) -> Language:
    chosen = request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    if chosen in ("fr", "en"):
        return Language(chosen)
    return account_language or language_from(request.headers.get("accept-language"))


@dataclass
class Visit:
    """A signed-in person on a page."""

    request: Request
    me: usecases.SignedIn
    apis: PersonApis
    language: Language
    formats: Formats
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def person_id(self) -> UUID:
        return self.me.account.account_id

    def t(self, key: str, **values: object) -> str:
        return translator(self.language)(key, **values)

    def check_csrf(self, submitted: str) -> None:
        if not submitted or not secrets.compare_digest(self.me.csrf_token, submitted):
            raise PageRefused(400, "csrf_failed")

    def render(
        self,
        template: str,
        *,
        status_code: int = 200,
        message: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """The page; a `message` on it says what went wrong (a notice of what was done comes
        back through `?done=`)."""
        notice = self.request.query_params.get("done")
        response = templates.TemplateResponse(
            self.request,
            template,
            {
                "t": translator(self.language),
                "f": self.formats,
                "language": self.language.value,
                "message": message,
                "error": message is not None,
                "notice": notice if notice and notice.replace(".", "").replace("_", "").isalnum() else None,
                "csrf_token": self.me.csrf_token,
                "client_key": new_client_key(),
                "signed_in": True,
                "account": self.me.account,
                "path": self.request.url.path,
                **self.extra,
                **context,
            },
            status_code=status_code,
        )
        protect_page(response)
        return response

    def refusal(self, refused: ServiceRefused) -> str:
        """What a person reads when a service refuses their request: a sentence of their
        language for known reasons, else a translated lead and the service's own reason."""
        for start, key in KNOWN_REFUSALS.items():
            if refused.detail.startswith(start):
                return self.t(key)
        fields = [
            f"{'.'.join(str(part) for part in error.get('loc', [])[1:])}: {error.get('msg', '')}"
            for error in refused.errors
            if isinstance(error, dict)
        ]
        reason = "; ".join(fields) if fields else refused.detail
        return self.t(
            f"refused.{refused.status_code}" if refused.status_code in (403, 404, 409) else "refused.other",
            reason=reason,
        )


def local_path(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another host)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 500:
        return "/"
    return target if target.isprintable() else "/"


def back_to(path: str, done: str | None = None, **params: str) -> RedirectResponse:
    """The redirect after a form succeeded (303 See Other), with a notice key to show."""
    query = {**params, **({"done": done} if done else {})}
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, status_code=303)


def csv_download(answer: Answer, file_name: str) -> Response:
    """A service's CSV export passed on to the visitor as a download (its own file name if it gives one)."""
    return Response(
        answer.content,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": answer.headers.get("content-disposition", f'attachment; filename="{file_name}"'),
            "Cache-Control": "no-store",
        },
    )


async def signed_in_visit(request: Request) -> Visit:
    service = request.app.state.service
    database: Database = service.database
    session_id = request.cookies.get(SESSION_COOKIE)
    me = await usecases.signed_in(database, session_id)
    if me is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target, ended=session_id is not None)
    settings = _settings(request)
    keys: KeyRing = service.keys
    token = await usecases.person_token(database, keys, settings, me.account.account_id)
    language = visitor_language(request, me.account.language)
    return Visit(
        request=request,
        me=me,
        apis=_apis(request).as_person(token.access_token, await submitted_client_key(request)),
        language=language,
        formats=formats(language, settings.web_time_zone),
    )


def new_client_key() -> str:
    """Rendered in each form as it is shown (a hidden `client_key`): submitting the same form
    twice (a double click, the browser's retry) sends the same key, so the services record the
    action once (their Idempotency-Key, runtime/idempotency.py)."""
    return f"web-{uuid.uuid4().hex}"


_CLIENT_KEY = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


async def submitted_client_key(request: Request) -> str | None:
    """The `client_key` of a submitted form, if it has a well-formed one (Starlette keeps the
    parsed form for the page's own Form() fields)."""
    if request.method != "POST" or not request.headers.get("content-type", "").startswith(_FORMS):
        return None
    value = (await request.form()).get("client_key")
    return value if isinstance(value, str) and _CLIENT_KEY.fullmatch(value) else None


SignedInVisit = Annotated[Visit, Depends(signed_in_visit)]


@dataclass
class GroupView:
    """The group a page is about, as orders describes it, and the visitor's role there."""

    group_id: UUID
    name: str
    currency: str
    role: Role
    settings: Mapping[str, Any]

    @property
    def is_coordinator(self) -> bool:
        return self.role == Role.COORDINATOR


async def group_visit(group_id: UUID, visit: SignedInVisit) -> Visit:
    """A visit to one of the visitor's groups (404 for a group they are not in)."""
    role = visit.me.roles.get(group_id)
    if role is None and not visit.me.account.platform_admin:
        raise PageRefused(404, "page.no_such_group")
    found = await visit.apis.get("orders", f"/groups/{group_id}")
    group = GroupView(
        group_id=group_id,
        name=found["name"],
        currency=found["currency"],
        role=Role(role) if role else Role.COORDINATOR,
        settings=found,
    )
    visit.extra["group"] = group
    # The group's dates in the group's own time zone (orders keeps it beside its language).
    visit.formats = formats(visit.language, found.get("time_zone") or _settings(visit.request).web_time_zone)
    return visit


GroupVisit = Annotated[Visit, Depends(group_visit)]


def group_of(visit: Visit) -> GroupView:
    group: GroupView = visit.extra["group"]
    return group


async def coordinator_visit(visit: GroupVisit) -> Visit:
    if not group_of(visit).is_coordinator:
        raise PageRefused(403, "page.coordinators_only")
    return visit


CoordinatorVisit = Annotated[Visit, Depends(coordinator_visit)]


def _error_page(request: Request, status_code: int, message_key: str) -> HTMLResponse:
    language = visitor_language(request, None)
    response = templates.TemplateResponse(
        request,
        "error.html",
        {
            "t": translator(language),
            "language": language.value,
            "message": None,
            "error": True,
            "notice": None,
            "signed_in": False,
            "status_code": status_code,
            "message_key": message_key,
        },
        status_code=status_code,
    )
    protect_page(response)
    return response


def install_page_errors(app: FastAPI) -> None:
    """What a visitor sees instead of a bare error: the sign-in page, or an error page in
    their language (403/404, a service that does not answer)."""

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        notice = "&m=sign_in.session_ended" if exc.ended else ""
        return RedirectResponse(f"/sign-in?next={quote(exc.back_to, safe='')}{notice}", status_code=303)

    async def page_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageRefused)
        return _error_page(request, exc.status_code, exc.message_key)

    async def service_unavailable(request: Request, exc: Exception) -> Response:
        return _error_page(request, 503, "page.service_unavailable")

    async def service_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceRefused)
        if exc.status_code == 404:
            return _error_page(request, 404, "page.not_found")
        if exc.status_code in (401, 403):
            return _error_page(request, 403, "page.not_allowed")
        log.warning("a page met an unhandled refusal: %s", exc)
        return _error_page(request, 400, "page.refused")

    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(PageRefused, page_refused)
    app.add_exception_handler(ServiceUnavailable, service_unavailable)
    app.add_exception_handler(ServiceRefused, service_refused)
