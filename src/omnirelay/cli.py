"""The ``omnirelay`` command: run the gateway (whole, or as API and worker processes), manage accounts and API
keys, migrate the database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import IO

from aiohttp import web

from omnirelay import client, config
from omnirelay.accounts import AccountError, add_account, create_key, first_start, sync_config_accounts
from omnirelay.app import (
    CANNOT_SERVE,
    Gateway,
    StartupError,
    describe_database,
    is_postgres,
    open_store,
    open_store_to_serve,
)
from omnirelay.app import runner as http_runner
from omnirelay.domain.credentials import hash_password
from omnirelay.store import postgres
from omnirelay.store.base import SchemaError, Store
from omnirelay.store.errors import OutageLines
from omnirelay.store.sqlite import RoleTaken, SqliteStore, hold_role
from omnirelay.supervisor import ChildPlan, Supervisor, die_with_parent, report

log = logging.getLogger("omnirelay")
ROLE_WAIT_SECONDS = 10.0
"""How long ``serve`` waits for the file's roles, held by processes still ending (a supervisor's children)."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (also OMNIRELAY_CONFIG)")
    parser.add_argument(
        "--data-dir",
        dest="data_dir",
        help="folder of the embedded database (also OMNIRELAY_DATA_DIR; default ./omnirelay-data)",
    )
    parser.add_argument(
        "--database",
        help="a SQLite path, sqlite:///path or postgresql://user@host/db (also OMNIRELAY_DATABASE)",
    )


def _logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        dest="log_format",
        choices=["text", "json"],
        help="text (default) or one JSON object a line (also OMNIRELAY_LOG_FORMAT)",
    )


def _listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnirelay", description="Omnichannel messaging gateway (Infobip OMNI API)")
    parser.add_argument("--version", action="version", version=f"omnirelay {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway: HTTP API, engine and webhooks")
    _common(serve)
    _listen(serve)
    _logs(serve)
    serve.add_argument(
        "--single-process",
        dest="single_process",
        action="store_true",
        default=None,
        help="on SQLite, run the API and the engine in one process, not two (also OMNIRELAY_SINGLE_PROCESS=1)",
    )

    api = sub.add_parser("api", help="run the HTTP API only, beside `omnirelay worker` (several on PostgreSQL)")
    _common(api)
    _listen(api)
    _logs(api)
    api.add_argument("--processes", type=int, default=1, help="API processes sharing the port (SO_REUSEPORT)")

    worker = sub.add_parser("worker", help="run the engine and webhook delivery only, beside `omnirelay api`")
    _common(worker)
    _logs(worker)
    worker.add_argument("--host", help="address of the operations port (default 127.0.0.1)")
    worker.add_argument("--port", type=int, help="serve /healthz, /readyz and /metrics on this port")

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    _common(migrate)

    accounts = sub.add_parser("accounts", help="manage accounts")
    acc = accounts.add_subparsers(dest="action", required=True)
    add = acc.add_parser("add", help="create an account (prints its password, and an API key with --key)")
    add.add_argument("username")
    add.add_argument("--password", help="the password (default: a generated one, printed once)")
    add.add_argument("--key", action="store_true", help="also create an API key")
    _common(add)
    lst = acc.add_parser("list", help="list accounts")
    _common(lst)
    rm = acc.add_parser("remove", help="remove an account with everything it owns")
    rm.add_argument("username")
    _common(rm)
    hp = acc.add_parser("hash-password", help="print the password_hash for a config file's [[accounts]]")
    hp.add_argument("password")

    keys = sub.add_parser("keys", help="manage API keys")
    ks = keys.add_subparsers(dest="action", required=True)
    kc = ks.add_parser("create", help="create an API key for an account (printed once)")
    kc.add_argument("username")
    _common(kc)
    kr = ks.add_parser("revoke", help="revoke an API key by its id")
    kr.add_argument("key_id")
    _common(kr)
    kl = ks.add_parser("list", help="list API keys (ids only)")
    _common(kl)
    client.add_commands(sub)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("omnirelay")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _settings(args: argparse.Namespace) -> config.Settings:
    names = ("host", "port", "data_dir", "database", "log_format", "single_process")
    overrides = {k: getattr(args, k, None) for k in names}
    return config.load(args.config, overrides)


