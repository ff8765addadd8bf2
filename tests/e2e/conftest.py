"""End-to-end fixtures: a real ``omnirelay serve`` process, started the way the README tells a user to.

:class:`Gateway` owns one server: a temp folder holding its config file (TOML text you pass in) and its
data dir, a free port, and the process. It is generic on purpose, so engine/report tests can reuse it::

    def test_something(make_gateway):
        gw = make_gateway(ALADDIN_CONFIG + '''
    [limits]
    min_validity_seconds = 1

    [[sandbox.rules]]
    outcome = "REJECTED"
    channel = "WHATSAPP"
    ''')
        r = gw.post("/omni/1/scenarios", {...})
        gw.kill9(); gw.start()

HTTP helpers use only the standard library (``http.client``) so a test can send exactly the bytes it
wants (malformed headers, raw JSON text); :meth:`Gateway.session` gives an ``aiohttp.ClientSession`` for
concurrent traffic.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.pg import create_database_sync, drop_database_sync, fetch_sync

STORE = os.environ.get("OMNIRELAY_TEST_STORE", "sqlite")

# --- credentials used by the default config ---------------------------------------------------------

ALADDIN_BASIC = "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="  # Aladdin:open sesame, verbatim from the tutorial
ALADDIN_KEY = "a1addin0" * 8
BOB_KEY = "b0b0b0b0" * 8
NODEFAULT_KEY = "cafecafe" * 8

ACCOUNTS_CONFIG = f"""
[[accounts]]
username = "Aladdin"
password = "open sesame"
api_keys = ["{ALADDIN_KEY}"]

[[accounts]]
username = "bob"
password = "bob's password"
api_keys = ["{BOB_KEY}"]

# an account that never gets a default scenario
[[accounts]]
username = "nodefault"
api_keys = ["{NODEFAULT_KEY}"]
"""
#: The default config of the tests: the accounts, without Infobip's low limits on creating and changing scenarios
#: and reading the logs, which test traffic passes (test_rate_limits.py tests them, on ACCOUNTS_CONFIG).
ALADDIN_CONFIG = ACCOUNTS_CONFIG + """
[rate_limits]
"POST /omni/1/scenarios" = "off"
"PUT /omni/1/scenarios/{key}" = "off"
"GET /omni/1/logs" = "off"
"""


def app_auth(key: str) -> str:
    """``Authorization`` value for an API key."""
    return f"App {key}"


def basic_auth(username: str, password: str) -> str:
    """``Authorization`` value for Basic credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


UNAUTHORIZED = {"requestError": {"serviceException": {"messageId": "UNAUTHORIZED", "text": "Unauthorized"}}}

WHATSAPP_SMS_FLOW = [{"from": "WhatsAppSender", "channel": "WHATSAPP"}, {"from": "InfoSMS", "channel": "SMS"}]


# --- helpers ----------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def omnirelay_command() -> list[str]:
    """The installed ``omnirelay`` console script (the one beside this interpreter first)."""
    beside = Path(sys.executable).parent / "omnirelay"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("omnirelay")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from omnirelay.cli import main; sys.exit(main())"]


