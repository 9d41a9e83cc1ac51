"""The page and its JSON API, as a Starlette application.

Security model (docs/web.md says it in full):

- No password: the server listens on loopback only (the settings refuse anything else),
  accepts only loopback ``Host`` headers (against DNS rebinding) and is read-only: every
  POST, PUT and DELETE is refused with 403.
- A password: every page and API call needs a session cookie (``HttpOnly``,
  ``SameSite=Strict``, expiring) from the login form, or ``Authorization: Bearer``.
  State-changing calls with a cookie must carry the session's ``X-CSRF-Token`` header and,
  when the browser sends one, a same-origin ``Origin``. Failed logins are limited per
  address and overall, and logged without what was typed.
- Every response carries a CSP without inline script, ``nosniff``, ``frame-ancestors
  'none'``, a same-origin referrer policy; API answers are ``no-store``. Pictures are
  served by read id and kind, from a path the history holds, only when it resolves inside
  the picture folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from hik2mqtt import listsfile
from hik2mqtt.config import is_loopback
from hik2mqtt.core.wire import CommandKind
from hik2mqtt.numbers import OUTPUT_ID, read_number
from hik2mqtt.plates import parse_lists
from hik2mqtt.web.auth import LoginLimiter, Session, Sessions, same_secret
from hik2mqtt.web.backend import CameraView, WebBackend
from hik2mqtt.web.history import MAX_LIMIT, MAX_TOLERANCE, History, Query
from hik2mqtt.web.live import LiveFeed

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
COOKIE = "hik2mqtt_session"
READ_ID = (1, 2**62)
LIMIT = (1, MAX_LIMIT)
TOLERANCE = (0, MAX_TOLERANCE)
MAX_COMMAND_BODY = 4 * 1024
MAX_LISTS_BODY = 1024 * 1024
MAX_LOGIN_BODY = 4 * 1024
MAX_FILTER_TEXT = 64
MAX_COMMAND_VALUE = 64
MAX_JSON_DEPTH = 32  # the lists editor's body is 4 deep
MAX_JSON_DIGITS = 20
MAX_FORM_FIELDS = 10
KEEPALIVE = 15.0
CAMERA_POLL = 2.0
_KIND = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_HOST_HEADER = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::[0-9]{1,5})?")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make Origin "null"
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
PUBLIC_PATHS = frozenset({"/login", "/logout", "/static/style.css", "/favicon.ico"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Refused(Exception):
    """A request the API answers with an error status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class WebApp:
    """Everything the page serves; ``asgi`` is the application a server runs."""

    def __init__(
        self,
        *,
        backend: WebBackend,
        history: History,
        live: LiveFeed,
        password: str | None,
        session_hours: float = 12.0,
    ) -> None:
        self.backend = backend
        self.history = history
        self.live = live
        self.password = password
        self.sessions = Sessions(session_hours * 3600)
        self.limiter = LoginLimiter()
        self.index_html = (STATIC / "index.html").read_bytes()
        # The page's few files, read once: served from memory, by exact name only.
        self.files = {
            name: ((STATIC / name).read_bytes(), media) for name, media in STATIC_FILES.items()
        }
        routes = [
            Route("/", self.index),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/api/session", self.session_info),
            Route("/api/cameras", self.cameras),
            Route("/api/cameras/{camera}/pictures/{kind}", self.camera_picture),
            Route("/api/cameras/{camera}/trigger", self.trigger, methods=["POST"]),
            Route("/api/cameras/{camera}/outputs/{output}", self.output, methods=["POST"]),
            Route("/api/cameras/{camera}/barrier", self.barrier, methods=["POST"]),
            Route("/api/reads", self.reads, methods=["GET"]),
            Route("/api/reads", self.erase, methods=["DELETE"]),
            Route("/api/reads.csv", self.reads_csv),
            Route("/api/reads/{read_id}/pictures/{kind}", self.read_picture),
            Route("/api/live", self.live_feed),
            Route("/api/lists", self.get_lists, methods=["GET"]),
            Route("/api/lists", self.put_lists, methods=["PUT"]),
            Route("/static/{name}", self.static),
            Route("/favicon.ico", self.favicon),
        ]
        self.starlette = Starlette(
            routes=routes,
            exception_handlers={Refused: _refused, listsfile.ListsRefused: _refused},
        )
        self.asgi: ASGIApp = self._guard

    # -- the guard in front of every request ----------------------------------------------

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.starlette(scope, receive, send)
            return
        is_api = scope["path"].startswith("/api/")

        async def secure_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    h for h in message.get("headers", []) if h[0].lower() != b"server"
                ] + SECURITY_HEADERS
                if is_api:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        refusal = self._check(scope)
        if refusal is not None:
            await refusal(scope, receive, secure_send)
            return
        await self.starlette(scope, receive, secure_send)

    def _check(self, scope: Scope) -> Response | None:
        """None when the request may go on; else the answer that refuses it."""
        headers = Headers(scope=scope)
        method = scope["method"]
        path = scope["path"]
        is_api = path.startswith("/api/")
        if self.password is None:
            if not _loopback_host(headers.get("host", "")):
                return _error(421, "this page answers only on a loopback address")
            if method in UNSAFE_METHODS and path != "/login":
                return _error(
                    403,
                    "read-only: the page has no password (set HIK2MQTT_WEB__PASSWORD)",
                )
            return None
        if path in PUBLIC_PATHS:
            if method in UNSAFE_METHODS and not _same_origin(headers, scope):
                return _error(403, "cross-site request refused")
            return None
        source = _source(scope)
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            if not self.limiter.allowed(source):
                log.warning("web: login from %s refused: too many failed logins", source)
                return _error(429, "too many failed logins; try again later")
            if not same_secret(auth[7:].strip(), self.password):
                self.limiter.failed(source)
                log.warning("web: failed login (bearer) from %s", source)
                return _error(401, "wrong password")
            scope.setdefault("state", {})["auth"] = "bearer"
            return None
        session = self.sessions.get(_cookie(headers, COOKIE))
        if session is None:
            if is_api:
                return _error(401, "log in first (POST /login, or Authorization: Bearer)")
            return RedirectResponse("/login", status_code=303)
        if method in UNSAFE_METHODS:
            token = headers.get("x-csrf-token", "")
            if not _same_origin(headers, scope) or not same_secret(token, session.csrf):
                return _error(403, "cross-site request refused (missing or wrong CSRF token)")
        scope.setdefault("state", {})["auth"] = "session"
        scope["state"]["session"] = session
        return None

    # -- pages and logins -----------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return Response(self.index_html, media_type="text/html; charset=utf-8")

    async def static(self, request: Request) -> Response:
        found = self.files.get(request.path_params["name"])
        if found is None:
            return _error(404, "no such file")
        data, media = found
        return Response(data, media_type=media, headers={"cache-control": "no-cache"})

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204, headers={"cache-control": "max-age=86400"})  # no icon

    async def login_form(self, request: Request) -> Response:
        if self.password is None:
            return RedirectResponse("/", status_code=303)
        failed = request.query_params.get("failed")
        message = {
            "1": "Wrong password.",
            "2": "Too many failed logins; wait a few minutes.",
        }.get(failed or "", "")
        return HTMLResponse(_login_page(message))

    async def login(self, request: Request) -> Response:
        if self.password is None:
            return RedirectResponse("/", status_code=303)
        source = _source(request.scope)
        if not self.limiter.allowed(source):
            log.warning("web: login from %s refused: too many failed logins", source)
            return RedirectResponse("/login?failed=2", status_code=303)
        body = await _body(request, MAX_LOGIN_BODY)
        form = _form(body)
        if not same_secret(form.get("password", ""), self.password):
            self.limiter.failed(source)
            log.warning("web: failed login from %s", source)
            return RedirectResponse("/login?failed=1", status_code=303)
        self.limiter.succeeded(source)
        session = self.sessions.create()
        log.info("web: login from %s", source)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            session.token,
            max_age=int(self.sessions.lifetime),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        self.sessions.end(_cookie(request.headers, COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def session_info(self, request: Request) -> Response:
        session: Session | None = request.scope.get("state", {}).get("session")
        return JSONResponse(
            {
                "password": self.password is not None,
                "read_only": self.password is None,
                "auth": request.scope.get("state", {}).get("auth", "none"),
                "csrf": session.csrf if session else None,
            }
        )

    # -- cameras and commands -------------------------------------------------------------

    def _cameras(self) -> dict[str, CameraView]:
        return {view.name: view for view in self.backend.cameras()}

    def cameras(self, request: Request) -> Response:
        return JSONResponse([view.as_dict() for view in self.backend.cameras()])

    def camera_picture(self, request: Request) -> Response:
        camera, kind = request.path_params["camera"], request.path_params["kind"]
        if camera not in self._cameras() or not _KIND.match(kind):
            return _error(404, "no such camera or picture")
        data = self.backend.latest_picture(camera, kind)
        if data is None:
            return _error(404, "no picture yet")
        return Response(data, media_type="image/jpeg")

    async def trigger(self, request: Request) -> Response:
        return await self._command(request, "trigger", None)

    async def output(self, request: Request) -> Response:
        output = read_number(request.path_params["output"], OUTPUT_ID)
        if output is None:
            return _error(404, "no such output")
        return await self._command(request, "output", output)

    async def barrier(self, request: Request) -> Response:
        return await self._command(request, "barrier", None)

    async def _command(self, request: Request, kind: CommandKind, output: int | None) -> Response:
        camera = request.path_params["camera"]
        try:
            body = await _body(request, MAX_COMMAND_BODY)
            value = ""
            if kind != "trigger":
                given = _json(body).get("value")
                if not isinstance(given, str):
                    raise Refused(400, 'expected JSON {"value": "..."}')
                if len(given) > MAX_COMMAND_VALUE or not given.isprintable():
                    raise Refused(
                        400, f"value: at most {MAX_COMMAND_VALUE} characters, no control characters"
                    )
                value = given
        except Refused as exc:
            return _error(exc.status, exc.reason)
        views = await run_in_threadpool(self._cameras)
        if camera not in views:
            return _error(404, "no such camera")
        outcome = await run_in_threadpool(self.backend.submit, camera, kind, output, value)
        log.info(
            "web: %s command for camera %s %s%s",
            kind,
            camera,
            "accepted" if outcome.accepted else "refused: ",
            "" if outcome.accepted else outcome.reason,
        )
        return JSONResponse(
            {"accepted": outcome.accepted, "reason": outcome.reason},
            status_code=202 if outcome.accepted else 409,
        )

    # -- reads ----------------------------------------------------------------------------

    def reads(self, request: Request) -> Response:
        try:
            query = _query(request)
        except Refused as exc:
            return _error(exc.status, exc.reason)
        page = self.history.search(query)
        return JSONResponse(
            {
                "reads": [r.as_dict() for r in page.records],
                "next_cursor": None if page.next_cursor is None else str(page.next_cursor),
            }
        )

    def reads_csv(self, request: Request) -> Response:
        try:
            query = _query(request)
        except Refused as exc:
            return _error(exc.status, exc.reason)
        return StreamingResponse(
            iterate_in_threadpool(self.history.csv_rows(query)),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="reads.csv"'},
        )

    def erase(self, request: Request) -> Response:
        plate = request.query_params.get("plate", "")
        if not plate.strip() or len(plate) > MAX_FILTER_TEXT:
            return _error(400, "say which plate: DELETE /api/reads?plate=...")
        erased = self.history.erase(plate)
        for camera, kinds in erased.latest.items():  # its last pictures showed that plate
            self.backend.forget_pictures(camera, kinds)
        return JSONResponse({"reads": erased.reads, "pictures": erased.pictures})

    def read_picture(self, request: Request) -> Response:
        read_id = read_number(request.path_params["read_id"], READ_ID)
        kind = request.path_params["kind"]
        record = self.history.get(read_id) if read_id is not None else None
        if record is None or kind not in record.pictures:
            return _error(404, "no such read or picture")
        file = self.history.picture_file(record, kind)
        if file is not None:
            return FileResponse(file, media_type="image/jpeg")
        if self.history.is_latest(record):
            data = self.backend.latest_picture(record.camera, kind, record.event_id)
            if data is not None:
                return Response(data, media_type="image/jpeg")
            # A read is shown before its pictures arrive (they follow it from the camera,
            # and a file is written after the read is published): ask again shortly.
            answer = _error(404, "picture not here yet")
            answer.headers["Retry-After"] = "1"
            return answer
        return _error(404, "picture not kept (set HIK2MQTT_IMAGES__DIR to keep pictures)")

    async def live_feed(self, request: Request) -> Response:
        client = self.live.connect()
        if client is None:
            return _error(503, "too many open pages")
        return StreamingResponse(
            self._events(request, client),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def _events(self, request: Request, client: Any) -> AsyncIterator[str]:
        session: Session | None = request.scope.get("state", {}).get("session")
        try:
            last_cameras = ""
            yield "retry: 2000\n\n"
            while not client.closed:
                cameras = json.dumps(
                    [v.as_dict() for v in await run_in_threadpool(self.backend.cameras)]
                )
                if cameras != last_cameras:
                    last_cameras = cameras
                    yield f"event: cameras\ndata: {cameras}\n\n"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.wake.wait(), CAMERA_POLL)
                client.wake.clear()
                if session is not None and self.sessions.get(session.token) is None:
                    return  # logged out or expired: not one more read for this page
                while client.queue:
                    yield client.queue.popleft()
                if await request.is_disconnected():
                    return
                yield ": keep-alive\n\n"
        finally:
            self.live.disconnect(client)

    # -- lists ----------------------------------------------------------------------------

    def get_lists(self, request: Request) -> Response:
        path, fmt = self.backend.lists_file()
        if path is None:
            return JSONResponse({"file": None, "format": fmt, "version": None, "lists": []})
        try:
            text = path.read_text(encoding="utf-8")
            lists = parse_lists(text, csv_format=fmt == "csv")
        except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
            return _error(409, f"the lists file can't be read: {exc}")
        now = time.time()
        return JSONResponse(
            {
                "file": path.name,
                "format": fmt,
                "version": listsfile.version(text),
                "lists": [
                    {
                        "name": pl.name,
                        "tolerance": pl.tolerance,
                        "plates": [
                            {
                                "plate": e.plate,
                                "name": e.name,
                                "notes": e.notes,
                                "valid_from": e.valid_from,
                                "valid_until": e.valid_until,
                                "state": e.window.state(now),
                            }
                            for e in pl.entries
                        ],
                    }
                    for pl in lists.lists
                ],
            }
        )

    async def put_lists(self, request: Request) -> Response:
        try:
            body = await _body(request, MAX_LISTS_BODY)
            doc = _json(body)
            path, fmt = await run_in_threadpool(self.backend.lists_file)
            if path is None:
                raise Refused(409, "no lists file configured (HIK2MQTT_LISTS_FILE)")
            text = listsfile.serialise(doc.get("lists"), fmt)
            given = doc.get("version")
            await run_in_threadpool(
                listsfile.write, path, text, given if isinstance(given, str) else None
            )
        except listsfile.ListsRefused as exc:
            return _error(exc.status, exc.reason)
        except Refused as exc:
            return _error(exc.status, exc.reason)
        reloaded = await run_in_threadpool(self.backend.reload_lists)
        log.info("web: plate lists written to %s", path)
        return JSONResponse(
            {"saved": True, "reloaded": reloaded, "version": listsfile.version(text)}
        )


# -- helpers ----------------------------------------------------------------------------


async def _refused(request: Request, exc: Exception) -> Response:
    """A Refused (or ListsRefused) raised anywhere in a route: its status and reason."""
    return _error(getattr(exc, "status", 400), getattr(exc, "reason", "bad request"))


def _error(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)


def _source(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _loopback_host(value: str) -> bool:
    """A ``Host`` header (with or without a port) that names a loopback address."""
    found = _HOST_HEADER.fullmatch(value)
    return found is not None and is_loopback(found.group(1))


def _same_origin(headers: Headers, scope: Scope) -> bool:
    """A browser's Origin (when it sends one) names this very server."""
    origin = headers.get("origin")
    if origin is None:
        return True
    scheme = scope.get("scheme", "http")
    return origin == f"{scheme}://{headers.get('host', '')}"


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (read_number(length, (0, limit)) is None):
        raise Refused(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _NotJson(ValueError):
    """A JSON text this API refuses although Python's parser would take it."""


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NotJson(f"the number {text[:20]} is too large")
    return number


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise _NotJson(f"a number of more than {MAX_JSON_DIGITS} digits")
    return int(text)


def _too_deep(doc: Any, limit: int) -> bool:
    """True when ``doc`` nests lists and objects deeper than ``limit`` (no recursion)."""
    level: list[tuple[Any, int]] = [(doc, 1)]
    while level:
        node, depth = level.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        level.extend((child, depth + 1) for child in children)
    return False


def _json(body: bytes) -> dict[str, Any]:
    """A body as a JSON object; Refused (400, saying why) for anything else: not UTF-8, not
    JSON, NaN or Infinity, numbers too large, nested deeper than MAX_JSON_DEPTH."""
    try:
        doc = json.loads(
            body.decode("utf-8-sig") if body else "{}",
            parse_constant=_no_constant,
            parse_float=_finite,
            parse_int=_integer,
        )
    except UnicodeDecodeError as exc:
        raise Refused(400, "the body is not UTF-8 text") from exc
    except _NotJson as exc:
        raise Refused(400, f"the body is not JSON this API takes: {exc}") from exc
    except RecursionError as exc:
        raise Refused(400, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:
        raise Refused(400, f"the body is not JSON: {_first_line(exc)}") from exc
    if not isinstance(doc, dict):
        raise Refused(400, "expected a JSON object")
    if _too_deep(doc, MAX_JSON_DEPTH):
        raise Refused(400, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    return doc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qs  # noqa: PLC0415 - only logins need it

    try:
        parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:  # more fields than that
        raise Refused(400, f"a login form has at most {MAX_FORM_FIELDS} fields") from exc
    return {k: v[0] for k, v in parsed.items() if v}


def _flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise Refused(400, f"{name}: expected true or false")


def _when(value: str | None, name: str) -> datetime | None:
    """A ``since``/``until`` filter: ISO 8601, a time without a zone in the bridge's own;
    Refused (400) for anything else, a time no POSIX timestamp can hold included."""
    if not value:
        return None
    if len(value) > MAX_FILTER_TEXT:
        raise Refused(400, f"{name}: too long for a time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Refused(400, f"{name}: expected an ISO 8601 time (2026-12-24T18:00)") from exc
    try:
        when = when if when.tzinfo is not None else when.astimezone()
        when.timestamp()  # the history compares timestamps: one must exist
    except (ValueError, OverflowError, OSError) as exc:
        raise Refused(400, f"{name}: {value!r} is out of the range of times") from exc
    return when


def _query(request: Request) -> Query:
    params = request.query_params
    for key in ("plate", "camera", "list"):
        if len(params.get(key) or "") > MAX_FILTER_TEXT:
            raise Refused(400, f"{key}: too long")
    limit = read_number(params.get("limit", "50"), LIMIT)
    tolerance = read_number(params.get("tolerance", "0"), TOLERANCE)
    cursor_text = params.get("cursor")
    cursor = read_number(cursor_text, READ_ID) if cursor_text else None
    if limit is None:
        raise Refused(400, f"limit: expected 1 to {MAX_LIMIT}")
    if tolerance is None:
        raise Refused(400, f"tolerance: expected 0 to {MAX_TOLERANCE}")
    if cursor_text and cursor is None:
        raise Refused(400, "cursor: not one this API gave")
    gate_text = params.get("gate")
    gate = {"open": True, "shut": False, "": None, None: None}.get(gate_text)
    if gate_text not in ("open", "shut", "", None):
        raise Refused(400, "gate: expected open or shut")
    list_name = params.get("list")
    return Query(
        plate=params.get("plate") or None,
        tolerance=tolerance,
        camera=params.get("camera") or None,
        since=_when(params.get("since"), "since"),
        until=_when(params.get("until"), "until"),
        list=None if list_name is None or list_name == "*" else list_name,
        duplicate=_flag(params.get("duplicate"), "duplicate"),
        retransmitted=_flag(params.get("retransmitted"), "retransmitted"),
        gate=gate,
        limit=limit,
        cursor=cursor,
    )


def _login_page(message: str) -> str:
    note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hik2mqtt - log in</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body class="login">
<main>
<h1>hik2mqtt</h1>
<form method="post" action="/login">
{note}
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required
 autofocus>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
"""
