"""E-mail over SMTP: the EMAIL channel handed to real mail servers with aiosmtplib.

Each e-mail step becomes one plain-text UTF-8 message (``email.subject``, ``email.text``) from the step's
``from`` to the destination's ``emailAddress``, sent to the first configured server whose ``from_domains``
holds the sender's domain (else to the first server). The server's answer decides the step at once, as
e-mail has no handset receipt:

* 250 at the end of DATA: ``DELIVERED``;
* 5xx to RCPT: ``REJECTED`` (``EC_INVALID_EMAIL_ADDRESS``), the address was refused; a 5.7.x policy refusal
  (relay denied, blocked) is ``UNDELIVERABLE`` (``EC_RECIPIENT_DOMAIN_POLICY_ERROR``) instead;
* 5xx to MAIL: ``UNDELIVERABLE`` (``EC_SENDER_ADDRESS_INVALID``); 5xx to DATA: ``UNDELIVERABLE``
  (``EC_HARD_BOUNCE``); 5xx while opening the session (greeting, EHLO, STARTTLS, AUTH), and 530 / 538
  (authentication / encryption required) anywhere: ``UNDELIVERABLE`` (``EC_CONFIGURATION_ERROR``);
* 4xx to anything, a refused or dropped connection, a timeout: ``RETRY`` after
  ``retry_seconds * 2 ** (tries - 1)``; the engine submits the step again while its validity lasts.

Connections stay open and are reused: each server has a small pool, a batch is sent concurrently up to the
pool's size, and a pooled connection the server closed meanwhile is replaced transparently.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

import aiosmtplib
from prometheus_client import Counter

from omnirelay.config import SmtpConfig, SmtpServerConfig
from omnirelay.connectors.base import Answered, Connector, LaterReport, SubmitResult, submit_each
from omnirelay.domain.delivery import Submission
from omnirelay.domain.lifecycle import Outcome
from omnirelay.metrics import Metrics

log = logging.getLogger("omnirelay.channels.smtp")  # the name operators filter on, kept from before the move

#: Connections kept per server; also how many messages go to one server at the same time.
CONNECTIONS_PER_SERVER = 4
#: A pooled connection unused for this long is closed rather than reused (servers drop idle sessions).
IDLE_SECONDS = 60.0

# CRLF line ends, and bodies in quoted-printable or base64 so that any server takes them (no 8BITMIME needed).
_POLICY = SMTP_POLICY.clone(cte_type="7bit")
_UTF8_POLICY = _POLICY.clone(utf8=True)

# Error names of the catalogue used here (checked by the tests with catalogue.is_error_name).
ERR_RECIPIENT = "EC_INVALID_EMAIL_ADDRESS"
ERR_POLICY = "EC_RECIPIENT_DOMAIN_POLICY_ERROR"
ERR_SENDER = "EC_SENDER_ADDRESS_INVALID"
ERR_BOUNCE = "EC_HARD_BOUNCE"
ERR_CONFIG = "EC_CONFIGURATION_ERROR"
ERR_INTERNAL = "EC_INTERNAL_ERROR"


def retry_delay(retry_seconds: float, tries: int) -> float:
    """Seconds to wait before submitting a step again after its ``tries``-th attempt was deferred."""
    return retry_seconds * 2.0 ** min(max(tries - 1, 0), 30)


def classify(stage: str, code: int, text: str, *, tries: int, retry_seconds: float) -> LaterReport:
    """The outcome of a server's reply ``code`` to the command of ``stage`` (``SESSION``, ``MAIL``,
    ``RCPT`` or ``DATA``)."""
    detail = f"{code} {text}".strip()
    if 200 <= code < 300:
        return LaterReport(0.0, Outcome.DELIVERED, detail=detail)
    if not 500 <= code < 600:  # 4xx, and anything a server should not have said: try again later
        return LaterReport(retry_delay(retry_seconds, tries), Outcome.RETRY, detail=detail)
    if code in (530, 538):  # authentication / encryption required (RFC 4954): our settings, not this message
        return LaterReport(0.0, Outcome.UNDELIVERABLE, ERR_CONFIG, detail=detail)
    if stage == "RCPT":
        if text.startswith("5.7."):
            return LaterReport(0.0, Outcome.UNDELIVERABLE, ERR_POLICY, detail=detail)
        return LaterReport(0.0, Outcome.REJECTED, ERR_RECIPIENT, detail=detail)
    if stage == "MAIL":
        return LaterReport(0.0, Outcome.UNDELIVERABLE, ERR_SENDER, detail=detail)
    if stage == "DATA":
        return LaterReport(0.0, Outcome.UNDELIVERABLE, ERR_BOUNCE, detail=detail)
    return LaterReport(0.0, Outcome.UNDELIVERABLE, ERR_CONFIG, detail=detail)


class _Invalid(ValueError):
    """A submission that cannot become an e-mail; carries the report that says so."""

    def __init__(self, report: LaterReport) -> None:
        super().__init__(report.detail)
        self.report = report


@dataclass(frozen=True)
class _Mail:
    """One submission made ready to send."""

    envelope_from: str
    envelope_to: str
    sender_domain: str
    message_id: str
    body: bytes
    utf8: bool
    """The envelope needs SMTPUTF8 (a non-ASCII local part)."""
    utf8_to: bool
    """The recipient's local part is the non-ASCII one."""


