"""A large store filled directly (not through the API) with the rows one account's finished messages leave, as the
gateway writes them: ``messages`` messages in 1,000-destination requests (a bulk id each) spread over the last
``hours``. Most are German numbers (MCC 262) sent from ``WhatsAppSender`` and delivered on WhatsApp; one in ten
failed over to SMS (``InfoSMS``), one in fifty is undeliverable. The oldest :data:`RARE` are different: Swiss
numbers under a configured prefix (MCC 228, MNC 01) sent from ``RareSender``; a filter for them must read past
every newer message. For ``bench/logs.py``, ``bench/console_search.py`` and ``bench/console_overview.py``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PER_REQUEST = 1000
RARE = 100
HOURS = 47.0
COLUMNS = (
    "id, account_id, message_id, request_id, bulk_id, to_json, content_hash, created_at, state, address,"
    " status_group, channel, done_at, sender, mcc, mnc"
)


def payload(whatsapp_sender: str, validity_s: float, text: str) -> bytes:
    """A stored request: WhatsApp from ``whatsapp_sender``, then SMS from ``InfoSMS``, both with ``text``."""
    return json.dumps(
        {
            "steps": [
                {"channel": "WHATSAPP", "sender": whatsapp_sender, "validity_s": validity_s},
                {"channel": "SMS", "sender": "InfoSMS", "validity_s": validity_s},
            ],
            "content": {"whatsApp": {"text": text}, "sms": {"text": text}},
            "options": {},
        },
        separators=(",", ":"),
    ).encode()


PAYLOAD = payload("WhatsAppSender", 172800.0, "Your parcel is on its way")
RARE_PAYLOAD = payload("RareSender", 172800.0, "Your parcel is on its way")


def _state(channel: str, step: int, status: str, at: float) -> bytes:
    return json.dumps(
        {
            "phase": "DONE",
            "step": step,
            "attempts": [{"step": step, "channel": channel, "state": "DELIVERED", "started_at": at, "done_at": at + 1}],
            "history": [{"at": at, "text": "accepted"}],
            "status": status,
            "channel": channel,
            "sent_at": at,
            "done_at": at + 1,
        },
        separators=(",", ":"),
    ).encode()


def rows(messages: int, now: float, hours: float = HOURS) -> Iterator[tuple[Any, ...]]:
    """The ``messages`` rows over the ``hours`` before ``now``, oldest first (column order of ``COLUMNS``)."""
    start = now - hours * 3600
    step = hours * 3600 / messages
    for i in range(messages):
        at = start + i * step
        rare = i < RARE
        phone = f"4179{i:07d}" if rare else f"49170{i:07d}"
        if i % 10 == 9:
            channel, index, sender, status, group = "SMS", 1, "InfoSMS", "DELIVERED_TO_HANDSET", 3
        elif i % 50 == 25:
            channel, index, sender, status, group = "WHATSAPP", 0, "WhatsAppSender", "UNDELIVERABLE_NOT_DELIVERED", 2
        else:
            channel, index, sender, status, group = "WHATSAPP", 0, "WhatsAppSender", "DELIVERED_TO_HANDSET", 3
        if rare and channel == "WHATSAPP":
            sender = "RareSender"
        request = i // PER_REQUEST + 1
        yield (
            i + 1,
            1,
            f"m{i:07d}",
            request,
            f"bulk-{request:04d}",
            f'{{"phoneNumber":"{phone}"}}'.encode(),
            b"",
            at,
            _state(channel, index, status, at),
            phone,
            group,
            channel,
            at + 1,
            sender,
            "228" if rare else "262",
            "01" if rare else None,
        )


def fill_sqlite(path: Path, messages: int, made: Iterable[tuple[Any, ...]]) -> None:
    """Store the ``messages`` rows ``made`` (:func:`rows`, or rows derived from them) and their requests in the
    migrated SQLite file ``path``."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(
        "INSERT INTO accounts(id, username, webhook_secret, source, created_at) VALUES (1, 'bench', 's', 'config', 0)"
    )
    requests = (messages + PER_REQUEST - 1) // PER_REQUEST
    conn.executemany(
        "INSERT INTO requests(id, account_id, payload) VALUES (?, 1, ?)",
        [(r, RARE_PAYLOAD if r == 1 else PAYLOAD) for r in range(1, requests + 1)],
    )
    conn.executemany(f"INSERT INTO messages({COLUMNS}) VALUES ({','.join('?' * 16)})", made)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


async def fill_postgres(url: str, messages: int, made: Iterable[tuple[Any, ...]]) -> None:
    """:func:`fill_sqlite` on the migrated PostgreSQL database ``url``."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO accounts(id, username, webhook_secret, source, created_at)"
            " VALUES (1, 'bench', 's', 'config', 0)"
        )
        requests = (messages + PER_REQUEST - 1) // PER_REQUEST
        await conn.copy_records_to_table(
            "requests", records=[(r, 1, RARE_PAYLOAD if r == 1 else PAYLOAD) for r in range(1, requests + 1)]
        )
        await conn.copy_records_to_table(
            "messages", records=made, columns=[c.strip() for c in COLUMNS.split(",")]
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def fill(url: str | None, data_dir: Path, messages: int, made: Iterable[tuple[Any, ...]]) -> float:
    """Fill the PostgreSQL database ``url``, else the SQLite file in ``data_dir``, with ``made``; the seconds it
    took (also printed)."""
    t0 = time.monotonic()
    if url:
        asyncio.run(fill_postgres(url, messages, made))
    else:
        fill_sqlite(data_dir / "omnirelay.db", messages, made)
    seconds = time.monotonic() - t0
    print(f"filled {messages:,} messages in {seconds:.0f} s", file=sys.stderr, flush=True)
    return seconds
