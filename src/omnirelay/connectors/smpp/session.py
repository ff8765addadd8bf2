"""One SMPP connector's binds and sessions: the :class:`asyncio.Protocol` that parses PDUs without an await per
PDU, the sender task with its window, throttle pause and rate tokens, receipts and MOs handed to their sinks
(how a batch travels: :mod:`.connector`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from omnirelay.config import SmppConnectorConfig
from omnirelay.connectors.base import ReceiptSink
from omnirelay.connectors.smpp import pdu as pdus
from omnirelay.connectors.smpp.inbound import InboundSink, decode_mo
from omnirelay.connectors.smpp.receipts import (
    THROTTLE_STATUSES,
    normalise_id,
    parse_receipt,
    receipt_for,
)
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.inbound import InboundPart

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics
    from omnirelay.store.base import Store

log = logging.getLogger("omnirelay.smpp")

#: Throttle pause of a bind after ESME_RTHROTTLED / ESME_RMSGQFUL: first, and the cap it doubles up to.
THROTTLE_PAUSE_S: Final = 0.25
THROTTLE_PAUSE_MAX_S: Final = 4.0
#: How long a RETRY waits when the bind is down, and when the connector was too busy to send it in time.
UNBOUND_RETRY_S: Final = 2.0
BUSY_RETRY_S: Final = 1.0
#: Receipts handed to the sink at once, at most.
RECEIPT_BATCH: Final = 1000
UNBIND_TIMEOUT_S: Final = 2.0
#: A bind that drops within this many seconds counts as a failed one for the reconnect backoff.
FLAPPING_S: Final = 5.0


# --- one submit_sm and one submitted batch ----------------------------------------------------------


class _Batch:
    """Counts the parts of one :meth:`SmppChannel.submit` call still waiting for their answer."""

    __slots__ = ("done", "given_up", "left")

    def __init__(self) -> None:
        self.left = 0
        self.done = asyncio.Event()
        self.given_up = False
        """Set once the batch stopped waiting for unwritten parts: a throttled part is then not queued again."""

    def settle(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


# Part states: waiting to be written, written and unanswered, or settled (the last four).
QUEUED, SENT, OK, FAILED, UNKNOWN, UNSENT = "queued", "sent", "ok", "failed", "unknown", "unsent"


class _Part:
    """One submit_sm: its body, and what became of it."""

    __slots__ = ("batch", "body", "message_id", "planned", "state", "status", "throttled")

    def __init__(self, body: bytes, batch: _Batch) -> None:
        self.body = body
        self.batch = batch
        self.planned: _Planned | None = None
        """The message this part belongs to."""
        self.state = QUEUED
        self.status = 0
        self.message_id = ""
        self.throttled = 0

    def settle(self, state: str, status: int = 0, message_id: str = "") -> None:
        if self.state in (QUEUED, SENT):
            self.state, self.status, self.message_id = state, status, message_id
            if self.planned is not None:
                self.planned.settle()
            self.batch.settle()


# --- metrics -------------------------------------------------------------------------------------------


class _Metrics:
    """The connector metrics, registered on the gateway's registry."""

    def __init__(self, metrics: Metrics) -> None:
        from prometheus_client import Counter, Gauge

        r = metrics.registry
        self.of = metrics.of
        self.bound = Gauge(
            "omnirelay_smpp_bound", "Whether the connector's bind is up (1) or not (0)", ["connector"], registry=r
        )
        self.window = Gauge(
            "omnirelay_smpp_window_in_use", "submit_sm PDUs written and not yet answered", ["connector"], registry=r
        )
        self.submits = Counter(
            "omnirelay_smpp_submits", "submit_sm PDUs by result", ["connector", "result"], registry=r
        )
        self.receipts = Counter(
            "omnirelay_smpp_receipts", "Delivery receipts by stat", ["connector", "stat"], registry=r
        )
        self.throttles = Counter(
            "omnirelay_smpp_throttles", "ESME_RTHROTTLED / ESME_RMSGQFUL answers", ["connector"], registry=r
        )
        self.inbound = Counter(
            "omnirelay_smpp_inbound",
            "Mobile-originated deliver_sm by result (received, undecodable, store_failed, ignored)",
            ["connector", "result"],
            registry=r,
        )
        self.inbound_waiting = Gauge(
            "omnirelay_smpp_inbound_waiting",
            "Mobile-originated deliver_sm received and not yet stored (so not yet acknowledged)",
            ["connector"],
            registry=r,
        )