def _ascii_address(addr: str, what: str, error: str, outcome: Outcome) -> tuple[str, bool]:
    """An address with its domain in IDNA form, and whether its local part still needs SMTPUTF8."""
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c in addr for c in " \r\n<>"):
        raise _Invalid(LaterReport(0.0, outcome, error, detail=f"invalid {what} address {addr!r}"))
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise _Invalid(LaterReport(0.0, outcome, error, detail=f"invalid {what} domain {domain!r}")) from None
    return f"{local}@{domain}", not local.isascii()


def message_id_for(sub: Submission, domain: str) -> str:
    """The Message-ID of a step: the same for every try of it, so a receiver can drop a duplicate that a
    connection lost after the end of DATA may cause."""
    key = f"{sub.account_id}\0{sub.message}\0{sub.message_id}\0{sub.step}\0{sub.address}".encode()
    return f"<{hashlib.sha256(key).hexdigest()[:32]}.{sub.step + 1}@{domain}>"


def build_mail(sub: Submission) -> _Mail:
    """The e-mail of a submission (raises :class:`_Invalid` for a sender or recipient that is none)."""
    name, sender = parseaddr(sub.sender or "")
    envelope_from, from_utf8 = _ascii_address(sender, "sender", ERR_SENDER, Outcome.UNDELIVERABLE)
    envelope_to, to_utf8 = _ascii_address(sub.address.strip(), "recipient", ERR_RECIPIENT, Outcome.REJECTED)
    domain = envelope_from.rpartition("@")[2]
    utf8 = from_utf8 or to_utf8
    data: dict[str, Any] = sub.content.get("email") or {}
    msg = EmailMessage(policy=_UTF8_POLICY if utf8 else _POLICY)
    # formataddr quotes or encodes the display name as needed; the address parts are checked above
    msg["From"] = formataddr((" ".join(name.split()), envelope_from))
    msg["To"] = envelope_to
    subject = data.get("subject")
    if subject:
        msg["Subject"] = " ".join(str(subject).splitlines())  # a line break would start a header of its own
    msg["Date"] = format_datetime(datetime.now(UTC))
    message_id = message_id_for(sub, domain)
    msg["Message-ID"] = message_id
    msg.set_content(str(data.get("text") or ""))
    return _Mail(envelope_from, envelope_to, domain, message_id, msg.as_bytes(), utf8, to_utf8)


class _Dropped(Exception):
    """A pooled connection turned out closed before the transaction began: open a new one and try again."""