def _with_store(settings: config.Settings, work: Callable[[Store], Awaitable[int]]) -> int:
    """Run an account or key command on the server's database. It changes only what the command says: the
    config file's accounts are the server's to make exist (at its start), so no ``--config`` given here (or a
    different one) can take anyone's credentials away."""
    if not is_postgres(settings):
        path = settings.sqlite_path()
        if not path.exists():
            raise config.ConfigError(
                f"no database at {path}: give the server's --data-dir or --database (or run `omnirelay migrate`)"
            )

    async def run() -> int:
        store = await open_store(settings)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup(settings: config.Settings) -> None:
    _logging(settings)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    # The collector's default (a young collection every 700 allocations, the old ones often) put p99 accept
    # latency at 15-52 ms at half load; at these thresholds it measured 8-13 ms (BENCHMARKS.md).
    gc.set_threshold(50_000, 20, 100)


def _logging(settings: config.Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(OutageLines())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])


async def _prepare(settings: config.Settings, store: Store) -> None:
    """Make the configured accounts exist; on a store without accounts, create one and show it once."""
    await sync_config_accounts(store, settings.accounts)
    created = await first_start(store)
    if created is not None:
        print("No account existed, so one was created. Its credentials are shown only this once:")
        print(f"  username: {created.username}")
        print(f"  password: {created.password}")
        print(f"  API key:  {created.api_key}   (send as 'Authorization: App <key>')")


def _hold_roles(settings: config.Settings, *roles: str, wait: float = 0.0) -> list[IO[bytes]]:
    """On SQLite, claim this process's roles on the file (one API process, one engine); PostgreSQL needs none.
    A role taken is waited for up to ``wait`` seconds."""
    if is_postgres(settings):
        return []
    held: list[IO[bytes]] = []
    deadline = time.monotonic() + wait
    try:
        for role in roles:
            while True:
                try:
                    held.append(hold_role(settings.sqlite_path(), role))
                    break
                except RoleTaken:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
    except OSError as exc:  # a read-only or full data dir, or one that is not ours
        for handle in held:
            handle.close()
        folder = settings.sqlite_path().parent
        raise StartupError(f"cannot use the data dir {folder}: {exc.strerror} ({exc.filename or folder})") from None
    except BaseException:
        for handle in held:
            handle.close()
        raise
    return held


def _run_http(
    settings: config.Settings,
    worker: bool,
    reuse_port: bool = False,
    child: ChildPlan | None = None,
    role_wait: float = 0.0,
) -> int:
    """Serve HTTP (and, with ``worker``, run the engine and notifier) until SIGTERM or SIGINT (a ``child`` of
    ``serve``'s supervisor: SIGTERM only; its supervisor holds its role and announces it)."""
    _setup(settings)
    role = "API, engine and webhooks" if worker else "API"
    if child is not None:
        held: list[IO[bytes]] = []
    else:
        held = _hold_roles(settings, *(("api", "engine") if worker else ("api",)), wait=role_wait)

    async def run() -> int:
        store = await open_store_to_serve(settings, shared=not worker)
        try:
            await _prepare(settings, store)
        except BaseException as exc:
            await store.close()
            if isinstance(exc, CANNOT_SERVE):
                raise StartupError(f"cannot start on {describe_database(settings)}: {exc}") from None
            raise
        gateway = Gateway(settings, store, api=True, worker=worker)
        if child is not None:
            gateway.peer_metrics = child.metrics_url
        runner = http_runner(settings, gateway.web_app())
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
            try:
                await site.start()
            except OSError as exc:
                raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
            if child is None:
                print(_listening(settings, role), flush=True)
            else:
                report(child, "ready")
            log.info("listening on http://%s:%s (%s)", settings.host, settings.port, role)
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in _stop_signals(child):
                loop.add_signal_handler(signum, stopping.set)
            await stopping.wait()
            log.info("stopping")
            return 0
        finally:
            await runner.cleanup()

    try:
        return asyncio.run(run())
    finally:
        for handle in held:
            handle.close()


