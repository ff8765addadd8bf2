"""The client commands of ``omnirelay``: ``send``, ``reports``, ``logs`` and ``scenarios``, against a running gateway.

They speak the same OMNI API as any client (so they work against Infobip too), take the gateway from
``--url`` (or ``OMNIRELAY_URL``, default ``http://127.0.0.1:8080``) and the credentials from ``--key``
(``OMNIRELAY_KEY``) or ``--user`` and ``--password``, and print tables, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp

BATCH = 1000  # destinations per request when sending a CSV
RATE_LIMITED_TRIES = 10  # a request refused with 429 is asked again, after its Retry-After, up to this often


class ClientError(Exception):
    """The gateway refused a request or could not be reached; the message says why."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--key``, ``--user``, ``--password`` and ``--json``."""
    parser.add_argument(
        "--url",
        default=os.environ.get("OMNIRELAY_URL", "http://127.0.0.1:8080"),
        help="the gateway (also OMNIRELAY_URL; default http://127.0.0.1:8080)",
    )
    parser.add_argument("--key", default=os.environ.get("OMNIRELAY_KEY"), help="API key (also OMNIRELAY_KEY)")
    parser.add_argument("--user", help="username, with --password (instead of --key)")
    parser.add_argument("--password", help="password for --user")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _auth(args: argparse.Namespace) -> str:
    if args.key:
        return f"App {args.key}"
    if args.user and args.password is not None:
        return "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
    raise ClientError("give --key (or OMNIRELAY_KEY), or --user and --password")