class _SmtpPool:
    """Open connections to one server, reused across messages."""

    def __init__(self, server: SmtpServerConfig, size: int, channel: SmtpChannel) -> None:
        self.server = server
        self.label = f"{server.host}:{server.port}"
        self.size = size
        self.channel = channel
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots: asyncio.Semaphore | None = None
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    def slots(self) -> asyncio.Semaphore:
        """Held for the whole of one transaction, so no more than ``size`` connections ever exist."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        return self._slots

    async def take(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected client, and whether it was reused from the pool."""
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < IDLE_SECONDS:
                return client, True
            await _quit(client)
        return await self._connect(), False

    def give_back(self, client: aiosmtplib.SMTP) -> None:
        """Return a client after a finished transaction (a closed one is dropped)."""
        if self._closed:
            client.close()
        elif client.is_connected:
            self._idle.append((client, time.monotonic()))

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.server
        if s.security != "none" and self._tls is None:
            # built once, off the loop: loading the system's CA bundle takes a while
            self._tls = await asyncio.to_thread(ssl.create_default_context)
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password if s.username is not None else None,
            local_hostname=await self.channel.local_hostname(),
            timeout=s.timeout_seconds,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self._tls,
        )
        await client.connect()
        self.channel.counted_connection(self.label)
        try:
            if client.is_ehlo_or_helo_needed:  # now, so that the extensions are known before the first MAIL
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except BaseException:
            client.close()
            raise
        return client

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(client) for client, _ in idle))


async def _quit(client: aiosmtplib.SMTP) -> None:
    """Say goodbye if the server still listens; close the socket in any case."""
    try:
        if client.is_connected:
            await asyncio.wait_for(client.quit(), 2.0)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()


class _SmtpMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.sends = Counter(
            "omnirelay_smtp_sends", "E-mails handed to SMTP servers, by result", ["server", "result"],
            registry=metrics.registry,
        )
        self.connections = Counter(
            "omnirelay_smtp_connections", "SMTP connections opened", ["server"], registry=metrics.registry
        )


# One set of counters per registry, however many channels are built on it.
_METRICS: weakref.WeakKeyDictionary[Metrics, _SmtpMetrics] = weakref.WeakKeyDictionary()


