"""Prism serving Meta's WhatsApp Cloud API document, and a recording proxy in front of it, for the WhatsApp tests.

Prism (``tests/integration/prism``, installed by ``scripts/install-test-peers``) validates every request against
Meta's OpenAPI document: a body that breaks the schema gets a 422 with the list of violations. For a valid
send it answers the document's example, whose wamid is the same for every message.

:class:`RecordingProxy` sits in front of Prism for tests that need more: every request still goes to Prism
(so it is still validated), and the proxy records it, gives each accepted send a wamid of its own (so
status webhooks can name one message), and can replace Prism's 200 by a Graph error the test queues
(Prism only knows the document's 200 answer).

Import the fixtures into a test module: ``from tests.prism import prism  # noqa: F401``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.integration.fakes.server import ThreadServer

PRISM_DIR = Path(__file__).parent / "integration" / "prism"
PRISM_BIN = PRISM_DIR / "node_modules" / ".bin" / "prism"
SPEC = PRISM_DIR / "whatsapp-business-messaging-api_v23.0.yaml"

#: Corrections applied to the served copy of Meta's document, each (wrong text, right text, occurrences).
#: The template button index pattern accepts one character of "2-6, 1-1, 4" and refuses "0", the first
#: button's index, while the document itself says "Position index of the button (0-9)".
SPEC_FIXES = [("pattern: ^[2-6, 11-14]$", "pattern: ^[0-9]$", 2)]

PHONE_NUMBER_ID = "106540352242922"
"""The phone-number id of the examples in Meta's document."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fixed_spec_text() -> str:
    """Meta's document with :data:`SPEC_FIXES` applied."""
    text = SPEC.read_text()
    for wrong, right, count in SPEC_FIXES:
        assert text.count(wrong) == count, f"{SPEC.name}: expected {count} x {wrong!r} (document changed?)"
        text = text.replace(wrong, right)
    return text


def served_spec(folder: Path) -> Path:
    """Meta's document with :data:`SPEC_FIXES` applied, written into ``folder``."""
    path = folder / SPEC.name
    path.write_text(fixed_spec_text())
    return path


@functools.cache
def _schemas() -> dict[str, Any]:
    import yaml  # comes with schemathesis

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas: dict[str, Any] = yaml.load(fixed_spec_text(), Loader=loader)["components"]["schemas"]
    return schemas


@functools.cache
def _validator(schema_name: str) -> Any:
    import jsonschema_rs  # comes with schemathesis

    schemas = _schemas()
    needed: dict[str, Any] = {}
    todo = [schema_name]
    while todo:  # the schema and what it refers to, not all of Meta's several thousand
        name = todo.pop()
        if name not in needed:
            needed[name] = schemas[name]
            todo += re.findall(r"#/components/schemas/([^\"']+)", json.dumps(schemas[name]))
    return jsonschema_rs.Draft202012Validator(
        {"components": {"schemas": needed}, "$ref": f"#/components/schemas/{schema_name}"}
    )


def template_component_errors(component: dict[str, Any]) -> list[str]:
    """What Meta's document says is wrong with one template component and its parameters.

    Prism does not follow the ``discriminator`` of ``TemplateComponent`` and ``ParameterObject``, so it checks
    template components only against their common base; this checks each against the schema its ``type``
    names (``HeaderComponent``, ``ImageParameter``, ``ButtonPayloadParameter``, ...).
    """
    kind = component.get("type")
    schema = {"header": "HeaderComponent", "body": "BodyComponent", "button": "ButtonComponent"}.get(str(kind))
    if schema is None:
        return [f"unknown component type {kind!r}"]
    errors = [str(e) for e in _validator(schema).iter_errors(component)]
    for parameter in component.get("parameters") or []:
        ptype = str(parameter.get("type"))
        if kind == "button":
            pschema = {"payload": "ButtonPayloadParameter", "text": "ButtonTextParameter"}.get(ptype)
        else:
            pschema = {
                "text": "TextParameter",
                "currency": "CurrencyParameter",
                "date_time": "DateTimeParameter",
                "document": "DocumentParameter",
                "image": "ImageParameter",
                "video": "VideoParameter",
            }.get(ptype)
        if pschema is None:
            errors.append(f"{kind} parameter type {ptype!r} is not in Meta's document")
        else:
            errors += [str(e) for e in _validator(pschema).iter_errors(parameter)]
    return errors