# --- a session: one TCP connection -------------------------------------------------------------------


class _Session(asyncio.Protocol):
    """One TCP connection to the SMSC: PDU framing, requests and their answers, keep-alive."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.connector = link.connector
        self.config = link.connector.config
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sequence = 0
        self.pending: dict[int, tuple[float, _Part | asyncio.Future[tuple[int, int, bytes]]]] = {}
        self.submits_pending = 0
        self.window = asyncio.Semaphore(max(1, self.config.window_size))
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.last_io = self.loop.time()
        self.bound = False
        self._watchdog: asyncio.Task[None] | None = None
        self._out: list[bytes] = []
        self._flush_soon = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._watchdog = self.loop.create_task(self._watch())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._out.clear()
        self.bound = False
        pending, self.pending = self.pending, {}
        for _, waiter in pending.values():
            if isinstance(waiter, _Part):
                # Written, unanswered: the SMSC may have taken it. Never written again (no duplicates).
                waiter.settle(UNKNOWN)
                self.connector.count_submit("unknown")
            elif not waiter.done():
                waiter.set_exception(ConnectionError("connection lost"))
        for _ in range(self.submits_pending):
            self.window.release()  # wakes a sender waiting for room on this dead session
        self.submits_pending = 0
        if self._watchdog is not None:
            self._watchdog.cancel()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        self.last_io = self.loop.time()
        offset = 0
        end = len(buffer)
        while end - offset >= 16:
            length, command_id, status, sequence = pdus.HEADER.unpack_from(buffer, offset)
            if length < 16 or length > pdus.MAX_PDU_LENGTH:
                log.error("smpp %s: PDU with command_length %d: framing lost, reconnecting", self.config.name, length)
                self.write(pdus.pdu(pdus.GENERIC_NACK, sequence, status=pdus.ESME_RINVCMDLEN))
                self.abort()
                return
            if end - offset < length:
                break
            body = bytes(buffer[offset + 16 : offset + length])
            offset += length
            try:
                self._dispatch(command_id, status, sequence, body)
            except Exception:  # one bad PDU must not take the connection down
                log.exception("smpp %s: could not handle PDU 0x%08X", self.config.name, command_id)
        del buffer[:offset]

    # -- sending

    def write(self, data: bytes) -> None:
        """Queue a PDU for the socket: every PDU written in one turn of the event loop leaves in one send()
        (a system call per PDU cost more than the rest of the ESME at 2,000 messages a second)."""
        if self.transport is None:
            return
        self._out.append(data)
        if not self._flush_soon:
            self._flush_soon = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        if self.transport is not None and self._out:
            self.transport.write(b"".join(self._out))
            self.last_io = self.loop.time()
        self._out.clear()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _next_sequence(self) -> int:
        self.sequence = self.sequence + 1 if self.sequence < 0x7FFFFFFF else 1
        return self.sequence

    def request(self, command_id: int, body: bytes) -> asyncio.Future[tuple[int, int, bytes]]:
        """Send a request; the future gets (command_id, command_status, body) of its answer."""
        future: asyncio.Future[tuple[int, int, bytes]] = self.loop.create_future()
        if self.transport is None:
            future.set_exception(ConnectionError("not connected"))
            return future
        sequence = self._next_sequence()
        self.pending[sequence] = (self.loop.time(), future)
        self.write(pdus.pdu(command_id, sequence, body))
        return future

    def submit(self, part: _Part) -> None:
        """Write one submit_sm (the caller holds a window slot, released when its answer comes)."""
        sequence = self._next_sequence()
        part.state = SENT
        self.pending[sequence] = (self.loop.time(), part)
        self.submits_pending += 1
        self.write(pdus.pdu(pdus.SUBMIT_SM, sequence, part.body))

    def respond(self, command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> None:
        self.write(pdus.pdu(command_id | pdus.RESP, sequence, body, status))

    # -- receiving

    def _dispatch(self, command_id: int, status: int, sequence: int, body: bytes) -> None:
        if command_id & pdus.RESP:
            entry = self.pending.pop(sequence, None)
            if entry is None:
                if command_id == pdus.GENERIC_NACK:
                    log.warning("smpp %s: generic_nack %s for no request", self.config.name, pdus.status_name(status))
                return
            waiter = entry[1]
            if isinstance(waiter, _Part):
                self.submits_pending -= 1
                self.window.release()
                self.connector.answered(waiter, command_id, status, body)
            elif not waiter.done():
                waiter.set_result((command_id, status, body))
            return
        if command_id == pdus.ENQUIRE_LINK:
            self.respond(pdus.ENQUIRE_LINK, sequence)
        elif command_id == pdus.DELIVER_SM:
            self.connector.delivered(self, sequence, body)
        elif command_id == pdus.UNBIND:
            log.info("smpp %s: the SMSC unbound", self.config.name)
            self.respond(pdus.UNBIND, sequence)
            self._flush()  # the unbind_resp goes out before the close (the transport sends what it holds first)
            if self.transport is not None:
                self.transport.close()
        elif command_id == pdus.ALERT_NOTIFICATION:
            pass  # has no response (§4.12)
        else:
            self.write(pdus.pdu(pdus.GENERIC_NACK, sequence, status=pdus.ESME_RINVCMDID))

    async def _watch(self) -> None:
        """Keep-alive and response timer: enquire_link when idle; a request unanswered for
        ``response_timeout_seconds`` means the peer is gone, so drop the connection."""
        config = self.config
        tick = max(0.05, min(1.0, config.enquire_link_seconds / 2, config.response_timeout_seconds / 4))
        enquiring: asyncio.Future[tuple[int, int, bytes]] | None = None
        while self.transport is not None:
            await asyncio.sleep(tick)
            now = self.loop.time()
            if self.pending:
                sent_at = next(iter(self.pending.values()))[0]
                if now - sent_at > config.response_timeout_seconds:
                    log.warning("smpp %s: no answer for %.1f s, reconnecting", config.name, now - sent_at)
                    self.abort()
                    return
            if (
                self.bound
                and (enquiring is None or enquiring.done())
                and now - self.last_io >= (config.enquire_link_seconds)
            ):
                enquiring = self.request(pdus.ENQUIRE_LINK, b"")
                enquiring.add_done_callback(_ignore_result)


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


# --- a link: one bind kept up ------------------------------------------------------------------------


class _Link:
    """One bind (transceiver, transmitter or receiver), reconnected with exponential backoff and jitter."""

    def __init__(self, connector: _Connector, command_id: int) -> None:
        self.connector = connector
        self.command_id = command_id
        self.session: _Session | None = None
        self.bound = asyncio.Event()
        self.closing = False
        self.binds = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        config = self.connector.config
        failures = 0
        while not self.closing:
            session = await self._bind(config)
            if session is None:
                failures += 1
                delay = min(config.reconnect_max_seconds, 0.5 * 2 ** min(failures - 1, 16))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            self.binds += 1
            self.session = session
            self.bound.set()
            self.connector.bind_changed()
            bound_at = time.monotonic()
            await asyncio.shield(session.closed)
            self.bound.clear()
            self.session = None
            self.connector.bind_changed()
            if self.closing:
                break
            log.warning("smpp %s: connection lost, reconnecting", config.name)
            # A bind that lasted is reconnected at once (with jitter, so a restarted SMSC is not hit by every
            # ESME at the same instant); one that keeps dropping backs off like a refused one.
            failures = failures + 1 if time.monotonic() - bound_at < FLAPPING_S else 0
            delay = min(config.reconnect_max_seconds, 0.5 * 2 ** min(failures - 1, 16)) if failures else 0.2
            await asyncio.sleep(delay * random.uniform(0.25, 1.0))

    async def _bind(self, config: SmppConnectorConfig) -> _Session | None:
        loop = asyncio.get_running_loop()
        session: _Session | None = None
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Session(self), config.host, config.port),
                config.response_timeout_seconds,
            )
            session = protocol
            body = pdus.bind(config.system_id, config.password, config.system_type)
            _, status, _ = await asyncio.wait_for(
                session.request(self.command_id, body), config.response_timeout_seconds
            )
            if status != pdus.ESME_ROK:
                raise ConnectionError(f"bind refused: {pdus.status_name(status)}")
        except (OSError, TimeoutError, pdus.PduError) as exc:
            log.warning("smpp %s: cannot bind to %s:%d: %s", config.name, config.host, config.port, exc or type(exc))
            if session is not None:
                session.abort()
            return None
        session.bound = True
        log.info("smpp %s: bound to %s:%d", config.name, config.host, config.port)
        return session

    async def close(self) -> None:
        self.closing = True
        session = self.session
        if session is not None and session.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.request(pdus.UNBIND, b""), UNBIND_TIMEOUT_S)
            if session.transport is not None:
                session.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(session.closed), UNBIND_TIMEOUT_S)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


# --- rate tokens -------------------------------------------------------------------------------------


class _LocalBucket:
    """A token bucket for one process (no store to share one through)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = time.monotonic()

    async def take(self, want: int) -> int:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        granted = min(want, int(self.tokens))
        self.tokens -= granted
        return granted