class SmtpChannel(Connector):
    """A :class:`~omnirelay.connectors.base.Connector` for EMAIL steps, sending through the configured servers."""

    def __init__(
        self,
        config: SmtpConfig,
        metrics: Metrics | None = None,
        *,
        connections_per_server: int = CONNECTIONS_PER_SERVER,
    ) -> None:
        if not config.servers:
            raise ValueError("smtp: no servers configured")
        self.config = config
        self.pools = [_SmtpPool(server, connections_per_server, self) for server in config.servers]
        self._metrics: _SmtpMetrics | None = None
        if metrics is not None:
            self._metrics = _METRICS.get(metrics)
            if self._metrics is None:
                self._metrics = _METRICS[metrics] = _SmtpMetrics(metrics)
        self._hostname: str | None = None
        self.connections_opened = 0
        """How many SMTP connections this channel opened (all servers)."""

    async def local_hostname(self) -> str:
        """This host's name for EHLO, looked up once (the lookup can block, so not on the loop)."""
        if self._hostname is None:
            name = await asyncio.to_thread(socket.getfqdn)
            self._hostname = name if name and name.isascii() and " " not in name else "localhost"
        return self._hostname

    def counted_connection(self, label: str) -> None:
        """Count a newly opened connection."""
        self.connections_opened += 1
        if self._metrics is not None:
            self._metrics.connections.labels(label).inc()

    def pool_for(self, sender_domain: str) -> _SmtpPool:
        """The first server taking the sender's domain, else the first server."""
        domain = sender_domain.lower()
        for pool in self.pools:
            if any(d.lower() == domain for d in pool.server.from_domains):
                return pool
        return self.pools[0]

    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        """Send each submission (concurrently, at most the pool's size per server); one result each, in order,
        each also given to ``answered`` as soon as its SMTP transaction ended."""
        return await submit_each(batch, self._submit_one, answered)

    async def close(self) -> None:
        """QUIT and close every pooled connection."""
        await asyncio.gather(*(pool.close() for pool in self.pools))

    async def _submit_one(self, sub: Submission) -> SubmitResult:
        try:
            mail = build_mail(sub)
        except _Invalid as exc:
            return SubmitResult(None, [exc.report])
        except Exception:
            log.exception("smtp: cannot build the e-mail of %s (step %d)", sub.message_id, sub.step + 1)
            failed = LaterReport(0.0, Outcome.UNDELIVERABLE, ERR_INTERNAL, detail="cannot build the e-mail")
            return SubmitResult(None, [failed])
        pool = self.pool_for(mail.sender_domain)
        try:
            report = await self._send(pool, mail, sub.tries)
        except Exception:
            log.exception("smtp: sending %s (step %d) to %s failed", sub.message_id, sub.step + 1, pool.label)
            report = LaterReport(0.0, Outcome.UNDELIVERABLE, ERR_INTERNAL, detail="internal error while sending")
        if self._metrics is not None:
            self._metrics.sends.labels(pool.label, report.outcome.lower()).inc()
        log.debug("smtp: %s (step %d) via %s: %s %s", sub.message_id, sub.step + 1, pool.label, report.outcome,
                  report.detail)
        return SubmitResult(mail.message_id, [report])

    async def _send(self, pool: _SmtpPool, mail: _Mail, tries: int) -> LaterReport:
        retry_s = self.config.retry_seconds
        async with pool.slots():
            while True:
                try:
                    client, reused = await pool.take()
                except aiosmtplib.SMTPResponseException as exc:  # the greeting, EHLO, STARTTLS or AUTH said no
                    report = classify("SESSION", exc.code, exc.message, tries=tries, retry_seconds=retry_s)
                    if report.outcome != Outcome.RETRY:
                        log.error("smtp: %s refused the session: %s", pool.label, report.detail)
                    return report
                except (OSError, TimeoutError) as exc:  # refused, unreachable, timed out, TLS handshake failed
                    return self._unreachable(pool, exc, tries)
                except aiosmtplib.SMTPException as exc:
                    # STARTTLS or AUTH not offered, no common AUTH mechanism: the config does not fit the server
                    log.error("smtp: cannot open a session with %s: %s", pool.label, exc)
                    return LaterReport(0.0, Outcome.UNDELIVERABLE, ERR_CONFIG, detail=str(exc))
                try:
                    report = await self._transact(client, mail, tries, reused)
                except _Dropped:
                    continue
                except BaseException:  # cancelled mid-transaction: the session's state is unknown
                    client.close()
                    raise
                pool.give_back(client)
                return report

    def _unreachable(self, pool: _SmtpPool, exc: BaseException, tries: int) -> LaterReport:
        log.warning("smtp: cannot reach %s: %s", pool.label, exc)
        delay = retry_delay(self.config.retry_seconds, tries)
        detail = f"connection to {pool.label} failed: {exc or type(exc).__name__}"
        return LaterReport(delay, Outcome.RETRY, detail=detail)

    async def _transact(self, client: aiosmtplib.SMTP, mail: _Mail, tries: int, reused: bool) -> LaterReport:
        """MAIL, RCPT, DATA on one connection; the reply that ends it decides the outcome."""
        retry_s = self.config.retry_seconds
        stage = "MAIL"
        try:
            options: list[str] = []
            if mail.utf8:
                if not client.supports_extension("smtputf8"):
                    detail = "the server does not take non-ASCII addresses (no SMTPUTF8)"
                    error = ERR_RECIPIENT if mail.utf8_to else ERR_SENDER
                    return LaterReport(0.0, Outcome.UNDELIVERABLE, error, detail=detail)
                options.append("SMTPUTF8")
            if client.supports_extension("size"):
                options.append(f"SIZE={len(mail.body)}")
            encoding = "utf-8" if mail.utf8 else "ascii"
            await client.mail(mail.envelope_from, options=options, encoding=encoding)
            stage = "RCPT"
            await client.rcpt(mail.envelope_to, encoding=encoding)
            stage = "DATA"
            response = await client.data(mail.body)
        except aiosmtplib.SMTPResponseException as exc:
            if reused and stage == "MAIL" and exc.code == 421:  # the server was closing this idle session
                client.close()
                raise _Dropped from None
            if client.is_connected:
                await _reset(client)
            return classify(stage, exc.code, exc.message, tries=tries, retry_seconds=retry_s)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError, TimeoutError) as exc:
            client.close()
            if reused and stage == "MAIL" and not isinstance(exc, TimeoutError):
                raise _Dropped from None
            # Lost during DATA the server may have taken the message; the retry carries the same Message-ID.
            delay = retry_delay(retry_s, tries)
            return LaterReport(delay, Outcome.RETRY, detail=f"connection lost at {stage}: {exc or type(exc).__name__}")
        return classify("DATA", response.code, response.message, tries=tries, retry_seconds=retry_s)


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET after a refusal so that the connection can carry the next message (closed if that fails)."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