class Prism:
    """One ``prism mock`` process on 127.0.0.1."""

    def __init__(self, spec: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.lines: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def start(self, timeout: float = 60.0) -> Prism:
        if not PRISM_BIN.exists():
            pytest.fail(f"Prism is not installed ({PRISM_BIN} is missing): run scripts/install-test-peers",
                        pytrace=False)
        env = {**os.environ, "SCARF_ANALYTICS": "false", "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [str(PRISM_BIN), "mock", "-h", "127.0.0.1", "-p", str(self.port), str(self.spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PRISM_DIR,
            start_new_session=True,
        )
        proc = self.proc

        def read() -> None:  # keep draining: Prism logs every request
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                self.lines.append(raw.decode("utf-8", "replace"))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while "Prism is listening" not in self.output:
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Prism did not start:\n{self.output[-3000:]}", pytrace=False)
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


_started: Prism | None = None


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prism]:
    """Prism serving Meta's document, started once per test session; fails when Prism is not installed."""
    global _started
    if _started is None or _started.proc is None:
        _started = Prism(served_spec(tmp_path_factory.mktemp("prism"))).start()
    yield _started
    _started.stop()


# --- recording proxy -----------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request through the proxy and Prism's answer to it (before any rewriting)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    prism_status: int
    prism_body: bytes
    status: int
    """The status the proxy answered (Prism's, or a queued error's)."""
    wamid: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def graph_error(code: int, message: str = "", http_status: int = 400, details: str = "") -> tuple[int, bytes]:
    """A Graph API error answer as the Cloud API sends it (``GraphAPIError``)."""
    body = {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or message},
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }
    return http_status, json.dumps(body).encode()


def _recipient(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    to = data.get("to") if isinstance(data, dict) else None
    return to if isinstance(to, str) else None


class RecordingProxy(ThreadServer):
    """A reverse proxy to Prism on 127.0.0.1 in a thread of its own (usable from sync and async tests)."""

    _numbers = itertools.count(1)

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.exchanges: list[Exchange] = []
        self.errors: list[tuple[int, bytes]] = []
        """Answers to give instead of Prism's next 200s, in order (the body is still validated by Prism)."""
        self.held: dict[str, threading.Event] = {}
        """Recipients whose sends get no answer until their event is set."""
        self._session: aiohttp.ClientSession | None = None

    def routes(self, app: web.Application) -> None:
        async def session(_app: web.Application) -> Any:
            async with aiohttp.ClientSession() as self._session:
                yield

        app.cleanup_ctx.append(session)
        super().routes(app)

    def sends(self) -> list[Exchange]:
        """The ``/messages`` POSTs so far."""
        with self.lock:
            return [e for e in self.exchanges if e.method == "POST" and e.path.endswith("/messages")]

    def wait_sends(self, n: int, timeout: float = 10.0) -> list[Exchange]:
        """Wait until at least ``n`` sends went through; returns them all."""
        deadline = time.monotonic() + timeout
        while len(self.sends()) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.sends())} of {n} sends reached Prism within {timeout}s")
            time.sleep(0.02)
        return self.sends()

    def hold(self, to: str) -> threading.Event:
        """Hold the answer to each send to ``to`` (after Prism answered it) until the returned event is set."""
        with self.lock:
            event = self.held[to] = threading.Event()
        return event

    def fail_next(self, status: int, body: bytes) -> None:
        """Answer the next send Prism accepts with this error instead."""
        with self.lock:
            self.errors.append((status, body))

    async def handle(self, request: web.Request) -> web.Response:
        session = self._session
        assert session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            prism_body = await answer.read()
            prism_status = answer.status
            content_type = answer.headers.get("Content-Type", "application/json")
        with self.lock:
            held = self.held.get(_recipient(body)) if self.held else None
        while held is not None and not held.is_set():
            await asyncio.sleep(0.02)
        status, out, wamid = prism_status, prism_body, None
        with self.lock:
            if prism_status == 200 and request.path.endswith("/messages") and self.errors:
                status, out = self.errors.pop(0)
            elif prism_status == 200 and request.path.endswith("/messages"):
                data = json.loads(prism_body)
                wamid = f"wamid.test{next(self._numbers):08d}"
                data["messages"][0]["id"] = wamid
                out = json.dumps(data).encode()
            self.exchanges.append(
                Exchange(
                    request.method, request.path, dict(request.headers), body, prism_status, prism_body, status, wamid
                )
            )
        return web.Response(status=status, body=out, content_type=content_type.split(";")[0])
