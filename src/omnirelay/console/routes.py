"""The operator console at ``/console``: server-rendered pages over the store, behind a session cookie.

Every page and JSON endpoint needs a session (kept in the store, see :mod:`omnirelay.console.session`) and reads
only the logged-in account's data (the store scopes every query by account id). Every POST carries its form
token. The console does its own auth, so ``/console`` is a public prefix for the API's auth middleware.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import importlib.resources
import io
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from html import escape
from urllib.parse import quote, urlencode, urlsplit

import msgspec
from aiohttp import web

from omnirelay.connectors.sandbox.connector import Sandbox
from omnirelay.console import stats
from omnirelay.console.session import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    TTL_S,
    Session,
    new_token,
    same,
    token_hash,
)
from omnirelay.console.stats import message_channel
from omnirelay.domain.catalogue import STATUS_GROUPS
from omnirelay.domain.channels import Channel
from omnirelay.domain.credentials import verify_password
from omnirelay.domain.ids import scenario_key
from omnirelay.domain.lifecycle import Phase
from omnirelay.domain.message import MessageState, state_decoder
from omnirelay.domain.model import ScenarioIn, SimpleRequest, To
from omnirelay.domain.request import request_decoder
from omnirelay.domain.validation import (
    Accepted,
    Errors,
    main_address,
    simple_to_advanced,
    validate_scenario,
)
from omnirelay.message_detail import OUTCOMES, message_detail, outcome
from omnirelay.sending import Sender
from omnirelay.store.base import (
    Cursor,
    Found,
    LogQuery,
    MessageSearch,
    MessageView,
    ScenarioRecord,
    Store,
)
from omnirelay.store.search import ERROR_NAME

Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
ScenarioForm = tuple[str, list[tuple[str, str]], bool]
"""A scenario form's values: name, (channel, from) rows, default."""

PREFIX = "/console"
FLOW_ROWS = 5
PAGE_SIZE = 50
COUNT_CAP = 10_000
"""A search counts its messages exactly up to here, and shows "more than" beyond (see BENCHMARKS.md)."""
EXPORT_PAGE = 1000
"""Rows an export reads per query: a whole export is never in memory."""
SEARCH_WINDOW_S = 48 * 3600
CHANNELS = [c.value for c in Channel]
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/plain", ".ico": "image/x-icon"}

_to_decoder = msgspec.json.Decoder(To)


def h(value: object) -> str:
    """HTML-escape any value (None shows as an empty string)."""
    return "" if value is None else escape(str(value), quote=True)


