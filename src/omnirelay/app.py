"""The composition root: builds the store, the HTTP application and the background workers from settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import time
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from omnirelay import metrics_merge
from omnirelay.api import openapi, ratelimit
from omnirelay.api.answers import answer_middleware
from omnirelay.api.auth import Authenticator
from omnirelay.api.inbox import InboxRoutes
from omnirelay.api.params import BODY_TIMEOUT
from omnirelay.api.protocol import ConnectionLimits, Runner
from omnirelay.api.ratelimit import RateLimiter, RateLimitError, rate_limit_middleware
from omnirelay.api.reports import ReportRoutes
from omnirelay.api.scenarios import ScenarioRoutes
from omnirelay.api.sending import SendRoutes
from omnirelay.api.server import auth_middleware, error_middleware, metrics_middleware
from omnirelay.api.sessions import AuthRoutes
from omnirelay.config import ConfigError, Settings
from omnirelay.connectors.base import Connector
from omnirelay.connectors.registry import Wiring, registry
from omnirelay.connectors.sandbox.connector import Sandbox
from omnirelay.console import ConsoleRoutes
from omnirelay.domain.channels import Channel
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.numbering import MccMncTable
from omnirelay.domain.pricing import PriceEntry, PriceList
from omnirelay.domain.reports import Tariffs
from omnirelay.domain.validation import Limits
from omnirelay.engine import health, rollup_backfill
from omnirelay.engine.log_columns import fill_log_columns
from omnirelay.engine.worker import Engine, EngineSettings, purge_forever
from omnirelay.inbound_sms import InboundSms
from omnirelay.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from omnirelay.metrics import Metrics
from omnirelay.notifier.webhooks import Notifier, NotifierSettings
from omnirelay.sending import Sender
from omnirelay.store.base import Store
from omnirelay.store.errors import UNAVAILABLE
from omnirelay.store.sqlite import SqliteStore

log = logging.getLogger("omnirelay")
PEER_METRICS_SECONDS = 5.0


def is_postgres(settings: Settings) -> bool:
    """Whether the settings name a PostgreSQL database."""
    return (settings.database or "").startswith(("postgresql://", "postgres://"))


async def open_store(settings: Settings, shared: bool = False) -> Store:
    """The store the settings name: PostgreSQL for a ``postgresql://`` URL, else the SQLite file (``shared`` when
    other processes write that file too)."""
    if is_postgres(settings):
        from omnirelay.store.postgres import PostgresStore

        assert settings.database is not None
        return await PostgresStore.open(settings.database)
    return SqliteStore(settings.sqlite_path(), synchronous=settings.sqlite_synchronous, shared=shared)


#: What opening or using a store raises when its database cannot serve (sqlite3.Error: also a file that is not
#: a database at all, or a schema that a read-only file keeps from migrating).
CANNOT_SERVE: tuple[type[BaseException], ...] = (*UNAVAILABLE, sqlite3.Error)


class StartupError(Exception):
    """The process cannot start on its database (unreachable, read-only, full); the message says why."""


async def open_store_to_serve(settings: Settings, shared: bool = False) -> Store:
    """:func:`open_store`, refusing (:class:`StartupError`) a database that cannot take writes now."""
    try:
        store = await open_store(settings, shared)
    except (*CANNOT_SERVE, asyncpg.PostgresError) as exc:  # also: no such database, authentication refused
        disk = _disk_problem(settings)  # SQLite says "disk I/O error" when it cannot even start its WAL
        why = f"{_reason(exc)}; {disk}" if disk else _reason(exc)
        raise StartupError(f"cannot open the database {describe_database(settings)}: {why}") from None
    problem = await not_ready(settings, store)
    if problem is not None:
        await store.close()
        raise StartupError(f"cannot start on {describe_database(settings)}: {problem}")
    return store


async def not_ready(settings: Settings, store: Store) -> str | None:
    """Why the store cannot take requests now (it does not answer, cannot commit a write, or the data dir's disk
    is below ``[limits] min_free_disk_mb``), or None when it can."""
    now = time.time()
    try:
        await store.queue_stats(now)
        await store.check_writable(now)
    except CANNOT_SERVE as exc:
        return f"the database cannot write: {_reason(exc)}"
    return _disk_problem(settings)


def _disk_problem(settings: Settings) -> str | None:
    """On SQLite, what is wrong with the data dir's disk (too little free space), or None."""
    if is_postgres(settings):
        return None
    folder = settings.sqlite_path().parent
    try:
        free_mb = shutil.disk_usage(folder).free / 1e6
    except OSError as exc:
        return f"the data dir cannot be read: {_reason(exc)}"
    floor = settings.limits.min_free_disk_mb
    if free_mb < floor:
        return f"the disk of {folder} has {free_mb:.1f} MB free, less than min_free_disk_mb ({floor:g})"
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def describe_database(settings: Settings) -> str:
    """The database for humans: the SQLite file, or the PostgreSQL URL without its password."""
    if is_postgres(settings):
        assert settings.database is not None
        head, sep, tail = settings.database.rpartition("@")
        if sep and ":" in head.split("//", 1)[-1]:
            user = head.split("//", 1)[-1].split(":", 1)[0]
            return f"{head.split('//', 1)[0]}//{user}:***@{tail}"
        return settings.database
    return str(settings.sqlite_path())