async def _call(session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
    try:
        for attempt in range(RATE_LIMITED_TRIES):
            async with session.request(method, path, json=body) as response:
                status, wait = response.status, response.headers.get("Retry-After", "1")
                data = await response.json(content_type=None)
            if status != 429 or attempt == RATE_LIMITED_TRIES - 1:
                break
            # a 429 did nothing: ask again once its Retry-After has passed
            await asyncio.sleep(min(60.0, float(wait) if wait.isdigit() else 1.0))
    except aiohttp.ClientError as exc:
        raise ClientError(f"cannot reach the gateway: {exc}") from None
    if status >= 400:
        problem = (data or {}).get("requestError", {}).get("serviceException", {})
        detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in (problem.get("validationErrors") or {}).items())
        raise ClientError(f"{status} {problem.get('text', 'error')}" + (f" ({detail})" if detail else ""))
    return data


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Rows as an aligned text table."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _destinations(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.csv:
        with open(args.csv, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            column = next((c for c in (reader.fieldnames or []) if c.lower() in ("to", "phonenumber", "phone")), None)
            if column is None:
                raise ClientError(f"{args.csv}: needs a column 'to' (or 'phoneNumber') with the numbers")
            email = next((c for c in (reader.fieldnames or []) if c.lower() in ("email", "emailaddress")), None)
            return [
                {"to": {"phoneNumber": row[column].strip(), **({"emailAddress": row[email]} if email else {})}}
                for row in reader
                if row[column].strip()
            ]
    return [{"to": {"phoneNumber": number}} for number in args.to]


async def _send(args: argparse.Namespace, session: aiohttp.ClientSession) -> int:
    destinations = _destinations(args)
    if not destinations:
        raise ClientError("no destinations: give --to NUMBER (repeatable) or --csv FILE")
    content = {"text": args.text}
    base: dict[str, Any] = {name: dict(content) for name in args.channels}
    if args.scenario:
        base["scenarioKey"] = args.scenario
    sent: list[dict[str, Any]] = []
    lookups: list[str] = []  # a logs query per request: its bulk id, or its one message id
    for start in range(0, len(destinations), BATCH):
        batch = destinations[start : start + BATCH]
        answer = await _call(session, "POST", "/omni/1/advanced", {**base, "destinations": batch})
        sent.extend(answer["messages"])
        bulk = answer.get("bulkId")
        lookups.append(f"bulkId={bulk}" if bulk else f"messageId={answer['messages'][0]['messageId']}")
        if args.csv and not args.json:
            done = min(start + BATCH, len(destinations))
            bar = "#" * (30 * done // len(destinations))
            print(f"\rsending [{bar:<30}] {done}/{len(destinations)}", end="", file=sys.stderr, flush=True)
    if args.csv and not args.json:
        print(file=sys.stderr)
    outcomes: dict[str, dict[str, Any]] = {}
    if args.wait:  # from the logs, which (unlike reports) leave the reports for your own systems to take
        ids = {m["messageId"] for m in sent}
        deadline = time.monotonic() + args.wait
        while ids - set(outcomes) and time.monotonic() < deadline:
            for lookup in lookups:
                for entry in (await _call(session, "GET", f"/omni/1/logs?limit=1000&{lookup}"))["results"]:
                    if entry["status"]["groupName"] != "PENDING":
                        outcomes[entry["messageId"]] = entry
            await asyncio.sleep(0.2)
    if args.json:
        print(json.dumps({"messages": sent, "outcomes": list(outcomes.values())}, indent=2))
        return 0
    if len(sent) <= 20:
        rows = [
            (
                m["to"].get("phoneNumber"),
                m["messageId"],
                m["status"]["name"],
                outcomes.get(m["messageId"], {}).get("channel"),
                outcomes.get(m["messageId"], {}).get("status", {}).get("name"),
            )
            for m in sent
        ]
        print(table(rows, ["to", "messageId", "accepted", "channel", "outcome"]))
    summary = Counter((r["channel"], r["status"]["name"]) for r in outcomes.values())
    refused = sum(1 for m in sent if m["status"]["groupName"] == "REJECTED")
    print(
        f"\n{len(sent) - refused} accepted"
        + (f", {refused} rejected" if refused else "")
        + (f", {len(outcomes)} finished" if args.wait else "")
    )
    if summary:
        print(table([(c, s, n) for (c, s), n in sorted(summary.items())], ["channel", "outcome", "messages"]))
    return 1 if sent and refused == len(sent) else 0


#: Query parameters of the listing commands, by the argument that gives each.
_FILTERS = {
    "limit": "limit",
    "bulk_id": "bulkId",
    "message_id": "messageId",
    "channel": "channel",
    "to": "to",
    "status": "generalStatus",
}


async def _results(args: argparse.Namespace, session: aiohttp.ClientSession, path: str) -> list[dict[str, Any]]:
    """``results`` of a listing endpoint, filtered by whichever of the command's filter arguments were given."""
    given = {param: getattr(args, name, None) for name, param in _FILTERS.items()}
    query = urlencode({param: value for param, value in given.items() if value})
    results: list[dict[str, Any]] = (await _call(session, "GET", f"{path}?{query}"))["results"]
    if args.json:
        print(json.dumps(results, indent=2))
    return results


async def _reports(args: argparse.Namespace, session: aiohttp.ClientSession) -> int:
    results = await _results(args, session, "/omni/1/reports")
    if not args.json:
        rows = [
            (r["messageId"], r["to"], r["channel"], r["status"]["name"], r["error"]["name"], r.get("doneAt"))
            for r in results
        ]
        print(table(rows, ["messageId", "to", "channel", "status", "error", "doneAt"]))
        print(f"\n{len(results)} report(s), now taken (each report is returned once)")
    return 0


async def _logs(args: argparse.Namespace, session: aiohttp.ClientSession) -> int:
    results = await _results(args, session, "/omni/1/logs")
    if not args.json:
        rows = [
            (r["messageId"], r["to"], r.get("channel"), r["status"]["name"], r.get("sentAt"), r.get("doneAt"))
            for r in results
        ]
        print(table(rows, ["messageId", "to", "channel", "status", "sentAt", "doneAt"]))
    return 0


def _flow(step: str) -> dict[str, str]:
    channel, _, sender = step.partition(":")
    return {"channel": channel.upper(), **({"from": sender} if sender else {})}


async def _scenarios(args: argparse.Namespace, session: aiohttp.ClientSession) -> int:
    if args.action == "list":
        found = (await _call(session, "GET", "/omni/1/scenarios"))["scenarios"]
    elif args.action == "show":
        found = [await _call(session, "GET", f"/omni/1/scenarios/{args.scenario_key}")]
    else:
        body = {"name": args.name, "flow": [_flow(s) for s in args.steps], "default": args.default}
        found = [await _call(session, "POST", "/omni/1/scenarios", body)]
    if args.json:
        print(json.dumps(found if args.action == "list" else found[0], indent=2))
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
    print(table(rows, ["key", "name", "flow", "default"]))
    return 0


COMMANDS = {"send": _send, "reports": _reports, "logs": _logs, "scenarios": _scenarios}


def add_commands(sub: Any) -> None:
    """Register the client commands on the ``omnirelay`` parser's subcommands."""
    send = sub.add_parser(
        "send",
        help="send a message (or a CSV of destinations) through a running gateway",
        description="Send one text to one or more numbers, or to every row of a CSV file "
        "(column 'to'), over the scenario's channels; with --wait, wait for the final "
        "reports and print a summary by channel and outcome.",
    )
    add_connection_arguments(send)
    send.add_argument("--to", action="append", default=[], help="a phone number (repeatable)")
    send.add_argument("--csv", help="a CSV file with a column 'to' (and optionally 'email')")
    send.add_argument("--text", required=True, help="the text")
    send.add_argument("--scenario", help="scenario key (default: the account's default scenario)")
    send.add_argument(
        "--channels",
        nargs="+",
        default=["sms", "whatsApp", "viber", "email"],
        help="the channel objects that carry the text (default: sms whatsApp viber email)",
    )
    send.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait up to this long for the final reports and summarise them",
    )

    reports = sub.add_parser("reports", help="take the final reports not taken yet (each is returned once)")
    add_connection_arguments(reports)
    for name in ("bulk-id", "message-id", "channel"):
        reports.add_argument(f"--{name}")
    reports.add_argument("--limit", type=int, default=50)

    logs = sub.add_parser("logs", help="message history, newest first (does not take anything)")
    add_connection_arguments(logs)
    for name in ("bulk-id", "message-id", "channel", "to", "status"):
        logs.add_argument(f"--{name}")
    logs.add_argument("--limit", type=int, default=50)

    scenarios = sub.add_parser("scenarios", help="list, show or create scenarios")
    actions = scenarios.add_subparsers(dest="action", required=True)
    add_connection_arguments(actions.add_parser("list", help="every scenario of the account"))
    show = actions.add_parser("show", help="one scenario")
    show.add_argument("scenario_key", metavar="KEY", help="the scenario's key")
    add_connection_arguments(show)
    create = actions.add_parser("create", help="a new scenario, e.g. WHATSAPP:MySender SMS:InfoSMS")
    create.add_argument("steps", nargs="+", help="CHANNEL[:sender] in failover order")
    create.add_argument("--name", help="its name")
    create.add_argument("--default", action="store_true", help="make it the account's default")
    add_connection_arguments(create)


def run(args: argparse.Namespace) -> int:
    """Run one client command; errors are printed, with exit code 1."""

    async def go() -> int:
        headers = {"Authorization": _auth(args)}
        async with aiohttp.ClientSession(base_url=args.url, headers=headers) as session:
            return await COMMANDS[args.command](args, session)

    try:
        return asyncio.run(go())
    except ClientError as exc:
        print(f"omnirelay {args.command}: {exc}", file=sys.stderr)
        return 1