@dataclass
class Response:
    """One HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def error(self) -> dict[str, Any]:
        """The ``serviceException`` of an error envelope (asserts the envelope's shape)."""
        data = self.json
        assert set(data) == {"requestError"}, data
        assert set(data["requestError"]) == {"serviceException"}, data
        exc: dict[str, Any] = data["requestError"]["serviceException"]
        assert isinstance(exc.get("messageId"), str) and isinstance(exc.get("text"), str), data
        return exc

    def validation(self) -> dict[str, list[str]]:
        """The ``validationErrors`` of a 400 envelope."""
        errors: dict[str, list[str]] = self.error().get("validationErrors") or {}
        return errors

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"<Response {self.status} {self.text[:600]!r}>"


_DEFAULT = object()


class _PortTaken(Exception):
    """The server could not bind its port."""


class Gateway:
    """One ``omnirelay serve`` process with its own config file, data dir and port."""

    def __init__(self, root: Path, config: str | None = ALADDIN_CONFIG, *, port: int | None = None,
                 default_auth: str | None = app_auth(ALADDIN_KEY), extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = root / "data"
        self.config_path: Path | None = None
        if config is not None:
            self.set_config(config)
        self.host = host
        self._port_chosen = port is None
        self.port = port or free_port()
        self.default_auth = default_auth
        self.extra_args = extra_args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._lines: list[str] = []  # output of the current (or last) process
        self.outputs: list[str] = []  # output of each finished process, in order
        self._reader: threading.Thread | None = None
        # OMNIRELAY_TEST_STORE=postgres runs the suite on a fresh PostgreSQL database per gateway
        self.database: str | None = create_database_sync() if STORE == "postgres" else None

    # --- configuration and paths -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "omnirelay.db"

    def set_config(self, text: str) -> None:
        """(Re)write the TOML config; takes effect at the next start."""
        self.config_path = self.root / "omnirelay.toml"
        self.config_path.write_text(text)

    def _location_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        if self.database is not None:
            args += ["--database", self.database]
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        return args

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of one query on this gateway's database (``?`` placeholders), whichever store it runs on."""
        if self.database is not None:
            return fetch_sync(self.database, sql, *args)
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(r) for r in conn.execute(sql, args).fetchall()]
        finally:
            conn.close()

    def drop_database(self) -> None:
        """Drop this gateway's PostgreSQL database, if it has one."""
        if self.database is not None:
            drop_database_sync(self.database)
            self.database = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        return env

    # --- process control ---------------------------------------------------------------------------

    @property
    def output(self) -> str:
        """Everything the current (or last) process printed, stdout and stderr together."""
        return "".join(self._lines)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> Gateway:
        """Start the server and wait until it says it listens and ``/health`` answers 200.

        If the port was taken meanwhile (other test runs share the machine), a first start moves to a
        new free port; a restart, which must keep its port, tries the same one again for a few seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._start_once(deadline)
            except _PortTaken:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"port {self.port} stayed in use:\n{self.outputs[-1]}") from None
                if self._port_chosen and self.starts == 1:
                    self.port = free_port()
                    self.starts = 0
                else:
                    time.sleep(0.2)

    def _start_once(self, deadline: float) -> Gateway:
        assert not self.running, "already running"
        self._lines = []
        cmd = [*omnirelay_command(), "serve", *self._location_args(), "--host", self.host,
               "--port", str(self.port), *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env(),
                                     cwd=self.root, start_new_session=True)
        self.starts += 1
        proc, lines = self.proc, self._lines

        def read() -> None:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                lines.append(raw.decode("utf-8", "replace"))

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        while "omnirelay listening on" not in self.output:
            if proc.poll() is not None:
                self._finish()
                if "address already in use" in self.outputs[-1].lower():
                    raise _PortTaken
                raise RuntimeError(f"omnirelay serve exited with {proc.returncode}:\n{self.outputs[-1]}")
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"omnirelay serve did not announce itself in time:\n{self.outputs[-1]}")
            time.sleep(0.02)
        while True:
            try:
                if self.request("GET", "/health", auth=None, timeout=2).status == 200:
                    return self
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                self.kill9()
                if "address already in use" in self.outputs[-1].lower():  # announced, then could not bind
                    raise _PortTaken
                raise RuntimeError(f"/health never answered 200:\n{self.outputs[-1]}")
            time.sleep(0.05)

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.outputs.append(self.output)
        self.proc = None

    def kill9(self) -> None:
        """SIGKILL the server: no cleanup of any kind runs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._finish()

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop the server gracefully (SIGTERM, as a service manager would); returns its exit code."""
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        code = proc.returncode
        self._finish()
        return code

    def restart(self, *, kill: bool = False, timeout: float = 30.0) -> Gateway:
        """Stop (or kill -9 with ``kill=True``) and start again on the same port, config and data dir."""
        if kill:
            self.kill9()
        else:
            self.stop()
        return self.start(timeout=timeout)

    def cli(self, *args: str, check: bool = True, timeout: float = 60.0,
            locate: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``omnirelay <args> --config … --data-dir …`` against this gateway's files (``locate=False``:
        without those two flags, for commands that take none)."""
        where = self._location_args() if locate else []
        done = subprocess.run([*omnirelay_command(), *args, *where], capture_output=True,
                              text=True, env=self._env(), cwd=self.root, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"omnirelay {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    # --- HTTP --------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, auth: Any = _DEFAULT,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> Response:
        """One request. ``body``: bytes/str sent as is, anything else as JSON. ``auth``: an
        ``Authorization`` value, None for no header, default :attr:`default_auth`."""
        sent = dict(headers or {})
        if auth is _DEFAULT:
            auth = self.default_auth
        if auth is not None:
            sent["Authorization"] = auth
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def raw(self, request: bytes, timeout: float = 30.0) -> Response:
        """Send exactly these bytes on a fresh connection and parse the one answer."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(request)
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)

    def session(self, auth: Any = _DEFAULT) -> Any:
        """An ``aiohttp.ClientSession`` on this gateway (relative URLs), with the default auth header."""
        import aiohttp

        if auth is _DEFAULT:
            auth = self.default_auth
        headers = {"Authorization": auth} if auth is not None else {}
        return aiohttp.ClientSession(base_url=self.url, headers=headers,
                                     connector=aiohttp.TCPConnector(limit=100))

    # --- shortcuts ---------------------------------------------------------------------------------

    def create_scenario(self, flow: list[dict[str, Any]] | None = None, *, default: bool | None = None,
                        name: str | None = None, auth: Any = _DEFAULT) -> dict[str, Any]:
        """Create a scenario (asserting 200) and return it."""
        body: dict[str, Any] = {"flow": flow if flow is not None else WHATSAPP_SMS_FLOW}
        if name is not None:
            body["name"] = name
        if default is not None:
            body["default"] = default
        r = self.post("/omni/1/scenarios", body, auth=auth)
        assert r.status == 200, r
        created: dict[str, Any] = r.json
        return created


class GatewayPool:
    """Creates gateways under one temp root and stops whatever is still running at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gateways: list[Gateway] = []

    def __call__(self, config: str | None = ALADDIN_CONFIG, *, start: bool = True, **kw: Any) -> Gateway:
        gw = Gateway(self.root / f"gw{len(self.gateways)}", config, **kw)
        self.gateways.append(gw)
        if start:
            gw.start()
        return gw

    def close(self) -> None:
        for gw in self.gateways:
            try:
                gw.stop(timeout=5)
            except Exception:
                gw.kill9()
            gw.drop_database()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Factory of gateways for one test: ``make_gateway(config_toml, start=True, **Gateway kwargs)``."""
    pool = GatewayPool(tmp_path)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def module_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayPool]:
    """Factory of gateways shared by one test module."""
    pool = GatewayPool(tmp_path_factory.mktemp("gateways"))
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def gateway(module_gateways: GatewayPool) -> Gateway:
    """A running gateway with the default config (accounts Aladdin, bob, nodefault), shared by a module.

    Tests using it must not depend on each other's data: create your own scenarios, use fresh messageIds.
    """
    return module_gateways()