@dataclass
class Gateway:
    """Everything one gateway process runs: the HTTP API, the engine and the notifier, or some of them."""

    settings: Settings
    store: Store
    api: bool = True
    worker: bool = True
    auth: Authenticator = field(init=False)
    sandbox: Sandbox = field(init=False)
    engine: Engine = field(init=False)
    notifier: Notifier = field(init=False)
    tariffs: Tariffs = field(init=False)
    metrics: Metrics = field(init=False)
    connectors: dict[str, Connector] = field(init=False, default_factory=dict)
    """The real connectors configured, by the channel they serve (the sandbox serves the others)."""
    inbound_sms: InboundSms = field(init=False)
    """Inbound SMS from the SMPP connectors: routed to accounts, stored, pushed (see :mod:`omnirelay.inbound_sms`)."""
    peer_metrics: str | None = None
    """The URL of the engine process's ``/metrics``, merged into this process's (``omnirelay serve`` on SQLite)."""
    _peer_session: aiohttp.ClientSession | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self.metrics = Metrics()
        self.auth = Authenticator(self.store)
        self.tariffs = tariffs(s)
        self.sandbox = Sandbox(s.sandbox.rules)
        self.inbound_sms = InboundSms(s, self.store, self.metrics)
        channels: dict[str, Connector] = {c.value: self.sandbox for c in Channel}
        if self.worker:
            self.connectors = self._real_connectors()
            channels.update(self.connectors)
        self.engine = Engine(
            self.store,
            channels,
            self.tariffs,
            EngineSettings(batch_size=s.engine.batch_size, remember_seconds=s.capability.not_whatsapp_days * 86400),
            self.metrics,
        )
        self.notifier = Notifier(
            self.store,
            NotifierSettings(
                max_attempts=s.webhooks.max_attempts,
                timeout_seconds=s.webhooks.timeout_seconds,
                retry_base_seconds=s.webhooks.retry_base_seconds,
            ),
            self.metrics,
        )
        self.engine.on_progress = self.notifier.wake

    def wiring(self) -> Wiring:
        """The shared services the connectors and their receivers are built with."""
        return Wiring(self.store, self.metrics, self.receive_receipts, self.inbound_sms.receive, self.settings.accounts)

    def _real_connectors(self) -> dict[str, Connector]:
        """The connectors of the registry whose settings declare them, by the channel they serve."""
        found: dict[str, Connector] = {}
        for spec in registry():
            section = spec.section(self.settings)
            if not spec.configured(section):
                continue
            try:
                found[spec.channel] = spec.build(section, self.wiring())
            except (OSError, ValueError) as exc:
                if not spec.settings_errors:
                    raise
                raise ConfigError(f"{spec.name}: {exc}") from None
        return found

    async def receive_receipts(self, receipts: list[Receipt]) -> None:
        """The connectors' receipt sink: store the receipts for the engine (durably, before the peer is
        acknowledged) and wake the engine."""
        await self.store.record_receipts(receipts, time.time())
        self.engine.wake()

    def web_app(self) -> web.Application:
        """The HTTP application (its startup also starts the engine and notifier when this process runs them)."""
        limits = Limits(
            min_validity_seconds=self.settings.limits.min_validity_seconds,
            max_destinations=self.settings.limits.max_destinations,
        )
        limiter = RateLimiter(self.store, {})
        app = web.Application(
            client_max_size=int(self.settings.limits.max_body_mb * 1024 * 1024),
            middlewares=[
                metrics_middleware(self.metrics),
                answer_middleware(),
                error_middleware(),
                auth_middleware(self.auth),
                rate_limit_middleware(limiter),
            ],
        )
        app[BODY_TIMEOUT] = self.settings.limits.body_timeout_seconds
        a = self.settings.auth
        AuthRoutes(self.store, self.auth, a.session_idle_minutes * 60, a.oauth_token_seconds).add_to(app)
        ScenarioRoutes(self.store).add_to(app)
        notify_urls = {a.username: a.notify_url for a in self.settings.accounts if a.notify_url}
        sender = Sender(self.store, limits, self.tariffs)
        SendRoutes(sender, self._accepted, notify_urls).add_to(app)
        ReportRoutes(self.store, self.tariffs).add_to(app)
        InboxRoutes(self.store).add_to(app)
        ConsoleRoutes(
            self.store, self.sandbox, sender, self.engine.wake if self.worker else lambda: None,
            currency=self.tariffs.prices.currency,
        ).add_to(app)
        document = msgspec.json.encode(openapi.build())

        async def openapi_json(_request: web.Request) -> web.Response:
            return web.Response(body=document, content_type="application/json")

        app.router.add_get("/openapi.json", openapi_json)
        for spec in registry():
            section = spec.section(self.settings)
            if spec.routes is not None and spec.configured(section):
                spec.routes(section, self.wiring()).add_to(app)
        self.add_operations_routes(app)
        endpoints = {f"{r.method} {r.resource.canonical}" for r in app.router.routes() if r.resource is not None}
        try:
            limiter.set_limits(ratelimit.limits(self.settings.rate_limits, endpoints))
        except RateLimitError as exc:
            raise ConfigError(str(exc)) from None
        app.on_startup.append(lambda _app: self.start())
        app.on_cleanup.append(lambda _app: self.stop())
        return app

    def operations_app(self) -> web.Application:
        """Only the operations routes (health, readiness, metrics): what a worker process serves."""
        app = web.Application()
        self.add_operations_routes(app)
        return app

    def add_operations_routes(self, app: web.Application) -> None:
        """``/health``, ``/healthz``, ``/readyz`` and ``/metrics``."""

        async def health(_request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def ready(_request: web.Request) -> web.Response:
            problem = await not_ready(self.settings, self.store)
            if problem is not None:
                return web.json_response({"status": "unavailable", "reason": problem}, status=503)
            return web.json_response({"status": "ready"})

        async def metrics(_request: web.Request) -> web.Response:
            depth, oldest = await self.store.queue_stats(time.time())
            self.metrics.queue_depth.set(depth)
            self.metrics.job_lag.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)
            body = self.metrics.render()
            peer = await self._read_peer_metrics()
            if peer is not None:
                body = metrics_merge.merge(body, peer)
            return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

        app.router.add_get("/health", health)
        app.router.add_get("/healthz", health)
        app.router.add_get("/readyz", ready)
        app.router.add_get("/metrics", metrics)

    async def _read_peer_metrics(self) -> bytes | None:
        """The engine process's metrics, or None without one (or while it restarts: then only this process's)."""
        if self.peer_metrics is None:
            return None
        if self._peer_session is None:
            self._peer_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PEER_METRICS_SECONDS))
        try:
            async with self._peer_session.get(self.peer_metrics) as answer:
                if answer.status == 200:
                    return await answer.read()
                log.warning("the engine process's /metrics answered %s", answer.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("cannot read the engine process's /metrics: %s", str(exc) or type(exc).__name__)
        return None

    def _accepted(self, count: int) -> None:
        self.metrics.accepted.inc(count)
        if self.worker:
            self.engine.wake()

    async def start(self) -> None:
        """Start the background work of this process."""
        if self.worker:
            self.store.subscribe(self.engine.wake, self.notifier.wake)
            for connector in self.connectors.values():
                await connector.start()
            retention_s = self.settings.engine.retention_hours * 3600
            self._tasks = [
                asyncio.create_task(self.engine.run(), name="engine"),
                asyncio.create_task(self.notifier.run(), name="notifier"),
                asyncio.create_task(purge_forever(self.store, retention_s), name="purge"),
                asyncio.create_task(self._fill_log_columns(), name="log-columns"),
                asyncio.create_task(self._backfill_rollups(), name="rollup-backfill"),
                asyncio.create_task(
                    health.report_forever(self.store, self.engine.health, dict(self.connectors)), name="health"
                ),
            ]
            if Channel.SMS.value in self.connectors:
                self._tasks.append(asyncio.create_task(self.inbound_sms.sweep_forever(), name="inbound-sms-sweep"))

    async def _fill_log_columns(self) -> None:
        await fill_log_columns(self.store, self.tariffs)

    async def _backfill_rollups(self) -> None:
        await rollup_backfill.backfill(self.store, self.tariffs)

    async def stop(self) -> None:
        """Stop the background work and close the store."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for connector in self.connectors.values():  # after the engine recorded their last answers
            await connector.close()
        if self._peer_session is not None:
            await self._peer_session.close()
        await self.store.close()


def connection_limits(settings: Settings) -> ConnectionLimits:
    """Limits on each HTTP client connection, from the settings."""
    limits = settings.limits
    return ConnectionLimits(limits.header_timeout_seconds, limits.keepalive_seconds, limits.max_connections_per_client)


def runner(settings: Settings, app: web.Application) -> web.AppRunner:
    """The runner that serves ``app`` with the settings' connection limits."""
    return Runner(app, connection_limits(settings), access_log=None)


def tariffs(settings: Settings) -> Tariffs:
    """Prices and networks from the settings."""
    p = settings.pricing
    prices = PriceList(p.currency, p.default, [PriceEntry(e.channel, e.country, e.price) for e in p.prices])
    return Tariffs(prices, MccMncTable(settings.mcc_mnc.prefixes))