class _StoreBucket:
    """The token bucket in the store, shared by every worker process using the connector."""

    def __init__(self, store: Store, key: str, rate: float, burst: float) -> None:
        self.store = store
        self.key = key
        self.rate = rate
        self.burst = burst

    async def take(self, want: int) -> int:
        return await self.store.take_tokens(self.key, want, self.rate, self.burst, time.time())


# --- a connector -------------------------------------------------------------------------------------


@dataclass
class _Waiting:
    """Receipts handed to the sink together, and the deliver_sm PDUs to acknowledge after."""

    receipts: list[Receipt] = field(default_factory=list)
    acks: list[tuple[_Session, int]] = field(default_factory=list)


class _Connector:
    """One configured SMSC: its binds, its queue of submit_sm, its sender and its receipt flusher."""

    def __init__(
        self,
        config: SmppConnectorConfig,
        sink: ReceiptSink,
        store: Store | None,
        metrics: _Metrics | None,
        inbound: InboundSink | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.sink = sink
        self.inbound = inbound
        self.mo_waiting: list[tuple[InboundPart, _Session, int]] = []
        self.mo_storing = 0
        self.mo_ready = asyncio.Event()
        self.metrics = metrics
        if config.bind_mode == "transmitter":
            # A transmitter bind gets no receipts; a receiver bind with the same credentials takes them.
            self.tx = _Link(self, pdus.BIND_TRANSMITTER)
            self.links = [self.tx, _Link(self, pdus.BIND_RECEIVER)]
        else:
            self.tx = _Link(self, pdus.BIND_TRANSCEIVER)
            self.links = [self.tx]
        self.queue: collections.deque[_Part] = collections.deque()
        self.work = asyncio.Event()
        self.paused_until = 0.0
        self.pause_s = THROTTLE_PAUSE_S
        self.reference = random.randrange(256)
        rate = config.max_submits_per_second
        self.bucket: _LocalBucket | _StoreBucket | None = None
        if rate is not None and rate > 0:
            burst = max(1.0, rate)
            self.bucket = _StoreBucket(store, f"smpp:{self.name}", rate, burst) if store else _LocalBucket(rate, burst)
        self.waiting = _Waiting()
        self.receipts_ready = asyncio.Event()
        self.throttles = 0
        """ESME_RTHROTTLED / ESME_RMSGQFUL answers since start (the console's connector health)."""
        self.tasks: list[asyncio.Task[None]] = []
        if metrics is not None:
            metrics.bound.labels(self.name).set_function(lambda: 1.0 if self.tx.bound.is_set() else 0.0)
            metrics.window.labels(self.name).set_function(self._window_in_use)
            metrics.inbound_waiting.labels(self.name).set_function(lambda: len(self.mo_waiting) + self.mo_storing)

    def _window_in_use(self) -> float:
        session = self.tx.session
        return float(session.submits_pending) if session is not None else 0.0

    def start(self) -> None:
        for link in self.links:
            link.start()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._send_forever()), loop.create_task(self._flush_receipts_forever())]
        if self.inbound is not None:
            self.tasks.append(loop.create_task(self._flush_inbound_forever()))

    async def close(self) -> None:
        if self.waiting.acks:
            await self._flush_receipts()
        while self.mo_waiting:
            await self._flush_inbound()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(link.close() for link in self.links))
        for part in self.queue:
            part.settle(UNSENT)
        self.queue.clear()

    def bind_changed(self) -> None:
        if self.tx.bound.is_set():
            self.work.set()

    # -- submitting

    def next_reference(self) -> int:
        self.reference = (self.reference + 1) & 0xFF
        return self.reference

    def enqueue(self, parts: list[_Part]) -> None:
        self.queue.extend(parts)
        self.work.set()

    def count_submit(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.of(self.metrics.submits, self.name, result).inc()

    async def _send_forever(self) -> None:
        while True:
            try:
                await self._send_some()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("smpp %s: sender failed; going on", self.name)
                await asyncio.sleep(0.1)

    async def _send_some(self) -> None:
        """Write what the queue holds, as far as the bind, the throttle pause, the rate and the window let."""
        loop = asyncio.get_running_loop()
        await self.work.wait()
        queue = self.queue
        while queue and queue[0].state != QUEUED:  # parts given up by their batch
            queue.popleft()
        if not queue:
            self.work.clear()
            return
        session = self.tx.session
        if session is None or not session.bound:
            self.work.clear()  # bind_changed sets it again
            return
        pause = self.paused_until - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
            return
        want = len(queue)
        if self.bucket is not None:
            want = min(want, max(1, int(self.bucket.burst)))
            granted = await self.bucket.take(want)
            if granted <= 0:
                await asyncio.sleep(max(0.005, 1.0 / self.bucket.rate))
                return
        else:
            granted = want
        for _ in range(granted):
            while queue and queue[0].state != QUEUED:
                queue.popleft()
            if not queue:
                return
            await session.window.acquire()
            if session.transport is None or not session.bound:
                session.window.release()
                return
            if self.paused_until > loop.time():
                session.window.release()
                return
            if not queue or queue[0].state != QUEUED:
                session.window.release()
                continue
            session.submit(queue.popleft())

    def answered(self, part: _Part, command_id: int, status: int, body: bytes) -> None:
        """A submit_sm_resp (or a generic_nack) for ``part``."""
        if status == pdus.ESME_ROK and command_id != pdus.GENERIC_NACK:
            message_id = ""
            with contextlib.suppress(pdus.PduError):
                message_id = pdus.read_cstring(body, 0)[0].decode("latin-1")
            self.pause_s = THROTTLE_PAUSE_S
            part.settle(OK, message_id=normalise_id(message_id))
            self.count_submit("ok")
        elif status in THROTTLE_STATUSES:
            self.count_submit("throttled")
            self.throttles += 1
            if self.metrics is not None:
                self.metrics.of(self.metrics.throttles, self.name).inc()
            loop_now = asyncio.get_running_loop().time()
            if self.paused_until <= loop_now:  # the first of a burst of throttles pauses; the rest just wait
                self.paused_until = loop_now + self.pause_s
                self.pause_s = min(THROTTLE_PAUSE_MAX_S, self.pause_s * 2)
            part.throttled += 1
            part.status = status
            if part.batch.given_up:
                part.settle(UNSENT, status=status)
                return
            part.state = QUEUED
            self.queue.appendleft(part)
            self.work.set()
        else:
            self.count_submit("error")
            part.settle(FAILED, status=status)

    # -- receipts

    def delivered(self, session: _Session, sequence: int, body: bytes) -> None:
        """A deliver_sm: a receipt goes to the sink (acknowledged after), anything else is acknowledged now."""
        try:
            deliver = pdus.parse_deliver_sm(body)
        except pdus.PduError as exc:
            log.warning("smpp %s: undecodable deliver_sm (%s): %s", self.name, exc, body.hex())
            session.respond(pdus.DELIVER_SM, sequence, b"\0", pdus.ESME_RX_P_APPN)
            return
        if not deliver.is_receipt:
            self._mobile_originated(session, sequence, deliver, body)
            return
        parsed = parse_receipt(deliver)
        if self.metrics is not None:
            self.metrics.of(self.metrics.receipts, self.name, parsed.stat or "none").inc()
        receipt = receipt_for(parsed, self.name)
        if receipt is None:
            if not parsed.message_id or parsed.stat not in ("ENROUTE", "ACCEPTD"):
                log.warning("smpp %s: receipt without id or known state: %r", self.name, deliver.short_message)
            session.respond(pdus.DELIVER_SM, sequence, b"\0")
            return
        self.waiting.receipts.append(receipt)
        self.waiting.acks.append((session, sequence))
        self.receipts_ready.set()

    def _mobile_originated(self, session: _Session, sequence: int, deliver: pdus.DeliverSm, body: bytes) -> None:
        if deliver.esm_class & 0x3C:
            # SME delivery / user acknowledgements, conversation aborts, intermediate notifications: no text of a
            # subscriber's, nothing to keep
            log.info("smpp %s: deliver_sm of message type 0x%02X ignored", self.name, deliver.esm_class & 0x3C)
            self._count_inbound("ignored")
            session.respond(pdus.DELIVER_SM, sequence, b"\0")
            return
        if self.inbound is None:
            log.info(
                "smpp %s: inbound SMS from %s to %s dropped (no inbound sink)",
                self.name,
                deliver.source_addr,
                deliver.destination_addr,
            )
            session.respond(pdus.DELIVER_SM, sequence, b"\0")
            return
        try:
            part = decode_mo(deliver, self.name, self.config.gsm7_data_coding)
        except ValueError as exc:
            log.warning("smpp %s: undecodable inbound SMS (%s): %s", self.name, exc, body.hex())
            self._count_inbound("undecodable")
            session.respond(pdus.DELIVER_SM, sequence, b"\0", pdus.ESME_RX_P_APPN)
            return
        self.mo_waiting.append((part, session, sequence))
        self.mo_ready.set()

    def _count_inbound(self, result: str, n: int = 1) -> None:
        if self.metrics is not None and n:
            self.metrics.of(self.metrics.inbound, self.name, result).inc(n)

    async def _flush_inbound_forever(self) -> None:
        while True:
            await self.mo_ready.wait()
            self.mo_ready.clear()
            while self.mo_waiting:
                await self._flush_inbound()

    async def _flush_inbound(self) -> None:
        """Store a batch of inbound parts, then acknowledge their deliver_sm (ESME_RX_T_APPN when the store
        failed: the SMSC sends them again)."""
        assert self.inbound is not None
        batch, self.mo_waiting = self.mo_waiting[:RECEIPT_BATCH], self.mo_waiting[RECEIPT_BATCH:]
        status = pdus.ESME_ROK
        self.mo_storing += len(batch)
        try:
            await self.inbound([part for part, _, _ in batch])
            self._count_inbound("received", len(batch))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "smpp %s: could not store %d inbound SMS parts; the SMSC will send them again", self.name, len(batch)
            )
            self._count_inbound("store_failed", len(batch))
            status = pdus.ESME_RX_T_APPN
        finally:
            self.mo_storing -= len(batch)
        for _, session, sequence in batch:
            session.respond(pdus.DELIVER_SM, sequence, b"\0", status)

    async def _flush_receipts_forever(self) -> None:
        while True:
            await self.receipts_ready.wait()
            self.receipts_ready.clear()
            while self.waiting.acks:
                await self._flush_receipts()

    async def _flush_receipts(self) -> None:
        waiting = self.waiting
        batch = _Waiting(waiting.receipts[:RECEIPT_BATCH], waiting.acks[:RECEIPT_BATCH])
        del waiting.receipts[:RECEIPT_BATCH], waiting.acks[:RECEIPT_BATCH]
        status = pdus.ESME_ROK
        try:
            await self.sink(batch.receipts)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "smpp %s: could not store %d receipts; the SMSC will send them again", self.name, len(batch.receipts)
            )
            status = pdus.ESME_RX_T_APPN
        for session, sequence in batch.acks:
            session.respond(pdus.DELIVER_SM, sequence, b"\0", status)


# --- the channel ---------------------------------------------------------------------------------------


class _Planned:
    """One message of a batch: its parts, and who to tell once every one of them is settled."""

    __slots__ = ("connector", "finished", "index", "left", "parts")

    def __init__(self, index: int, connector: _Connector, parts: list[_Part]) -> None:
        self.index = index
        self.connector = connector
        self.parts = parts
        self.left = len(parts)
        self.finished: Callable[[_Planned], None] | None = None
        for part in parts:
            part.planned = self

    def settle(self) -> None:
        self.left -= 1
        if self.left == 0 and self.finished is not None:
            try:
                self.finished(self)
            except Exception:  # the parts' bookkeeping must go on
                log.exception("smpp: could not hand over the result of a message")
