"""The client commands of ``omnirelay``: ``send``, ``reports``, ``logs`` and ``scenarios``, against a running gateway.

They speak the same OMNI API as any client (so they work against Infobip too), take the gateway from
``--url`` (or ``OMNIRELAY_URL``, default ``http://127.0.0.1:8080``) and the credentials from ``--api-key``,
``--user`` and ``--password``, or ``OMNIRELAY_KEY``, and print tables (coloured on a terminal), or JSON with
``--json``. Whatever goes wrong is one line on stderr and exit status 1; Ctrl-C is status 130.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from omnirelay import csvfile
from omnirelay.domain import catalogue
from omnirelay.domain.dates import format_ts, parse_ts

BATCH = 1000  # at most this many destinations a request when sending a CSV
RATE_LIMITED_TRIES = 10  # a request refused with 429 is asked again, after its Retry-After, up to this often
LOOKUP_IDS = 100  # message ids a logs request asks about while waiting (they go in the URL)
SHOWN = 20  # messages listed one by one: more are summed up
FOLLOW_POLL_S = 1.0
#: How far back each poll of ``logs --follow`` looks again: a message is listed by its accept time, and one
#: accepted just before another may be committed (and so visible) just after it.
FOLLOW_LOOKBACK_S = 2.0
DEFAULT_URL = "http://127.0.0.1:8080"
DUPLICATE = "REJECTED_DUPLICATE_MESSAGE_ID"
GENERAL_STATUSES = tuple(catalogue.STATUS_GROUPS)
_STATUS_STYLE = {"DELIVERED": "green", "PENDING": "yellow"}
_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNITS = {"s": "SECONDS", "m": "MINUTES", "": "MINUTES", "h": "HOURS", "d": "DAYS"}


class ClientError(Exception):
    """The gateway refused a request or could not be reached, or the command cannot run; the message says why."""


def _console(stderr: bool = False) -> Console:
    """A console for tables and colour: coloured only on a terminal without ``NO_COLOR``; piped, as wide as its
    lines (never wrapped)."""
    # NO_COLOR (no-color.org): rich alone would drop the colours but keep bold and dim; this drops every style
    plain = bool(os.environ.get("NO_COLOR"))
    console = Console(stderr=stderr, highlight=False, markup=False, emoji=False, color_system=None if plain else "auto")
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, markup=False, emoji=False, width=100_000)
    return console


@dataclass
class Ui:
    """Where a command writes: tables and results on stdout, progress and problems on stderr."""

    out: Console = field(default_factory=_console)
    err: Console = field(default_factory=lambda: _console(stderr=True))
    where: str | None = None
    """How far the command got, for the user it stops now (Ctrl-C, or the gateway failing midway)."""

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Rows as an aligned table (``None`` cells blank; :class:`~rich.text.Text` cells keep their colour)."""
        framed = self.out.is_terminal
        grid = Table(box=box.SIMPLE_HEAD if framed else None, show_edge=False, pad_edge=False,
                     header_style="bold" if framed else "")
        for name in headers:
            grid.add_column(name, no_wrap=True)
        for row in rows:
            grid.add_row(*(c if isinstance(c, Text) else Text("" if c is None else str(c)) for c in row))
        self.out.print(grid)

    def note(self, text: str) -> None:
        """A line on stderr (progress notes, not results)."""
        self.err.print(text, style="dim")


def _print_json(data: Any) -> None:
    """JSON on stdout, exactly as ``json.dumps`` writes it (no wrapping, no colour)."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def status_text(status: dict[str, Any]) -> Text:
    """A status's name, green when delivered, yellow while pending, red otherwise."""
    return Text(str(status.get("name", "")), style=_STATUS_STYLE.get(status.get("groupName", ""), "red"))


# --- connection --------------------------------------------------------------------------------------------