def when(ts: float | None) -> str:
    """A timestamp for people: UTC with milliseconds."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def parse_when(raw: str) -> float:
    """A ``datetime-local`` value (or ISO date-time) read as UTC; ValueError when malformed."""
    value = dt.datetime.fromisoformat(raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


RESULT_COLUMNS = ["Accepted (UTC)", "Message id", "Bulk id", "To", "Channel", "Outcome", "Error", "Attempts"]
EXPORT_COLUMNS = [
    "accepted_at",
    "message_id",
    "bulk_id",
    "to",
    "channel",
    "outcome",
    "status",
    "error",
    "step_errors",
    "attempts",
    "done_at",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CURSOR = re.compile(r"(-?[0-9.]+(?:e[+-]?[0-9]+)?)_([0-9]+)")


def format_cursor(cursor: Cursor) -> str:
    """A cursor as a query-string value: the acceptance time (exact, ``repr``) and the row id."""
    return f"{cursor.created_at!r}_{cursor.id}"


def parse_cursor(raw: str) -> Cursor | None:
    """A cursor from :func:`format_cursor`, or None when ``raw`` is not one."""
    found = _CURSOR.fullmatch(raw)
    if found is None:
        return None
    try:
        return Cursor(float(found[1]), int(found[2]))
    except ValueError:  # "1.2.3"
        return None


def safe_cell(value: str) -> str:
    """A CSV cell that a spreadsheet shows as text: one starting like a formula gets a leading ``'``."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def iso(ts: float | None) -> str:
    """A timestamp for files: ISO 8601 in UTC with milliseconds, or an empty string."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def export_row(view: MessageView) -> list[str]:
    """One message as a row of ``EXPORT_COLUMNS``."""
    state = state_decoder.decode(view.state)
    payload = request_decoder.decode(view.payload)
    final = state.error if state.phase == Phase.DONE and state.error != "NO_ERROR" else ""
    steps = "; ".join(
        f"{a.step + 1} {a.channel} {a.error}" for a in state.attempts if a.error and a.error != "NO_ERROR"
    )
    return [
        iso(view.created_at),
        view.message_id,
        view.bulk_id or "",
        _address(view),
        message_channel(state, payload) or "",
        outcome(state),
        state.status,
        final,
        steps,
        str(len(state.attempts)),
        iso(state.done_at),
    ]


def _load_static() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    folder = importlib.resources.files("omnirelay.console") / "static"
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), _STATIC_TYPES[suffix])
    return files


def _html(body: str, status: int = 200) -> web.Response:
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _token_input(value: str) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{h(value)}">'


def csrf_input(session: Session) -> str:
    """The hidden field that every form changing something carries."""
    return _token_input(session.csrf)


NAV = (("overview", "Overview"), ("messages", "Messages"), ("scenarios", "Scenarios"), ("sandbox", "Sandbox rules"))


def page(title: str, body: str, session: Session | None, active: str = "", head: str = "") -> str:
    """A whole console page around ``body``: a skip link, the header with the navigation, the main content."""
    nav = '<span class="brand">omnirelay</span>'
    if session is not None:
        links = "".join(
            f'<li><a href="{PREFIX}/{key}"{" class=active aria-current=page" if key == active else ""}>{label}</a></li>'
            for key, label in NAV
        )
        nav = (
            f'<a class="brand" href="{PREFIX}/overview">omnirelay</a><ul class="links">{links}</ul>'
            f'<div class="account"><span class="who">{h(session.username)}</span>'
            f'<form method="post" action="{PREFIX}/logout">{csrf_input(session)}'
            '<button class="link" type="submit">Log out</button></form></div>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)} · omnirelay console</title>"
        '<link rel="icon" href="/favicon.ico" sizes="32x32">'
        f'<link rel="stylesheet" href="{PREFIX}/static/console.css">'
        f'<script src="{PREFIX}/static/tables.js" defer></script>{head}</head>'
        '<body><a class="skip" href="#main">Skip to the content</a>'
        f'<header class="top"><nav aria-label="Console">{nav}</nav></header>'
        f'<main id="main" tabindex="-1"><h1>{h(title)}</h1>{body}</main></body></html>'
    )


def table(table_id: str, headers: list[str], rows: list[list[str]], row_class: list[str] | None = None) -> str:
    """A table whose every cell carries its column's name (``data-label``): on a phone, each row shows as a
    card of label/value lines (console.css). ``rows`` are cells of HTML; ``row_class``: a class for each row."""
    head = "".join(f'<th scope="col">{h(name)}</th>' for name in headers)
    body = ""
    for i, cells in enumerate(rows):
        cls = f' class="{h(row_class[i])}"' if row_class is not None else ""
        body += f"<tr{cls}>" + "".join(
            f'<td data-label="{h(name)}">{cell}</td>' for name, cell in zip(headers, cells, strict=True)
        ) + "</tr>"
    return (
        f'<div class="table-wrap"><table id="{h(table_id)}" class="list"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _errors_html(errors: Errors | dict[str, list[str]] | None) -> str:
    if not errors:
        return ""
    items = "".join(f"<li><code>{h(k)}</code>: {h('; '.join(v))}</li>" for k, v in errors.items())
    return f'<div class="error" role="alert"><ul>{items}</ul></div>'


def _options(values: list[str], selected: str | None, blank: str | None = None) -> str:
    out = f'<option value="">{h(blank)}</option>' if blank is not None else ""
    for v in values:
        out += f'<option value="{h(v)}"{" selected" if v == selected else ""}>{h(v)}</option>'
    return out


def _address(view: MessageView) -> str:
    try:
        return main_address(_to_decoder.decode(view.to_json)) or ""
    except msgspec.DecodeError:
        return ""


class ConsoleRoutes:
    """The console's pages and JSON endpoints; ``add_to`` registers them under ``/console``."""

    def __init__(
        self,
        store: Store,
        sandbox: Sandbox,
        sender: Sender,
        wake: Callable[[], None],
        ttl_s: float = TTL_S,
        currency: str = "",
    ) -> None:
        self.store = store
        self.sandbox = sandbox
        self.sender = sender
        """The accept path, for "try in the sandbox"."""
        self.wake = wake
        """Called after the tester stored a message (wakes the engine)."""
        self.ttl_s = ttl_s
        """How long a login lasts (unless logged out first)."""
        self.static = _load_static()
        self.currency = currency
        """The currency of the prices (the overview's cost)."""

    def add_to(self, app: web.Application) -> None:
        """Register the routes."""
        r = app.router
        r.add_get(PREFIX, self.root)
        r.add_get(PREFIX + "/", self.root)
        r.add_get(PREFIX + "/static/{name}", self.static_file)
        r.add_get("/favicon.ico", self.favicon)
        r.add_get(PREFIX + "/login", self.login_form)
        r.add_post(PREFIX + "/login", self.login)
        r.add_post(PREFIX + "/logout", self.logout)
        r.add_get(PREFIX + "/overview", self._guard(self.overview))
        r.add_get(PREFIX + "/api/overview", self._guard(self.overview_json, api=True))
        r.add_get(PREFIX + "/messages", self._guard(self.search))
        r.add_get(PREFIX + "/messages.csv", self._guard(self.export))
        r.add_get(PREFIX + "/messages/{messageId}", self._guard(self.message))
        r.add_get(PREFIX + "/api/messages/{messageId}", self._guard(self.message_json, api=True))
        r.add_get(PREFIX + "/scenarios", self._guard(self.scenarios))
        r.add_post(PREFIX + "/scenarios", self._guard(self.create_scenario))
        r.add_get(PREFIX + "/scenarios/{key}", self._guard(self.scenario))
        r.add_post(PREFIX + "/scenarios/{key}", self._guard(self.update_scenario))
        r.add_post(PREFIX + "/scenarios/{key}/default", self._guard(self.make_default))
        r.add_post(PREFIX + "/scenarios/{key}/try", self._guard(self.try_scenario))
        r.add_get(PREFIX + "/sandbox", self._guard(self.rules))

    # --- session --------------------------------------------------------------------------------

    async def session(self, request: web.Request) -> Session | None:
        """The request's live session (one look-up by primary key), or None."""
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        account = await self.store.console_session(token_hash(token), time.time())
        return Session(account.id, account.username, token) if account is not None else None

    def _guard(self, handler: Handler, api: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = await self.session(request)
            if session is None:
                if api:
                    return web.json_response({"error": "not logged in"}, status=401)
                return _redirect(f"{PREFIX}/login?next={quote(request.path_qs, safe='')}")
            if request.method == "POST" and not await self._form_is_ours(request, session.csrf):
                return self._refused(session)
            return await handler(request, session)

        return guarded

    @staticmethod
    async def _form_is_ours(request: web.Request, expected: str) -> bool:
        """Whether a POST comes from one of our own pages: it carries the form token (which another site cannot
        know), and an ``Origin``, when the browser sends one, is this host."""
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:  # also "null" (sandboxed, opaque)
            return False
        form = await request.post()  # aiohttp keeps it: the handler reads the same form again
        given = form.get(CSRF_FIELD)
        return same(given if isinstance(given, str) else None, expected)

    @staticmethod
    def _refused(session: Session | None) -> web.Response:
        body = (
            '<p class="error" role="alert">This form was refused: it did not come from a page of this console, or'
            " the page is older than the login. Go back, reload the page and send it again.</p>"
        )
        return _html(page("Forbidden", body, session), 403)

    async def root(self, request: web.Request) -> web.Response:
        """``/console``: the overview, or the login form."""
        return _redirect(f"{PREFIX}/overview" if await self.session(request) else f"{PREFIX}/login")

    async def static_file(self, request: web.Request) -> web.Response:
        """The console's CSS and scripts (nothing secret: no session needed)."""
        found = self.static.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="not found")
        body, content_type = found
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "max-age=300"})

    async def favicon(self, request: web.Request) -> web.Response:
        """``/favicon.ico``, which browsers ask for by themselves (no session needed: it is the same for all)."""
        body, content_type = self.static["favicon.ico"]
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "max-age=86400"})

    def _login_page(
        self, request: web.Request, error: str = "", username: str = "", next_path: str = "", status: int = 200
    ) -> web.Response:
        """The login form, with a fresh pair of login cookie and form token."""
        pair = new_token()
        alert = f'<div class="error" role="alert">{h(error)}</div>' if error else ""
        body = (
            f'{alert}<form method="post" action="{PREFIX}/login" class="card narrow">{_token_input(pair)}'
            f'<input type="hidden" name="next" value="{h(next_path)}">'
            f'<label>Username <input name="username" autocomplete="username" value="{h(username)}" required></label>'
            '<label>Password <input name="password" type="password" autocomplete="current-password" required>'
            '</label><button type="submit">Log in</button></form>'
        )
        response = _html(page("Log in", body, None), status)
        response.set_cookie(
            LOGIN_COOKIE, pair, path=PREFIX, httponly=True, samesite="Strict", secure=request.secure
        )
        return response

    async def login_form(self, request: web.Request) -> web.Response:
        """The login form."""
        return self._login_page(request, next_path=request.query.get("next", ""))

    async def login(self, request: web.Request) -> web.Response:
        """Check username and password; on success store a session, set its cookie and go on."""
        form = await request.post()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        next_path = str(form.get("next", ""))
        pair = request.cookies.get(LOGIN_COOKIE, "")
        if not pair or not await self._form_is_ours(request, pair):
            return self._login_page(
                request, "The login form was refused (it did not come from this console): log in again.",
                username, next_path, status=403,
            )
        account = await self.store.account_by_username(username) if username else None
        stored = account.password_hash if account is not None else None
        ok = await asyncio.to_thread(verify_password, password, stored)
        if account is None or stored is None or not ok:
            return self._login_page(request, "Wrong username or password.", username, next_path, status=401)
        if not next_path.startswith(PREFIX + "/") or next_path.startswith("//"):
            next_path = f"{PREFIX}/overview"
        token, now = new_token(), time.time()
        await self.store.add_console_session(token_hash(token), account.id, stored, now + self.ttl_s, now)
        response = _redirect(next_path)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(self.ttl_s),
            path=PREFIX,
            httponly=True,
            samesite="Lax",
            secure=request.secure,
        )
        response.del_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """End the session in the store (for every process), then forget its cookie."""
        session = await self.session(request)
        if session is not None:
            if not await self._form_is_ours(request, session.csrf):
                return self._refused(session)
            await self.store.end_console_session(token_hash(session.token))
        response = _redirect(f"{PREFIX}/login")
        response.del_cookie(COOKIE, path=PREFIX)
        return response

    # --- overview -------------------------------------------------------------------------------

    async def overview(self, request: web.Request, session: Session) -> web.Response:
        """What an operator watches, over a chosen range (drawn by overview.js from ``/console/api/overview``,
        which it fetches again every few seconds)."""
        # Chart.js 4.5.1 (MIT), vendored: static/chart.umd.min.js, see static/VENDORED.md
        head = (
            "<!-- Chart.js v4.5.1, MIT licence, vendored from npm chart.js (dist/chart.umd.min.js) -->"
            f'<script src="{PREFIX}/static/chart.umd.min.js" defer></script>'
            f'<script src="{PREFIX}/static/overview.js" defer></script>'
        )
        q = request.query
        chosen = stats.choose_range(q, time.time())
        key = chosen.key if isinstance(chosen, stats.Range) else q.get("range", "")
        buttons = "".join(
            f'<button type="submit" name="range" value="{k}" class="small{"" if k == key else " secondary"}"'
            f' aria-pressed="{"true" if k == key else "false"}">{h(label)}</button>'
            for k, label in (("1h", "Last hour"), ("24h", "24 hours"), ("7d", "7 days"))
        )
        form = (
            f'<form method="get" action="{PREFIX}/overview" id="range" class="card filters">'
            f'<div class="ranges" role="group" aria-label="Range">{buttons}</div>'
            f'<label>From (UTC) <input type="datetime-local" name="from" value="{h(q.get("from"))}"></label>'
            f'<label>To (UTC) <input type="datetime-local" name="to" value="{h(q.get("to"))}"></label>'
            '<button type="submit" name="range" value="custom" class="small'
            f'{"" if key == "custom" else " secondary"}" aria-pressed="{"true" if key == "custom" else "false"}">'
            "Custom range</button></form>"
        )
        errors = _errors_html(chosen) if isinstance(chosen, dict) else ""
        kpis = "".join(
            f'<div class="kpi"><span class="muted">{label}</span><strong id="{kid}">–</strong></div>'
            for kid, label in (
                ("kpi-accepted", "Accepted"),
                ("kpi-delivered", "Delivered"),
                ("kpi-pending", "Pending"),
                ("kpi-median", "Median accept → final"),
                ("kpi-p95", "p95 accept → final"),
                ("kpi-cost", "Cost"),
            )
        )
        body = (
            f"{form}{errors}"
            '<p class="muted" aria-live="polite"><span id="range-label"></span> <span id="total"></span> '
            '<span id="updated"></span></p>'
            f'<section class="card kpis" aria-label="Key figures">{kpis}</section>'
            '<section class="card"><h2>Messages by time of acceptance and outcome</h2>'
            '<div class="chart wide"><canvas id="perMinute" aria-label="messages by time of acceptance">'
            "</canvas></div></section>"
            '<div class="grid"><section class="card"><h2>Failover rate per step</h2>'
            '<div class="chart"><canvas id="failover" aria-label="failover rate per step"></canvas></div>'
            '<table id="failover-table"><thead><tr><th>Step</th><th>Channel</th><th>Tried</th><th>Failed over</th>'
            "<th>%</th></tr></thead><tbody></tbody></table></section>"
            '<section class="card"><h2>Outcomes</h2>'
            '<div class="chart"><canvas id="funnel" aria-label="outcomes"></canvas></div></section></div>'
            '<div class="grid"><section class="card"><h2>Errors by code</h2>'
            '<table id="errors"><thead><tr><th>Error</th><th>Messages</th><th>%</th></tr></thead><tbody></tbody>'
            '</table></section><section class="card"><h2>Latency per channel (submitted → delivered)</h2>'
            '<table id="channel-latency"><thead><tr><th>Channel</th><th>Delivered</th><th>Median</th><th>p95</th>'
            "</tr></thead><tbody></tbody></table></section></div>"
            '<div class="grid"><section class="card"><h2>Cost by channel</h2>'
            '<table id="cost"><thead><tr><th>Channel</th><th>Messages</th><th>Cost</th></tr></thead><tbody></tbody>'
            '</table></section><section class="card"><h2>Connector health</h2>'
            '<table id="connectors"><thead><tr><th>Connector</th><th>State</th><th>Details</th><th>Errors</th>'
            '</tr></thead><tbody></tbody></table></section></div>'
        )
        return _html(page("Overview", body, session, "overview", head), 400 if errors else 200)

    async def overview_json(self, request: web.Request, session: Session) -> web.Response:
        """The overview of a range (``range=1h|24h|7d``, or ``range=custom&from=…&to=…``) from the rollups, with
        the connectors' health."""
        now = time.time()
        chosen = stats.choose_range(request.query, now)
        if isinstance(chosen, dict):
            return web.json_response({"errors": chosen}, status=400, headers={"Cache-Control": "no-store"})
        found = await self.store.overview(session.account_id, chosen.span, chosen.since, chosen.until)
        data = stats.summarize(found, chosen, now, self.currency)
        data["connectors"] = stats.connectors(await self.store.connector_health(), now)
        data["backlog"] = await self.store.rollup_backlog()
        return web.json_response(data, headers={"Cache-Control": "no-store"})

    # --- messages -------------------------------------------------------------------------------

    @staticmethod
    def _search_of(q: Mapping[str, str], now: float, limit: int) -> tuple[MessageSearch | None, dict[str, list[str]]]:
        """The search the query string asks for (the last 48 hours unless it says), or the errors of its fields."""
        errors: dict[str, list[str]] = {}
        since, until = now - SEARCH_WINDOW_S, None
        for name in ("since", "until"):
            if q.get(name):
                try:
                    value = parse_when(q[name])
                except ValueError:
                    errors[name] = ["is not a date and time"]
                    continue
                if name == "since":
                    since = value
                else:
                    until = value
        status = q.get("status", "")
        if status and status not in STATUS_GROUPS:
            errors["status"] = ["unknown status group"]
        channel = q.get("channel", "")
        if channel and channel not in CHANNELS:
            errors["channel"] = ["unknown channel"]
        error = q.get("error", "").strip().upper() or None
        if error is not None and (not ERROR_NAME.fullmatch(error) or error == "NO_ERROR"):
            errors["error"] = ["is not an error name (such as EC_ABSENT_SUBSCRIBER)"]
        if errors:
            return None, errors
        filters = LogQuery(
            since=since,
            until=until,
            bulk_ids=(q["bulkId"].strip(),) if q.get("bulkId", "").strip() else (),
            message_ids=(q["messageId"].strip(),) if q.get("messageId", "").strip() else (),
            status_group=STATUS_GROUPS[status] if status else None,
            channel=channel or None,
            to=q.get("to", "").strip().lstrip("+") or None,
            limit=limit,
        )
        return MessageSearch(filters, error), {}

    async def search(self, request: web.Request, session: Session) -> web.Response:
        """Search form, how many messages match, and one page of them, newest first, with links to the pages
        next to it (keyset paging: a page reads only its own rows however deep it is)."""
        q = request.query
        query, errors = self._search_of(q, time.time(), PAGE_SIZE + 1)
        after, before = None, None
        for name in ("after", "before"):
            if q.get(name):
                cursor = parse_cursor(q[name])
                if cursor is None:
                    errors[name] = ["is not a page of this search"]
                elif name == "after":
                    after = cursor
                else:
                    before = cursor
        found: list[Found] = []
        total = 0
        newer = older = False
        if query is not None and not errors:
            found, total = await asyncio.gather(
                self.store.search_messages(session.account_id, query, after, before),
                self.store.count_messages(session.account_id, query, COUNT_CAP),
            )
            if before is not None:
                newer, older = len(found) > PAGE_SIZE, True
                found = found[-PAGE_SIZE:]
            else:
                newer, older = after is not None, len(found) > PAGE_SIZE
                found = found[:PAGE_SIZE]
        filters = {k: v for k, v in q.items() if k not in ("after", "before") and v}
        rows, classes = [], []
        for item in found:
            view = item.view
            state = state_decoder.decode(view.state)
            payload = request_decoder.decode(view.payload)
            group = outcome(state)
            link = f"{PREFIX}/messages/{quote(view.message_id, safe='')}"
            rows.append(
                [
                    h(when(view.created_at)),
                    f'<a href="{h(link)}" class="mono id">{h(view.message_id)}</a>',
                    f'<span class="mono bulk">{h(view.bulk_id)}</span>',
                    h(_address(view)),
                    h(message_channel(state, payload)),
                    f'<span class="badge {h(group.lower())}">{h(group)}</span> <small class="status">'
                    f"{h(state.status)}</small>",
                    self._error_cell(state),
                    str(len(state.attempts)),
                ]
            )
            classes.append("message")
        form = (
            f'<form method="get" action="{PREFIX}/messages" class="card filters" role="search">'
            f'<label class="wide">Message id <input name="messageId" value="{h(q.get("messageId"))}"></label>'
            f'<label class="wide">Bulk id <input name="bulkId" value="{h(q.get("bulkId"))}"></label>'
            f'<label>Number (to) <input name="to" value="{h(q.get("to"))}" inputmode="tel"></label>'
            f'<label>Status <select name="status">{_options(list(STATUS_GROUPS), q.get("status"), "any")}'
            "</select></label>"
            f'<label>Channel <select name="channel">{_options(CHANNELS, q.get("channel"), "any")}</select></label>'
            f'<label>Error <input name="error" value="{h(q.get("error"))}" placeholder="EC_…" '
            'autocapitalize="characters" spellcheck="false"></label>'
            f'<label class="wide">From (UTC) <input type="datetime-local" name="since" value="{h(q.get("since"))}">'
            "</label>"
            f'<label class="wide">Until (UTC) <input type="datetime-local" name="until" value="{h(q.get("until"))}">'
            '</label><button type="submit">Search</button></form>'
        )
        summary = ""
        if query is not None and not errors:
            counted = (
                f"More than {COUNT_CAP:,} messages" if total > COUNT_CAP else f"{total:,} message{'s' * (total != 1)}"
            )
            window = "" if q.get("since") else " in the last 48 hours"
            export = f"{PREFIX}/messages.csv" + (f"?{urlencode(filters)}" if filters else "")
            summary = (
                f'<div class="summary"><p id="count" aria-live="polite"><strong>{counted}</strong>{window}, newest '
                f'first.</p><a class="button secondary" id="export" href="{h(export)}" download>Export CSV</a></div>'
            )
        if found:
            results = (
                f'<section class="card" aria-label="Messages found">{table("results", RESULT_COLUMNS, rows, classes)}'
                f"{self._pager(filters, found, newer, older)}</section>"
            )
        else:
            results = '<p class="muted" id="results">No messages match.</p>'
        body = form + _errors_html(errors) + summary + results
        return _html(page("Messages", body, session, "messages"), 400 if errors else 200)

    @staticmethod
    def _error_cell(state: MessageState) -> str:
        """The message's final error, then the errors of its steps (each a link to the messages with it)."""
        final = state.error if state.phase == Phase.DONE and state.error != "NO_ERROR" else None
        parts = []
        if final is not None:
            parts.append(f'<a class="err" href="{PREFIX}/messages?error={quote(final)}">{h(final)}</a>')
        for a in state.attempts:
            if a.error and a.error != "NO_ERROR" and a.error != final:
                parts.append(
                    f'<small class="step-error">{h(a.channel)}: '
                    f'<a href="{PREFIX}/messages?error={quote(a.error)}">{h(a.error)}</a></small>'
                )
        return " ".join(parts)

    @staticmethod
    def _pager(filters: dict[str, str], found: list[Found], newer: bool, older: bool) -> str:
        def link(rel: str, text: str, cursor: Cursor | None, key: str) -> str:
            if cursor is None:
                return f'<span class="button secondary disabled" aria-disabled="true">{text}</span>'
            args = urlencode({**filters, key: format_cursor(cursor)})
            return f'<a class="button secondary" rel="{rel}" href="{PREFIX}/messages?{h(args)}">{text}</a>'

        newest = f"{PREFIX}/messages?{urlencode(filters)}"
        first = f'<a class="button secondary" href="{h(newest)}">Newest</a>' if newer else ""
        return (
            f'<nav class="pager" aria-label="Pages">{first}'
            + link("prev", "← Newer", found[0].cursor if newer else None, "before")
            + link("next", "Older →", found[-1].cursor if older else None, "after")
            + "</nav>"
        )

    async def export(self, request: web.Request, session: Session) -> web.StreamResponse:
        """The messages of the current search as CSV, streamed: read ``EXPORT_PAGE`` rows at a time (keyset
        pages), written as they come, so an export of a million rows holds one page in memory."""
        query, errors = self._search_of(request.query, time.time(), EXPORT_PAGE)
        if query is None:
            return _html(page("Messages", _errors_html(errors), session, "messages"), 400)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="omnirelay-messages-{stamp}Z.csv"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            }
        )
        await response.prepare(request)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        after: Cursor | None = None
        try:
            while True:
                found = await self.store.search_messages(session.account_id, query, after)
                for item in found:
                    writer.writerow([safe_cell(v) for v in export_row(item.view)])
                await response.write(out.getvalue().encode())
                out.seek(0)
                out.truncate()
                if len(found) < EXPORT_PAGE:
                    break
                after = found[-1].cursor
            await response.write_eof()
        except ConnectionResetError:  # the browser went away (download cancelled): nothing left to answer
            pass
        return response

    async def _view(self, request: web.Request, session: Session) -> MessageView | None:
        return await self.store.message(session.account_id, request.match_info["messageId"])

    async def message_json(self, request: web.Request, session: Session) -> web.Response:
        """One message's timeline as JSON (404 for another account's message)."""
        view = await self._view(request, session)
        if view is None:
            return web.json_response({"error": "message not found"}, status=404)
        return web.json_response(message_detail(view), headers={"Cache-Control": "no-store"})

    async def message(self, request: web.Request, session: Session) -> web.Response:
        """One message and its failover timeline; reloads itself until the message is done."""
        view = await self._view(request, session)
        if view is None:
            body = '<p class="error" role="alert">No such message in this account.</p>'
            return _html(page("Message not found", body, session, "messages"), 404)
        d = message_detail(view)
        facts = [
            ("Message id", f'<span class="mono" id="message-id">{h(d["messageId"])}</span>'),
            ("Bulk id", f'<span class="mono">{h(d["bulkId"])}</span>'),
            ("To", h(_address(view))),
            ("Accepted", h(when(d["createdAt"]))),
            ("Phase", f'<span id="phase">{h(d["phase"])}</span>'),
            ("Outcome", f'<span class="badge {h(d["outcome"].lower())}" id="outcome">{h(d["outcome"])}</span>'),
            ("Status", h(d["status"])),
            ("Error", h(d["error"])),
            ("Channel", h(d["channel"])),
            ("Done", h(when(d["doneAt"]))),
        ]
        dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
        steps = " → ".join(f"{h(s['channel'])} <small>({h(s['from'] or '-')})</small>" for s in d["steps"])
        attempts = table(
            "attempts",
            ["Step", "Channel", "State", "Submitted (UTC)", "Done (UTC)", "Status", "Error", "Note"],
            [
                [
                    str(a["step"]),
                    h(a["channel"]),
                    f'<span class="badge {h(a["state"].lower())}">{h(a["state"])}</span>',
                    h(when(a["startedAt"])),
                    h(when(a["doneAt"])),
                    h(a["status"]),
                    h(a["error"]),
                    h(a["note"]),
                ]
                for a in d["attempts"]
            ],
            [f"attempt {a['state'].lower()}" for a in d["attempts"]],
        )
        history = "".join(f"<li><time>{h(when(line['at']))}</time> {h(line['text'])}</li>" for line in d["history"])
        refresh = "" if d["phase"] == Phase.DONE else '<meta http-equiv="refresh" content="1">'
        body = (
            f'<section class="card"><dl class="facts">{dl}</dl><p>Scenario flow: {steps}</p></section>'
            f'<section class="card"><h2>Attempts</h2>{attempts}</section><section class="card"><h2>History</h2>'
            f'<ol class="history" id="history">{history}</ol></section>'
        )
        return _html(page("Message", body, session, "messages", refresh))

    # --- scenarios ------------------------------------------------------------------------------

    @staticmethod
    def _flow_rows(flow: list[tuple[str, str]]) -> str:
        rows: list[list[str]] = []
        for i in range(max(FLOW_ROWS, len(flow) + 1)):
            channel, sender = flow[i] if i < len(flow) else ("", "")
            rows.append(
                [
                    str(i + 1),
                    f'<select name="channel_{i}" aria-label="Step {i + 1} channel">'
                    f"{_options(CHANNELS, channel, '—')}</select>",
                    f'<input name="from_{i}" value="{h(sender)}" placeholder="sender" '
                    f'aria-label="Step {i + 1} from (sender)">',
                ]
            )
        return table("flow", ["Step", "Channel", "From"], rows)

    def _scenario_form(self, session: Session, action: str, form: ScenarioForm | None, button: str) -> str:
        name, flow, default = form if form is not None else ("", [], False)
        checked = " checked" if default else ""
        return (
            f'<form method="post" action="{h(action)}" class="card scenario-form">{csrf_input(session)}'
            f'<label>Name <input name="name" value="{h(name)}" placeholder="e.g. WHATSAPP-SMS"></label>'
            f'<fieldset class="flow"><legend>Flow: the channels, in order</legend>{self._flow_rows(flow)}</fieldset>'
            f'<label class="check"><input type="checkbox" name="default" value="1"{checked}> Default scenario</label>'
            f'<button type="submit">{h(button)}</button></form>'
        )

    @staticmethod
    def _as_form(record: ScenarioRecord) -> ScenarioForm:
        return record.name, [(s.channel, s.from_ or "") for s in record.flow], record.default

    @staticmethod
    def _flow_text(record: ScenarioRecord) -> str:
        return " → ".join(f"{h(s.channel)} <small>({h(s.from_ or '-')})</small>" for s in record.flow)

    async def _scenario_list(
        self, session: Session, errors: dict[str, list[str]] | None = None, submitted: ScenarioForm | None = None
    ) -> web.Response:
        records = await self.store.scenarios(session.account_id, None, 1000, 0)
        rows = [
            [
                f'<a href="{PREFIX}/scenarios/{h(r.key)}">{h(r.name)}</a>',
                f'<span class="mono">{h(r.key)}</span>',
                self._flow_text(r),
                "★ default" if r.default else "",
                (
                    ""
                    if r.default
                    else f'<form method="post" action="{PREFIX}/scenarios/{h(r.key)}/default" class="inline">'
                    f"{csrf_input(session)}"
                    f'<button class="small" type="submit" aria-label="Make {h(r.name)} the default">Make default'
                    "</button></form>"
                )
                + f' <a class="button small" href="{PREFIX}/scenarios/{h(r.key)}#try" aria-label="Try {h(r.name)}">'
                "Try</a>",
            ]
            for r in records
        ]
        listing = (
            table("scenarios", ["Name", "Key", "Flow", "Default", "Actions"], rows)
            if records
            else '<p class="muted">No scenarios yet.</p>'
        )
        body = (
            f'<section class="card">{listing}</section><h2>New scenario</h2>{_errors_html(errors)}'
            + self._scenario_form(session, f"{PREFIX}/scenarios", submitted, "Create scenario")
        )
        return _html(page("Scenarios", body, session, "scenarios"), 400 if errors else 200)

    async def scenarios(self, request: web.Request, session: Session) -> web.Response:
        """The account's scenarios and a form to create one."""
        return await self._scenario_list(session)

    @staticmethod
    async def _scenario_input(
        request: web.Request,
    ) -> tuple[dict[str, list[str]], ScenarioIn | None, ScenarioForm]:
        form = await request.post()
        rows: list[tuple[str, str]] = []
        for i in range(50):
            channel = str(form.get(f"channel_{i}", "")).strip()
            sender = str(form.get(f"from_{i}", "")).strip()
            if channel:
                rows.append((channel, sender))
        name = str(form.get("name", "")).strip()
        submitted: ScenarioForm = (name, rows, "default" in form)
        if not rows:
            return {"flow": ["needs at least one step"]}, None, submitted
        raw = {
            "flow": [{"channel": c, "from": f or None} for c, f in rows],
            "name": name or None,
            "default": "default" in form,
        }
        try:
            return {}, msgspec.convert(raw, ScenarioIn), submitted
        except msgspec.ValidationError as exc:
            return {"flow": [str(exc)]}, None, submitted

    @staticmethod
    def _record(key: str, body: ScenarioIn) -> tuple[Errors, ScenarioRecord | None]:
        errors, flow = validate_scenario(body)
        if errors:
            return errors, None
        name = body.name if body.name else "-".join(step.channel for step in flow)
        return {}, ScenarioRecord(key=key, name=name, flow=flow, default=bool(body.default))

    async def create_scenario(self, request: web.Request, session: Session) -> web.Response:
        """Create a scenario from the form."""
        errors, body, submitted = await self._scenario_input(request)
        record = None
        if body is not None:
            errors, record = self._record(scenario_key(), body)
        if record is None:
            return await self._scenario_list(session, errors, submitted)
        await self.store.create_scenario(session.account_id, record)
        return _redirect(f"{PREFIX}/scenarios/{record.key}")

    async def _scenario_page(
        self,
        session: Session,
        record: ScenarioRecord,
        errors: dict[str, list[str]] | None = None,
        try_errors: dict[str, list[str]] | None = None,
        to: str = "",
        text: str = "",
        submitted: ScenarioForm | None = None,
    ) -> web.Response:
        default_form = (
            ""
            if record.default
            else f'<form method="post" action="{PREFIX}/scenarios/{h(record.key)}/default" class="inline">'
            f"{csrf_input(session)}"
            '<button type="submit" class="secondary">Make default</button></form>'
        )
        body = (
            f'<p>Key <span class="mono">{h(record.key)}</span> · {self._flow_text(record)}'
            f"{' · ★ default' if record.default else ''} {default_form}</p>"
            f'<h2 id="try">Try in the sandbox</h2>{_errors_html(try_errors)}'
            f'<form method="post" action="{PREFIX}/scenarios/{h(record.key)}/try" class="card try-form">'
            f"{csrf_input(session)}"
            f'<label>To (phone number or e-mail) <input name="to" value="{h(to)}" required '
            'placeholder="41793026727"></label>'
            f'<label>Text <input name="text" value="{h(text or "Hello from the omnirelay console")}" required></label>'
            '<button type="submit">Send through this scenario</button></form>'
            f"<h2>Edit</h2>{_errors_html(errors)}"
            + self._scenario_form(
                session, f"{PREFIX}/scenarios/{record.key}", submitted or self._as_form(record), "Save"
            )
        )
        status = 400 if errors or try_errors else 200
        return _html(page(f"Scenario {record.name}", body, session, "scenarios"), status)

    async def _scenario_or_404(self, request: web.Request, session: Session) -> ScenarioRecord | web.Response:
        record = await self.store.scenario(session.account_id, request.match_info["key"])
        if record is None:
            body = '<p class="error" role="alert">No such scenario in this account.</p>'
            return _html(page("Scenario not found", body, session, "scenarios"), 404)
        return record

    async def scenario(self, request: web.Request, session: Session) -> web.Response:
        """One scenario: edit it, make it the default, try it."""
        found = await self._scenario_or_404(request, session)
        if isinstance(found, web.Response):
            return found
        return await self._scenario_page(session, found)

    async def update_scenario(self, request: web.Request, session: Session) -> web.Response:
        """Save the edit form."""
        found = await self._scenario_or_404(request, session)
        if isinstance(found, web.Response):
            return found
        errors, body, submitted = await self._scenario_input(request)
        record = None
        if body is not None:
            errors, record = self._record(found.key, body)
        if record is None:
            return await self._scenario_page(session, found, errors, submitted=submitted)
        if not await self.store.update_scenario(session.account_id, record):
            return _redirect(f"{PREFIX}/scenarios")
        return _redirect(f"{PREFIX}/scenarios/{record.key}")

    async def make_default(self, request: web.Request, session: Session) -> web.Response:
        """Make a scenario the account's default."""
        found = await self._scenario_or_404(request, session)
        if isinstance(found, web.Response):
            return found
        record = ScenarioRecord(key=found.key, name=found.name, flow=found.flow, default=True)
        await self.store.update_scenario(session.account_id, record)
        return _redirect(f"{PREFIX}/scenarios")

    async def try_scenario(self, request: web.Request, session: Session) -> web.Response:
        """Send one message through the scenario, the way ``POST /omni/1/text`` does, then show its timeline."""
        found = await self._scenario_or_404(request, session)
        if isinstance(found, web.Response):
            return found
        form = await request.post()
        to, text = str(form.get("to", "")).strip(), str(form.get("text", ""))
        address = {"emailAddress": to} if "@" in to else {"phoneNumber": to.lstrip("+")}
        try:
            simple = msgspec.convert(
                {"destinations": [{"to": address}], "scenarioKey": found.key, "text": text}, SimpleRequest
            )
            request_body = simple_to_advanced(simple, found.flow)
        except msgspec.ValidationError as exc:
            return await self._scenario_page(session, found, try_errors={"to": [str(exc)]}, to=to, text=text)
        now = time.time()
        plan = self.sender.plan(request_body, found.flow, now)
        if not isinstance(plan, Accepted):
            return await self._scenario_page(session, found, try_errors=plan, to=to, text=text)
        refused = next((d.rejected for d in plan.destinations if d.rejected is not None), None)
        if refused is not None:
            return await self._scenario_page(session, found, try_errors={"to": [refused.reason]}, to=to, text=text)
        # without the account's own report URL (``[[accounts]] notify_url``): a try is watched on its message page
        sent = await self.sender.accept(session.account_id, plan, now)
        self.wake()
        return _redirect(f"{PREFIX}/messages/{quote(sent.reply.messages[0].messageId, safe='')}")

    # --- sandbox rules --------------------------------------------------------------------------

    async def rules(self, request: web.Request, session: Session) -> web.Response:
        """The sandbox rules in force, first match wins (read-only)."""
        rows = [
            [
                str(i),
                h(rule.channel or "any"),
                f'<span class="mono">{h(rule.to.pattern if rule.to is not None else "any")}</span>',
                f'<span class="badge {h(rule.outcome.lower())}">{h(rule.outcome)}</span>',
                h(rule.error or "(default)"),
                str(round(rule.after_s * 1000)),
            ]
            for i, rule in enumerate(self.sandbox.rules, start=1)
        ]
        body = (
            '<p class="muted">The first rule that matches a step decides it; a step no rule matches is delivered. '
            "Rules come from <code>[[sandbox.rules]]</code> in the configuration.</p>"
            '<section class="card">'
            + table("rules", ["#", "Channel", "To (regex)", "Outcome", "Error", "After (ms)"], rows)
            + "</section>"
        )
        return _html(page("Sandbox rules", body, session, "sandbox"))


__all__ = ["OUTCOMES", "ConsoleRoutes"]