def _listening(settings: config.Settings, role: str) -> str:
    """The line that says the gateway serves (scripts and operators wait for it)."""
    where = f"http://{settings.host}:{settings.port}"
    return f"omnirelay listening on {where} ({role}; database {describe_database(settings)})"


def _stop_signals(child: ChildPlan | None) -> tuple[signal.Signals, ...]:
    """SIGTERM and SIGINT; a supervised child only SIGTERM (Ctrl-C reaches the whole process group, and the
    supervisor stops its children in order)."""
    return (signal.SIGTERM,) if child is not None else (signal.SIGTERM, signal.SIGINT)


def _serve(settings: config.Settings) -> int:
    """``omnirelay serve``: on SQLite the API and the engine as two supervised processes on the file (two cores),
    unless ``single_process``; on PostgreSQL one process."""
    if settings.single_process or is_postgres(settings):
        return _run_http(settings, worker=True, role_wait=ROLE_WAIT_SECONDS)
    _logging(settings)
    api_lock, engine_lock = _hold_roles(settings, "api", "engine", wait=ROLE_WAIT_SECONDS)
    # The engine's operations routes, for the API's /metrics: a loopback socket this process keeps open, so
    # that a restarted engine process serves on the same port.
    operations = socket.create_server(("127.0.0.1", 0))
    metrics_url = f"http://127.0.0.1:{operations.getsockname()[1]}/metrics"
    me = os.getpid()
    line = _listening(settings, "API, engine and webhooks in two processes")
    supervisor = Supervisor(lambda: print(line, flush=True))
    supervisor.add(
        "API",
        lambda fd: ChildPlan("api", settings, me, fd, metrics_url=metrics_url),
        inherit=(api_lock.fileno(),),  # held for the child's life: its role stays taken until it has ended
    )
    supervisor.add(
        "engine",
        lambda fd: ChildPlan("worker", settings, me, fd, metrics_fd=operations.fileno()),
        inherit=(engine_lock.fileno(), operations.fileno()),
    )
    try:
        return supervisor.run()
    finally:
        operations.close()
        api_lock.close()
        engine_lock.close()


def run_child(plan: ChildPlan) -> int:
    """A child of ``serve``'s supervisor (see :mod:`omnirelay.supervisor`): run its role; a reason it cannot
    start goes up to the supervisor, which shows it once."""
    die_with_parent(plan.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if plan.role == "api":
            return _run_http(plan.settings, worker=False, child=plan)
        return _worker(plan.settings, None, child=plan)
    except (config.ConfigError, AccountError, SchemaError, RoleTaken, StartupError) as exc:
        line = f"omnirelay: {exc}"
        if plan.report_fd >= 0:
            report(plan, f"fail {line}")
        else:
            print(line, file=sys.stderr)
        return 2


def _api(settings: config.Settings, processes: int) -> int:
    """``omnirelay api``: HTTP only, in one process or (on PostgreSQL) in several sharing the port."""
    if processes > 1 and not is_postgres(settings):
        raise config.ConfigError(
            "on the embedded SQLite store, one API process accepts messages (run omnirelay worker beside it);"
            " several API processes need PostgreSQL (--database postgresql://...)"
        )
    if processes <= 1:
        return _run_http(settings, worker=False, reuse_port=True)
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_api_child, args=(settings,)) for _ in range(processes)]
    for child in children:
        child.start()

    def stop(_signum: int, _frame: object) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()
    return max(child.exitcode or 0 for child in children)