class _DeprecatedKey(argparse.Action):
    """``--key``, the old name of ``--api-key`` (``scenarios show KEY`` takes a scenario key)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        namespace.api_key = values
        namespace.deprecated_key = True


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--api-key``, ``--user``, ``--password`` and ``--json``."""
    parser.add_argument(
        "--url",
        default=os.environ.get("OMNIRELAY_URL") or DEFAULT_URL,
        help=f"the gateway (also OMNIRELAY_URL; default {DEFAULT_URL})",
    )
    parser.add_argument("--api-key", dest="api_key", metavar="KEY", help="API key (else OMNIRELAY_KEY)")
    parser.add_argument("--key", dest="api_key", action=_DeprecatedKey, help=argparse.SUPPRESS)
    parser.add_argument("--user", help="username, with --password (instead of an API key)")
    parser.add_argument("--password", help="password for --user (asked for on a terminal when not given)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _auth(args: argparse.Namespace) -> str:
    """The ``Authorization`` header: what the command line gives wins over ``OMNIRELAY_KEY``."""
    if args.api_key and args.user:
        raise ClientError("give --api-key or --user, not both")
    if args.password is not None and not args.user:
        raise ClientError("--password goes with --user")
    if args.api_key:
        return f"App {args.api_key}"
    if args.user:
        password = args.password
        if password is None:
            if not sys.stdin.isatty():
                raise ClientError("give --password with --user")
            password = getpass.getpass(f"password for {args.user}: ")
        return "Basic " + base64.b64encode(f"{args.user}:{password}".encode()).decode()
    key = os.environ.get("OMNIRELAY_KEY")
    if key:
        return f"App {key}"
    raise ClientError("give --api-key KEY (or OMNIRELAY_KEY), or --user and --password")


def _base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientError(f"--url {url!r} is not an http:// or https:// address, e.g. {DEFAULT_URL}")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise ClientError(f"--url {url!r} has a port that is not a number") from None
    return url.strip().rstrip("/")


@dataclass
class Api:
    """The gateway's OMNI API, at ``base`` (a URL without the trailing slash)."""

    session: aiohttp.ClientSession
    base: str

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request's JSON answer; :class:`ClientError` for an error answer (its text) or no answer."""
        url = self.base + path
        try:
            for attempt in range(RATE_LIMITED_TRIES):
                async with self.session.request(method, url, json=body) as response:
                    status, wait = response.status, response.headers.get("Retry-After", "1")
                    kind = response.content_type
                    raw = await response.read()
                if status != 429 or attempt == RATE_LIMITED_TRIES - 1:
                    break
                # a 429 did nothing: ask again once its Retry-After has passed
                await asyncio.sleep(min(60.0, float(wait) if wait.isdigit() else 1.0))
        except aiohttp.ClientError as exc:
            raise ClientError(f"cannot reach the gateway at {self.base}: {exc}") from None
        except TimeoutError:
            raise ClientError(f"no answer from the gateway at {self.base} in time") from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise ClientError(
                f"{self.base} answered HTTP {status} ({kind or 'no content type'}), not JSON: is --url the gateway?"
            ) from None
        if status >= 400:
            raise ClientError(_problem(status, data))
        return data


def _problem(status: int, data: Any) -> str:
    """An error answer as one line: Infobip's envelope's text and the fields it names."""
    problem = data.get("requestError", {}).get("serviceException", {}) if isinstance(data, dict) else {}
    if not isinstance(problem, dict):
        problem = {}
    errors = problem.get("validationErrors") or {}
    detail = "; ".join(
        f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in errors.items()
    ) if isinstance(errors, dict) else ""
    return f"{status} {problem.get('text') or 'error'}" + (f" ({detail})" if detail else "")


# --- send ----------------------------------------------------------------------------------------------------


def duration(text: str) -> tuple[int, str]:
    """``--validity``: ``90s``, ``30m`` (or ``30``: minutes, as Infobip's), ``2h``, ``1d``."""
    m = _DURATION.match(text.strip().lower())
    if m is None or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 2h or 1d")
    return int(m.group(1)), _UNITS[m.group(2)]


class _RateColumn(ProgressColumn):
    """Destinations a second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="cyan")


def _progress(ui: Ui, show: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        console=ui.err,
        disable=not (show and ui.err.is_terminal),
    )


@dataclass
class _Plan:
    """What ``send`` sends: the request without destinations, and the destinations."""

    base: dict[str, Any]
    destinations: list[dict[str, Any]]
    bulk_id: str | None


def _plan(args: argparse.Namespace, ui: Ui) -> _Plan:
    if args.csv and args.to:
        raise ClientError("give --to or --csv, not both")
    content: dict[str, Any] = {"text": args.text}
    if args.validity:
        content["validityPeriod"], content["validityPeriodTimeUnit"] = args.validity
    base: dict[str, Any] = {name: dict(content) for name in args.channels}
    if args.scenario:
        base["scenarioKey"] = args.scenario
    if not args.csv:
        if not args.to:
            raise ClientError("no destinations: give --to NUMBER (repeatable) or --csv FILE")
        if args.bulk_id:
            base["bulkId"] = args.bulk_id
        return _Plan(base, [{"to": {"phoneNumber": number}} for number in args.to], args.bulk_id)
    file = csvfile.read(args.csv, args.encoding)
    if args.bulk_id:
        base["bulkId"] = args.bulk_id
    # The same file sent with the same request (text, channels, scenario, validity, bulk id) gets the same message
    # ids, so sending it again (after Ctrl-C, a lost connection, or by mistake) is answered from what the gateway
    # stored: nothing is sent twice. Another file, or another text, gets other ids, even under the same --bulk-id.
    ident = "csv-" + hashlib.blake2b(
        (file.digest + json.dumps(base, sort_keys=True)).encode(), digest_size=10
    ).hexdigest()
    bulk_id = args.bulk_id or ident
    base["bulkId"] = bulk_id
    destinations = [
        {
            "messageId": f"{ident}-{row.line}",
            "to": {
                **({"phoneNumber": row.phone} if row.phone else {}),
                **({"emailAddress": row.email} if row.email else {}),
            },
        }
        for row in file.rows
    ]
    separator = {",": "','", ";": "';'", "\t": "tab"}[file.separator]
    encoding = "UTF-8" if file.encoding == "utf-8-sig" else file.encoding
    ui.note(f"{file.path}: {len(destinations):,} rows ({encoding}, separated by {separator}); bulk id {bulk_id}")
    return _Plan(base, destinations, bulk_id)


async def _send(args: argparse.Namespace, api: Api, ui: Ui) -> int:
    plan = _plan(args, ui)
    destinations, total = plan.destinations, len(plan.destinations)
    if args.csv:  # the first row's message: there when this file went out before with this text
        first = destinations[0]["messageId"]
        if (await api.call("GET", "/omni/1/logs?" + urlencode({"messageId": first, "limit": 1})))["results"]:
            ui.note(f"sent before (bulk id {plan.bulk_id}): rows already sent are answered again, not sent twice")
    sent: list[dict[str, Any]] = []
    bulk_ids: set[str] = set()
    size = max(100, min(BATCH, math.ceil(total / 100)))  # a hundred steps for the bar at least, when it is long
    with _progress(ui, bool(args.csv) and not args.json) as bar:
        task = bar.add_task("sending", total=total)
        for start in range(0, total, size):
            ui.where = (
                f"{start:,} of {total:,} rows sent: run the same command again to send the rest"
                " (the rows already sent are not sent twice)"
                if args.csv
                else None
            )
            batch = destinations[start : start + size]
            answer = await api.call("POST", "/omni/1/advanced", {**plan.base, "destinations": batch})
            sent.extend(answer["messages"])
            if answer.get("bulkId"):
                bulk_ids.add(answer["bulkId"])
            bar.advance(task, len(answer["messages"]))
    bulk = plan.bulk_id or (next(iter(bulk_ids)) if len(bulk_ids) == 1 else None)
    ui.where = f"while waiting; all {total:,} were sent" + (f": omnirelay logs --bulk-id {bulk}" if bulk else "")
    outcomes: dict[str, dict[str, Any]] = {}
    if args.wait:
        await _wait(args, api, ui, sent, outcomes)
    ui.where = None
    refused = [m for m in sent if _refused(m)]
    not_delivered = [
        m for m in sent
        if _refused(m) or outcomes.get(m["messageId"], {}).get("status", {}).get("groupName") != "DELIVERED"
    ]
    if args.json:
        _print_json({"bulkId": bulk, "messages": sent, "outcomes": list(outcomes.values())})
    else:
        _send_summary(args, ui, sent, outcomes, refused, not_delivered, bulk)
    if args.wait:
        return 1 if not_delivered else 0
    return 1 if sent and len(refused) == len(sent) else 0


def _refused(message: dict[str, Any]) -> bool:
    """Refused by the gateway at once (a bad number, a duplicate id): it is never sent."""
    return bool(message["status"]["groupName"] == "REJECTED")


async def _wait(
    args: argparse.Namespace, api: Api, ui: Ui, sent: list[dict[str, Any]], outcomes: dict[str, dict[str, Any]]
) -> None:
    """Fill ``outcomes`` with the final log entry of each message, until all have one or ``--wait`` is over.

    From the logs, which (unlike reports) leave the reports for your own systems to take."""
    # a refused destination is in the logs too (finished), but not one refused as a duplicate: its id is another's
    pending = [m["messageId"] for m in sent if m["status"]["name"] != DUPLICATE]
    deadline = time.monotonic() + args.wait
    with _progress(ui, not args.json) as bar:
        task = bar.add_task("waiting", total=len(pending))
        while pending and time.monotonic() < deadline:
            for start in range(0, len(pending), LOOKUP_IDS):
                ids = pending[start : start + LOOKUP_IDS]
                query = urlencode({"messageId": ",".join(ids), "limit": 1000})
                for entry in (await api.call("GET", f"/omni/1/logs?{query}"))["results"]:
                    if entry["status"]["groupName"] != "PENDING":
                        outcomes[entry["messageId"]] = entry
            pending = [i for i in pending if i not in outcomes]
            bar.update(task, completed=len(outcomes))
            if pending:
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _send_summary(
    args: argparse.Namespace,
    ui: Ui,
    sent: list[dict[str, Any]],
    outcomes: dict[str, dict[str, Any]],
    refused: list[dict[str, Any]],
    not_delivered: list[dict[str, Any]],
    bulk: str | None,
) -> None:
    def row(m: dict[str, Any]) -> tuple[Any, ...]:
        outcome = outcomes.get(m["messageId"])
        final = status_text(outcome["status"]) if outcome else None
        if outcome is None and args.wait and not _refused(m):
            final = Text("still pending", style="yellow")
        return (m["to"].get("phoneNumber") or m["to"].get("emailAddress"), m["messageId"], status_text(m["status"]),
                (outcome or {}).get("channel"), final)

    headers = ["to", "messageId", "accepted", "channel", "outcome"]
    if len(sent) <= SHOWN:
        ui.table(headers, [row(m) for m in sent])
    summary = Counter((r["channel"], r["status"]["name"]) for r in outcomes.values())
    ui.out.print(
        f"\n{len(sent) - len(refused)} accepted"
        + (f", {len(refused)} rejected" if refused else "")
        + (f", {len(outcomes)} finished" if args.wait else "")
        + (f" (bulk id {bulk})" if bulk else "")
    )
    if summary:
        ui.table(["channel", "outcome", "messages"], [(c, s, n) for (c, s), n in sorted(summary.items())])
    if args.wait and not_delivered:
        ui.out.print(f"\n{len(not_delivered)} not delivered:")
        if len(sent) > SHOWN:
            ui.table(headers, [row(m) for m in not_delivered[:SHOWN]])
            if len(not_delivered) > SHOWN:
                more = f"omnirelay logs --bulk-id {bulk}" if bulk else "omnirelay logs"
                ui.out.print(f"... and {len(not_delivered) - SHOWN} more: {more}")
        else:
            ui.out.print(", ".join(f"{row(m)[0]} ({m['messageId']})" for m in not_delivered))


# --- reports, logs -----------------------------------------------------------------------------------------

#: Query parameters of the listing commands, by the argument that gives each.
_FILTERS = {
    "limit": "limit",
    "bulk_id": "bulkId",
    "message_id": "messageId",
    "channel": "channel",
    "to": "to",
    "status": "generalStatus",
}


def _query(args: argparse.Namespace, **extra: Any) -> str:
    given = {param: getattr(args, name, None) for name, param in _FILTERS.items()}
    return urlencode({**{p: v for p, v in given.items() if v}, **extra})


async def _reports(args: argparse.Namespace, api: Api, ui: Ui) -> int:
    results: list[dict[str, Any]] = (await api.call("GET", f"/omni/1/reports?{_query(args)}"))["results"]
    if args.json:
        _print_json(results)
        return 0
    rows = [
        (r["messageId"], r["to"], r["channel"], status_text(r["status"]), r["error"]["name"], r.get("doneAt"))
        for r in results
    ]
    ui.table(["messageId", "to", "channel", "status", "error", "doneAt"], rows)
    ui.out.print(f"\n{len(results)} report(s), now taken (each report is returned once)")
    return 0


def _log_row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["messageId"], r["to"], r.get("channel"), status_text(r["status"]), r.get("sentAt"), r.get("doneAt"))


_LOG_HEADERS = ["messageId", "to", "channel", "status", "sentAt", "doneAt"]


async def _logs(args: argparse.Namespace, api: Api, ui: Ui) -> int:
    if args.follow:
        return await _follow(args, api, ui)
    results: list[dict[str, Any]] = (await api.call("GET", f"/omni/1/logs?{_query(args)}"))["results"]
    if args.json:
        _print_json(results)
    else:
        ui.table(_LOG_HEADERS, [_log_row(r) for r in results])
    return 0


def _ts(entry: dict[str, Any]) -> float:
    return parse_ts(entry["sentAt"])


async def _since(args: argparse.Namespace, api: Api, since: float | None) -> list[dict[str, Any]]:
    """Every entry accepted at ``since`` or later (the last 48 h when None), newest first, paging back with
    ``sentUntil`` past the 1,000 an answer holds."""
    found: dict[str, dict[str, Any]] = {}
    until: str | None = None
    while True:
        extra: dict[str, Any] = {"limit": 1000}
        if since is not None:
            extra["sentSince"] = format_ts(since)
        if until is not None:
            extra["sentUntil"] = until
        page: list[dict[str, Any]] = (await api.call("GET", f"/omni/1/logs?{_query(args, **extra)}"))["results"]
        fresh = [e for e in page if e["messageId"] not in found]
        found.update((e["messageId"], e) for e in fresh)
        if len(page) < 1000 or not fresh:  # the last page, or more than 1,000 accepted in one millisecond
            return list(found.values())
        until = format_ts(_ts(page[-1]) + 0.001)  # inclusive, to the millisecond: the oldest again, deduplicated


async def _follow(args: argparse.Namespace, api: Api, ui: Ui) -> int:
    """``logs --follow``: the last ``--limit`` entries, then each message once as it is accepted, oldest first,
    until Ctrl-C (or the output is closed)."""
    first: list[dict[str, Any]] = (await api.call("GET", f"/omni/1/logs?{_query(args)}"))["results"]
    seen: dict[str, float] = {}  # message id -> accept time, of those that a poll may find again
    newest: float | None = None

    def show(entries: list[dict[str, Any]]) -> None:
        nonlocal newest
        for e in sorted(entries, key=_ts):
            if e["messageId"] in seen:
                continue
            at = _ts(e)
            seen[e["messageId"]] = at
            newest = at if newest is None else max(newest, at)
            if args.json:
                ui.out.print(json.dumps(e), soft_wrap=True)
            else:
                line = Text.assemble(
                    (e.get("sentAt") or "").ljust(28), (e["messageId"]).ljust(38), str(e.get("to", "")).ljust(16),
                    str(e.get("channel") or "").ljust(10), status_text(e["status"]),
                )
                ui.out.print(line, soft_wrap=True)

    show(first)
    ui.note("following new messages (Ctrl-C to stop)")
    while True:
        await asyncio.sleep(FOLLOW_POLL_S)
        since = None if newest is None else newest - FOLLOW_LOOKBACK_S
        show(await _since(args, api, since))
        if since is not None:  # forget what no later poll asks for again
            for message_id in [m for m, at in seen.items() if at < since]:
                del seen[message_id]


# --- scenarios ---------------------------------------------------------------------------------------------


def _flow(step: str) -> dict[str, str]:
    channel, _, sender = step.partition(":")
    return {"channel": channel.upper(), **({"from": sender} if sender else {})}


async def _scenarios(args: argparse.Namespace, api: Api, ui: Ui) -> int:
    if args.action == "list":
        found = (await api.call("GET", "/omni/1/scenarios"))["scenarios"]
    elif args.action == "show":
        found = [await api.call("GET", f"/omni/1/scenarios/{quote(args.scenario_key, safe='')}")]
    else:
        body = {"name": args.name, "flow": [_flow(s) for s in args.steps], "default": args.default}
        found = [await api.call("POST", "/omni/1/scenarios", body)]
    if args.json:
        _print_json(found if args.action == "list" else found[0])
        return 0
    rows = [
        (
            s["key"],
            s["name"],
            " -> ".join(f"{f['channel']}({f.get('from', '')})" for f in s["flow"]),
            "yes" if s["default"] else "",
        )
        for s in found
    ]
    ui.table(["key", "name", "flow", "default"], rows)
    return 0


COMMANDS = {"send": _send, "reports": _reports, "logs": _logs, "scenarios": _scenarios}


def add_commands(sub: Any) -> None:
    """Register the client commands on the ``omnirelay`` parser's subcommands."""
    send = sub.add_parser(
        "send",
        help="send a message (or a CSV of destinations) through a running gateway",
        description="Send one text to one or more numbers, or to every row of a CSV file "
        "(column 'to', optionally 'email'), over the scenario's channels. A CSV is read and checked whole "
        "before anything is sent, and sending the same file with the same text again sends nothing twice. "
        "With --wait, wait for the final outcomes, summarise them, and exit 1 unless every message was delivered.",
    )
    add_connection_arguments(send)
    send.add_argument("--to", action="append", default=[], help="a phone number (repeatable)")
    send.add_argument("--csv", metavar="FILE", help="a CSV file with a column 'to' (and optionally 'email')")
    send.add_argument(
        "--encoding",
        help="the CSV file's encoding, e.g. cp1252 (default: UTF-8, with or without Excel's byte order mark)",
    )
    send.add_argument("--text", required=True, help="the text")
    send.add_argument("--scenario", metavar="KEY", help="scenario key (default: the account's default scenario)")
    send.add_argument(
        "--channels",
        nargs="+",
        default=["sms", "whatsApp", "viber", "email"],
        help="the channel objects that carry the text (default: sms whatsApp viber email)",
    )
    send.add_argument(
        "--validity",
        type=duration,
        metavar="DURATION",
        help="how long each channel may try: 90s, 30m (a plain number is minutes), 2h, 1d (default 48 h)",
    )
    send.add_argument(
        "--bulk-id",
        dest="bulk_id",
        help="the bulk id (with --csv it also names the messages: give a new one to send the same file again)",
    )
    send.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait up to this long for the final outcomes; exit 1 unless every message was delivered",
    )

    reports = sub.add_parser("reports", help="take the final reports not taken yet (each is returned once)",
                             description="Take the final delivery reports not taken yet, oldest first. "
                             "Each report is returned once: what this prints, no other client gets.")
    add_connection_arguments(reports)
    reports.add_argument("--bulk-id", metavar="ID", help="only the reports of this bulk")
    reports.add_argument("--message-id", metavar="ID", help="only the report of this message")
    reports.add_argument("--channel", help="only reports of messages that ended on this channel, e.g. SMS")
    reports.add_argument("--limit", type=int, default=50, metavar="N",
                         help="at most this many reports (1-1000, default 50)")

    logs = sub.add_parser("logs", help="message history, newest first (does not take anything)",
                          description="Message history of the last 48 hours, newest first; it takes nothing.")
    add_connection_arguments(logs)
    logs.add_argument("--bulk-id", metavar="ID", help="only the messages of this bulk (comma-separated for several)")
    logs.add_argument("--message-id", metavar="ID", help="only these messages (comma-separated)")
    logs.add_argument("--channel", help="only messages whose current step is on this channel, e.g. SMS")
    logs.add_argument("--to", metavar="ADDRESS", help="only messages to this address")
    logs.add_argument("--status", type=str.upper, choices=GENERAL_STATUSES, help="only messages in this status group")
    logs.add_argument("--limit", type=int, default=50, metavar="N",
                      help="at most this many entries (1-1000, default 50)")
    logs.add_argument(
        "--follow", "-f", action="store_true",
        help="then print each new message as the gateway accepts it, until Ctrl-C (JSON: one object a line)",
    )

    scenarios = sub.add_parser("scenarios", help="list, show or create scenarios")
    actions = scenarios.add_subparsers(dest="action", required=True)
    add_connection_arguments(actions.add_parser("list", help="every scenario of the account"))
    show = actions.add_parser("show", help="one scenario")
    show.add_argument("scenario_key", metavar="SCENARIO_KEY", help="the scenario's key")
    add_connection_arguments(show)
    create = actions.add_parser("create", help="a new scenario, e.g. WHATSAPP:MySender SMS:InfoSMS")
    create.add_argument("steps", nargs="+", help="CHANNEL[:sender] in failover order")
    create.add_argument("--name", help="its name")
    create.add_argument("--default", action="store_true", help="make it the account's default")
    add_connection_arguments(create)


def run(args: argparse.Namespace) -> int:
    """Run one client command; a problem is one line on stderr and exit status 1, Ctrl-C status 130."""
    ui = Ui()
    if getattr(args, "deprecated_key", False):
        ui.err.print("omnirelay: --key is deprecated: use --api-key", style="yellow")

    async def go() -> int:
        base = _base_url(args.url)
        headers = {"Authorization": _auth(args)}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            return await COMMANDS[args.command](args, Api(session, base), ui)

    try:
        return asyncio.run(go())
    except (ClientError, csvfile.CsvError) as exc:
        lines = str(exc).splitlines()
        if ui.where:
            lines[-1] += f" ({ui.where})"
        for line in lines:
            ui.err.print(f"omnirelay {args.command}: {line}", style="red", soft_wrap=True)
        return 1
    except (KeyError, TypeError, AttributeError) as exc:  # an answer not shaped as the OMNI API's
        ui.err.print(f"omnirelay {args.command}: unexpected answer from the gateway ({type(exc).__name__}: {exc})",
                     style="red", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        if ui.where:
            ui.err.print(f"omnirelay {args.command}: interrupted: {ui.where}", style="yellow", soft_wrap=True)
        return 130