def _api_child(settings: config.Settings) -> None:
    """One of ``omnirelay api --processes N``: its exit code says whether it could start."""
    try:
        code = _run_http(settings, worker=False, reuse_port=True)
    except StartupError as exc:
        print(f"omnirelay: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


def _worker(settings: config.Settings, port: int | None, child: ChildPlan | None = None) -> int:
    """``omnirelay worker``: the engine and the webhook notifier, no HTTP (a ``child`` of ``serve``'s supervisor:
    its operations routes on the socket it inherits, for the API's ``/metrics``)."""
    _setup(settings)
    held = [] if child is not None else _hold_roles(settings, "engine")

    async def run() -> None:
        store = await open_store_to_serve(settings, shared=True)
        gateway = Gateway(settings, store, api=False, worker=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in _stop_signals(child):
            loop.add_signal_handler(signum, stopping.set)
        runner = None
        if port is not None or (child is not None and child.metrics_fd is not None):
            runner = http_runner(settings, gateway.operations_app())
            await runner.setup()
            if child is not None and child.metrics_fd is not None:
                await web.SockSite(runner, socket.socket(fileno=child.metrics_fd)).start()
            else:
                await web.TCPSite(runner, settings.host, port).start()
        await gateway.start()
        if child is not None:
            report(child, "ready")
            log.info("engine and webhooks running")
        else:
            where = f"; operations on http://{settings.host}:{port}" if port is not None else ""
            print(f"omnirelay worker running (database {describe_database(settings)}{where})", flush=True)
        await stopping.wait()
        await gateway.stop()
        if runner is not None:
            await runner.cleanup()

    try:
        asyncio.run(run())
    finally:
        for handle in held:
            handle.close()
    return 0


def _migrate(settings: config.Settings) -> int:
    try:
        if is_postgres(settings):
            assert settings.database is not None
            version = asyncio.run(postgres.migrate(settings.database))
        else:
            store = SqliteStore(settings.sqlite_path())
            version = store.version
            asyncio.run(store.close())
    except CANNOT_SERVE as exc:
        raise StartupError(f"cannot migrate {describe_database(settings)}: {exc}") from None
    print(f"database {describe_database(settings)} is at schema version {version}")
    return 0


def _accounts(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(store: Store) -> int:
        if args.action == "add":
            made = await add_account(store, args.username, args.password, args.key)
            print(f"account {made.username} created")
            if args.password is None:
                print(f"password: {made.password}")
            if made.api_key:
                print(f"API key: {made.api_key}")
        elif args.action == "list":
            rows = await store.accounts()
            keys = await store.keys()
            for a in rows:
                count = sum(1 for k in keys if k.account_id == a.id)
                print(f"{a.username}\t{a.source}\t{count} API key(s)")
        elif args.action == "remove":
            account = await store.account_by_username(args.username)
            if account is None or not await store.remove_account(args.username):
                print(f"no account {args.username!r}", file=sys.stderr)
                return 1
            print(f"account {args.username} removed")
            if account.source == "config":
                print("(declared in a config file: remove it there too, or the server's next start makes it again)")
        return 0

    return _with_store(settings, work)


def _keys(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(store: Store) -> int:
        if args.action == "create":
            account = await store.account_by_username(args.username)
            if account is None:
                print(f"no account {args.username!r}", file=sys.stderr)
                return 1
            key = await create_key(store, account)
            print(f"API key for {account.username} (shown only now): {key}")
        elif args.action == "revoke":
            declared = any(k.id == args.key_id and k.source == "config" for k in await store.keys())
            if not await store.revoke_key(args.key_id):
                print(f"no API key with id {args.key_id!r}", file=sys.stderr)
                return 1
            print(f"API key {args.key_id} revoked")
            if declared:
                print("(declared in a config file: remove it there too, or the server's next start adds it again)")
        elif args.action == "list":
            for k in await store.keys():
                print(f"{k.id}\t{k.username}\t{k.source}")
        return 0

    return _with_store(settings, work)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``omnirelay`` command: no traceback reaches the user. A problem is one line on stderr
    and a non-zero status; Ctrl-C is status 130; output closed early (``| head``) ends the command quietly."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away: nothing more to say to it, and nothing left for the interpreter to flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "accounts" and args.action == "hash-password":
        print(hash_password(args.password))
        return 0
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": lambda a: _serve(_settings(a)),
        "api": lambda a: _api(_settings(a), a.processes),
        "worker": lambda a: _worker(_settings(a), a.port),
        "migrate": lambda a: _migrate(_settings(a)),
        "accounts": _accounts,
        "keys": _keys,
    }
    if args.command in client.COMMANDS:
        return client.run(args)
    try:
        return commands[args.command](args)
    except (config.ConfigError, AccountError, SchemaError, RoleTaken, StartupError) as exc:
        print(f"omnirelay: {exc}", file=sys.stderr)
        return 2
