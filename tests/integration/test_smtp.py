"""The SMTP connector against a real mail server: aiosmtpd, started by the tests on 127.0.0.1.

:class:`Mailbox` is the server's handler: it keeps every message it accepts (with the connection it came on)
and answers a reply of the test's choosing to given addresses at MAIL, RCPT or DATA. :func:`mail_server`
starts one on a free port; the end-to-end tests use both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from omnirelay.config import SmtpConfig, SmtpServerConfig
from omnirelay.connectors.base import LaterReport
from omnirelay.connectors.smtp import connector as smtp
from omnirelay.connectors.smtp.connector import SmtpChannel
from omnirelay.domain import catalogue
from omnirelay.domain.delivery import Submission
from omnirelay.metrics import Metrics

# --- the mail server ---------------------------------------------------------------------------------


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int
    """Which connection (1, 2, …, in the order they sent their first MAIL) carried it."""
    tls: bool
    authenticated: bool
    mail_options: list[str]

    @property
    def message(self) -> EmailMessage:
        # as text: an SMTPUTF8 message carries raw UTF-8 in its headers
        parsed = email.message_from_string(self.data.decode("utf-8"), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Refusal:
    stage: str
    address: str
    reply: str
    times: int | None


@dataclass
class Mailbox:
    """An aiosmtpd handler that stores what it accepts and refuses what the test tells it to."""

    received: list[Received] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    """(stage, address, reply) of each refusal given."""
    _refusals: list[_Refusal] = field(default_factory=list)
    _sessions: list[Session] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse(self, address: str, reply: str, *, at: str = "RCPT", times: int | None = None) -> None:
        """Answer ``reply`` to ``address`` (the sender at MAIL, a recipient at RCPT or DATA), ``times`` times
        (None: always)."""
        with self._lock:
            self._refusals.append(_Refusal(at, address.lower(), reply, times))

    def _refusal(self, stage: str, addresses: list[str]) -> str | None:
        with self._lock:
            for r in self._refusals:
                if r.stage == stage and r.address in (a.lower() for a in addresses) and r.times != 0:
                    if r.times is not None:
                        r.times -= 1
                    self.refused.append((stage, r.address, r.reply))
                    return r.reply
        return None

    def _connection(self, session: Session) -> int:
        with self._lock:
            for i, known in enumerate(self._sessions):
                if known is session:
                    return i + 1
            self._sessions.append(session)
            return len(self._sessions)

    @property
    def connections(self) -> int:
        """How many connections sent at least one MAIL."""
        return len(self._sessions)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        self._connection(session)
        reply = self._refusal("MAIL", [address])
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self._refusal("RCPT", [address])
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._refusal("DATA", envelope.rcpt_tos)
        if reply is not None:
            return reply
        transport = server.transport
        tls = session.ssl is not None or (transport is not None and transport.get_extra_info("cipher") is not None)
        assert isinstance(envelope.content, bytes) and envelope.mail_from is not None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                      self._connection(session), tls, bool(session.authenticated),
                                      list(envelope.mail_options)))
        return "250 2.0.0 Ok: queued"

    def wait(self, n: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``n`` messages were received (for tests whose sender is another process)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {n} messages within {timeout}s")
            time.sleep(0.02)
        return self.received[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailServer(Controller):
    """aiosmtpd's threaded controller, counting the connections it accepts."""

    def __init__(self, handler: Mailbox, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=port or free_port(), server_hostname="localhost",
                         **kwargs)
        self.mailbox = handler
        self.accepted = 0

    def factory(self) -> SMTP:
        self.accepted += 1
        server: SMTP = super().factory()  # type: ignore[no-untyped-call]
        return server

    def start(self) -> None:
        super().start()
        self.accepted = 0  # the controller's own check that it listens

    def server_config(self, **kwargs: Any) -> SmtpServerConfig:
        return SmtpServerConfig(host=self.hostname, port=self.port, timeout_seconds=5.0, **kwargs)


@pytest.fixture
def mail_server() -> Iterator[Callable[..., MailServer]]:
    """Factory of running aiosmtpd servers, stopped at the end: ``start(mailbox=None, port=None, **kwargs)``
    (kwargs go to aiosmtpd's controller and ``SMTP``)."""
    started: list[MailServer] = []

    def start(mailbox: Mailbox | None = None, port: int | None = None, **kwargs: Any) -> MailServer:
        server = MailServer(mailbox or Mailbox(), port, **kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server._thread is not None:  # not stopped by the test
            server.stop()


# --- helpers -----------------------------------------------------------------------------------------

_counter = 0


def submission(to: str, *, sender: str | None = "Shop <shop@example.com>", subject: str | None = "Hello",
               text: str = "Hi there", tries: int = 1, message_id: str | None = None) -> Submission:
    global _counter
    _counter += 1
    return Submission(message=_counter, step=1, account_id=1, message_id=message_id or f"m{_counter}",
                      channel="EMAIL", sender=sender, address=to,
                      content={"email": {"subject": subject, "text": text}, "sms": {"text": "not this"}},
                      validity_s=3600.0, tries=tries)


def channel(*servers: SmtpServerConfig, retry_seconds: float = 60.0, **kwargs: Any) -> SmtpChannel:
    return SmtpChannel(SmtpConfig(servers=list(servers), retry_seconds=retry_seconds), **kwargs)


def only(reports: list[LaterReport]) -> LaterReport:
    assert len(reports) == 1, reports
    return reports[0]


def test_every_error_the_connector_reports_is_in_the_catalogue() -> None:
    for name in (smtp.ERR_RECIPIENT, smtp.ERR_POLICY, smtp.ERR_SENDER, smtp.ERR_BOUNCE, smtp.ERR_CONFIG,
                 smtp.ERR_INTERNAL):
        assert catalogue.is_error_name(name), name


# --- the message as received -------------------------------------------------------------------------


async def test_message_arrives_with_headers_and_utf8_body(mail_server: Callable[..., MailServer]) -> None:
    server = mail_server()
    ch = channel(server.server_config())
    subject = "Grüße aus Zürich 👋 – Ihre Bestellung Nr. 42 ist unterwegs, vielen Dank für Ihren Einkauf!"
    text = ("Hallo Jürgen,\n\nIhr Paket 📦 ist unterwegs. Ça va? Ελληνικά, 日本語.\n"
            ".Diese Zeile beginnt mit einem Punkt.\n" + "lange Zeile ö " * 30)
    before = dt.datetime.now(dt.UTC)
    (result,) = await ch.submit([submission("juergen@example.org", sender="Ålesund Shop <shop@example.com>",
                                            subject=subject, text=text)])
    await ch.close()

    report = only(result.reports)
    assert (report.after_s, report.outcome, report.error) == (0.0, "DELIVERED", None)
    assert report.detail is not None and report.detail.startswith("250 ")
    (got,) = server.mailbox.received
    assert got.mail_from == "shop@example.com" and got.rcpt_tos == ["juergen@example.org"]
    assert got.data.isascii(), "the message must pass any server, with or without 8BITMIME"
    msg = got.message
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Ålesund Shop", "shop@example.com")
    assert [a.addr_spec for a in msg["To"].addresses] == ["juergen@example.org"]
    assert msg["Subject"] == subject
    assert msg["Message-ID"] == result.provider_id
    assert result.provider_id is not None and result.provider_id.startswith("<")
    assert result.provider_id.endswith("@example.com>")
    sent = parsedate_to_datetime(msg["Date"])
    assert sent.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=1) <= sent <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    # canonical MIME text: CRLF line breaks inside the encoding, and a final one
    assert msg.get_content().replace("\r\n", "\n") == text + "\n"
    assert not msg.is_multipart()


async def test_plain_sender_without_subject(mail_server: Callable[..., MailServer]) -> None:
    server = mail_server()
    ch = channel(server.server_config())
    (result,) = await ch.submit([submission("a@example.org", sender="noreply@example.com", subject=None)])
    await ch.close()
    assert only(result.reports).outcome == "DELIVERED"
    msg = server.mailbox.received[0].message
    assert msg["From"] == "noreply@example.com" and msg["Subject"] is None
    assert msg.get_content().replace("\r\n", "\n") == "Hi there\n"


async def test_message_id_is_the_same_for_every_try_of_a_step(mail_server: Callable[..., MailServer]) -> None:
    """A retried step keeps its Message-ID, so a receiver can drop a copy sent twice; other steps differ."""
    server = mail_server()
    ch = channel(server.server_config())
    first = submission("a@example.org", message_id="same")
    again = Submission(**{**first.__dict__, "tries": 2})
    other = submission("a@example.org", message_id="other")
    results = await ch.submit([first, again, other])
    await ch.close()
    ids = [r.provider_id for r in results]
    assert ids[0] == ids[1] != ids[2]
    assert sorted(r.message["Message-ID"] for r in server.mailbox.received) == sorted(map(str, ids))


async def test_international_addresses(mail_server: Callable[..., MailServer]) -> None:
    """A non-ASCII domain travels in its IDNA form; a non-ASCII local part needs SMTPUTF8, which aiosmtpd offers."""
    server = mail_server()
    ch = channel(server.server_config())
    results = await ch.submit([submission("info@bücher.example"), submission("jürgen@example.org")])
    await ch.close()
    assert [only(r.reports).outcome for r in results] == ["DELIVERED", "DELIVERED"]
    (idn,) = server.mailbox.to("info@xn--bcher-kva.example")
    (eai,) = server.mailbox.to("jürgen@example.org")
    assert "SMTPUTF8" not in idn.mail_options
    assert idn.data.isascii()
    assert "SMTPUTF8" in eai.mail_options
    assert [a.addr_spec for a in eai.message["To"].addresses] == ["jürgen@example.org"]


# --- refusals and retries ----------------------------------------------------------------------------


async def test_550_to_rcpt_rejects_the_address(mail_server: Callable[..., MailServer]) -> None:
    server = mail_server()
    server.mailbox.refuse("nobody@example.org", "550 5.1.1 <nobody@example.org>: Recipient address rejected")
    ch = channel(server.server_config())
    (result,) = await ch.submit([submission("nobody@example.org")])
    report = only(result.reports)
    assert report == LaterReport(0.0, "REJECTED", "EC_INVALID_EMAIL_ADDRESS",
                                 detail="550 5.1.1 <nobody@example.org>: Recipient address rejected")
    assert server.mailbox.received == []
    # the connection is reset and carries the next message
    (ok,) = await ch.submit([submission("somebody@example.org")])
    await ch.close()
    assert only(ok.reports).outcome == "DELIVERED"
    assert server.accepted == 1


@pytest.mark.parametrize(("at", "address", "reply", "outcome", "error"), [
    ("MAIL", "shop@example.com", "553 5.7.1 Sender address rejected: not owned by user", "UNDELIVERABLE",
     "EC_SENDER_ADDRESS_INVALID"),
    ("RCPT", "x@example.org", "554 5.7.1 <x@example.org>: Relay access denied", "UNDELIVERABLE",
     "EC_RECIPIENT_DOMAIN_POLICY_ERROR"),
    ("RCPT", "x@example.org", "552 Requested mail action aborted: exceeded storage allocation", "REJECTED",
     "EC_INVALID_EMAIL_ADDRESS"),
    ("DATA", "x@example.org", "554 5.7.1 Message rejected as spam", "UNDELIVERABLE", "EC_HARD_BOUNCE"),
], ids=["mail", "rcpt-relay-denied", "rcpt-other", "data"])
async def test_permanent_refusals(mail_server: Callable[..., MailServer], at: str, address: str, reply: str,
                                  outcome: str, error: str) -> None:
    """Every 5xx is final for the step (it fails over); the error says which side was refused."""
    server = mail_server()
    server.mailbox.refuse(address, reply, at=at)
    ch = channel(server.server_config())
    (result,) = await ch.submit([submission("x@example.org")])
    await ch.close()
    assert catalogue.is_error_name(error)
    assert only(result.reports) == LaterReport(0.0, outcome, error, detail=reply)
    assert server.mailbox.received == []
    assert server.mailbox.refused == [(at, address, reply)]


@pytest.mark.parametrize("at", ["MAIL", "RCPT", "DATA"])
async def test_4xx_asks_for_a_retry_with_backoff_doubling_per_try(
        mail_server: Callable[..., MailServer], at: str) -> None:
    server = mail_server()
    address = "shop@example.com" if at == "MAIL" else "later@example.org"
    server.mailbox.refuse(address, "451 4.3.0 Try again later", at=at, times=3)
    ch = channel(server.server_config(), retry_seconds=0.5)
    first = submission("later@example.org")
    delays = []
    for tries in (1, 2, 3):
        (result,) = await ch.submit([Submission(**{**first.__dict__, "tries": tries})])
        report = only(result.reports)
        assert (report.outcome, report.error, report.detail) == ("RETRY", None, "451 4.3.0 Try again later")
        delays.append(report.after_s)
    assert delays == [0.5, 1.0, 2.0]
    assert server.mailbox.received == []
    (result,) = await ch.submit([Submission(**{**first.__dict__, "tries": 4})])
    await ch.close()
    assert only(result.reports).outcome == "DELIVERED"
    (got,) = server.mailbox.received
    assert got.message["Message-ID"] == result.provider_id
    assert server.accepted == 1, "a 4xx leaves the connection usable"


async def test_unreachable_server_asks_for_a_retry() -> None:
    port = free_port()  # nobody listens there
    ch = channel(SmtpServerConfig(host="127.0.0.1", port=port, timeout_seconds=2.0), retry_seconds=3.0)
    (result,) = await ch.submit([submission("a@example.org", tries=2)])
    await ch.close()
    report = only(result.reports)
    assert (report.after_s, report.outcome, report.error) == (6.0, "RETRY", None)
    assert report.detail is not None and f"127.0.0.1:{port}" in report.detail


async def test_a_batch_gets_one_result_per_submission_in_order(mail_server: Callable[..., MailServer]) -> None:
    server = mail_server()
    server.mailbox.refuse("gone@example.org", "550 5.1.1 no such user")
    server.mailbox.refuse("busy@example.org", "450 4.2.1 mailbox busy")
    ch = channel(server.server_config(), retry_seconds=1.0)
    batch = [submission("ok1@example.org"), submission("gone@example.org"), submission("busy@example.org"),
             submission("ok2@example.org"), submission("broken address"), submission("ok3@example.org")]
    results = await ch.submit(batch)
    await ch.close()
    assert [(only(r.reports).outcome, only(r.reports).error) for r in results] == [
        ("DELIVERED", None), ("REJECTED", "EC_INVALID_EMAIL_ADDRESS"), ("RETRY", None), ("DELIVERED", None),
        ("REJECTED", "EC_INVALID_EMAIL_ADDRESS"), ("DELIVERED", None)]
    assert sorted(r.rcpt_tos[0] for r in server.mailbox.received) == [
        "ok1@example.org", "ok2@example.org", "ok3@example.org"]
    for sub, result in zip(batch, results, strict=True):
        for got in server.mailbox.to(sub.address):
            assert got.message["Message-ID"] == result.provider_id


async def test_invalid_sender_or_recipient_is_refused_without_a_connection(
        mail_server: Callable[..., MailServer]) -> None:
    server = mail_server()
    ch = channel(server.server_config())
    results = await ch.submit([submission("a@example.org", sender="InfoSMS"), submission("a@example.org", sender=None),
                               submission("not-an-address"), submission("a@")])
    await ch.close()
    assert [(only(r.reports).outcome, only(r.reports).error) for r in results] == [
        ("UNDELIVERABLE", "EC_SENDER_ADDRESS_INVALID"), ("UNDELIVERABLE", "EC_SENDER_ADDRESS_INVALID"),
        ("REJECTED", "EC_INVALID_EMAIL_ADDRESS"), ("REJECTED", "EC_INVALID_EMAIL_ADDRESS")]
    assert server.accepted == 0


# --- connections -------------------------------------------------------------------------------------


async def test_connections_are_kept_and_reused(mail_server: Callable[..., MailServer]) -> None:
    server = mail_server()
    metrics = Metrics()
    ch = channel(server.server_config(), metrics=metrics, connections_per_server=3)
    first = await ch.submit([submission(f"u{i}@example.org") for i in range(30)])
    opened = server.accepted
    assert 1 <= opened <= 3, "a batch goes out over a few connections, never one per message"
    for _ in range(3):
        more = await ch.submit([submission(f"v{i}@example.org") for i in range(10)])
        assert [only(r.reports).outcome for r in more] == ["DELIVERED"] * 10
    await ch.close()
    assert [only(r.reports).outcome for r in first] == ["DELIVERED"] * 30
    assert len(server.mailbox.received) == 60
    assert server.accepted == opened, "later batches reuse the open connections"
    assert server.mailbox.connections == opened == ch.connections_opened
    label = f"127.0.0.1:{server.port}"
    assert metrics.registry.get_sample_value("omnirelay_smtp_sends_total",
                                             {"server": label, "result": "delivered"}) == 60
    assert metrics.registry.get_sample_value("omnirelay_smtp_connections_total", {"server": label}) == opened


async def test_concurrent_batches_share_the_pool(mail_server: Callable[..., MailServer]) -> None:
    server = mail_server()
    ch = channel(server.server_config(), connections_per_server=2)
    batches = await asyncio.gather(*(ch.submit([submission(f"c{b}.{i}@example.org") for i in range(8)])
                                     for b in range(4)))
    await ch.close()
    assert all(only(r.reports).outcome == "DELIVERED" for batch in batches for r in batch)
    assert len(server.mailbox.received) == 32
    assert server.accepted <= 2


async def test_a_connection_the_server_dropped_is_replaced(mail_server: Callable[..., MailServer]) -> None:
    server = mail_server(timeout=0.3)  # aiosmtpd closes a session idle for 0.3 s
    ch = channel(server.server_config())
    (a,) = await ch.submit([submission("a@example.org")])
    await asyncio.sleep(0.8)
    (b,) = await ch.submit([submission("b@example.org")])
    await ch.close()
    assert [only(a.reports).outcome, only(b.reports).outcome] == ["DELIVERED", "DELIVERED"]
    assert [r.connection for r in server.mailbox.received] == [1, 2]


async def test_a_server_restart_is_survived(mail_server: Callable[..., MailServer]) -> None:
    """The pooled connection dies with the server; the next message opens a new one, with no RETRY."""
    server = mail_server()
    ch = channel(server.server_config())
    (a,) = await ch.submit([submission("a@example.org")])
    server.stop()
    mail_server(server.mailbox, server.port)
    (b,) = await ch.submit([submission("b@example.org")])
    await ch.close()
    assert [only(a.reports).outcome, only(b.reports).outcome] == ["DELIVERED", "DELIVERED"]
    assert len(server.mailbox.received) == 2


async def test_a_421_on_a_pooled_connection_is_retried_on_a_new_one(
        mail_server: Callable[..., MailServer]) -> None:
    """A server ending an idle session answers 421 to the next command: that message goes out over a new
    connection at once. A 421 on a new connection is a 4xx like any other: the step is retried later."""
    server = mail_server()
    ch = channel(server.server_config(), retry_seconds=5.0)
    (a,) = await ch.submit([submission("a@example.org")])
    server.mailbox.refuse("shop@example.com", "421 4.4.2 Idle too long, closing", at="MAIL", times=1)
    (b,) = await ch.submit([submission("b@example.org")])
    assert [only(a.reports).outcome, only(b.reports).outcome] == ["DELIVERED", "DELIVERED"]
    assert [r.connection for r in server.mailbox.received] == [1, 2]

    await ch.close()
    server.mailbox.refuse("shop@example.com", "421 4.3.2 Shutting down", at="MAIL", times=1)
    (c,) = await ch.submit([submission("c@example.org")])
    await ch.close()
    assert only(c.reports) == LaterReport(5.0, "RETRY", detail="421 4.3.2 Shutting down")
    assert len(server.mailbox.received) == 2


async def test_server_is_chosen_by_the_sender_domain(mail_server: Callable[..., MailServer]) -> None:
    default, brand = mail_server(), mail_server()
    ch = channel(default.server_config(), brand.server_config(from_domains=["brand.example"]))
    results = await ch.submit([
        submission("a@example.org", sender="Brand <news@Brand.Example>"),
        submission("b@example.org", sender="someone@other.example"),
        submission("c@example.org", sender="news@brand.example"),
    ])
    await ch.close()
    assert all(only(r.reports).outcome == "DELIVERED" for r in results)
    assert sorted(r.rcpt_tos[0] for r in brand.mailbox.received) == ["a@example.org", "c@example.org"]
    assert [r.rcpt_tos[0] for r in default.mailbox.received] == ["b@example.org"]


async def test_close_says_quit_and_a_closed_channel_has_no_connection(
        mail_server: Callable[..., MailServer]) -> None:
    server = mail_server()
    ch = channel(server.server_config())
    await ch.submit([submission("a@example.org")])
    (client, _), = ch.pools[0]._idle
    await ch.close()
    assert not client.is_connected
    assert ch.pools[0]._idle == []


# --- TLS and AUTH ------------------------------------------------------------------------------------


@dataclass
class Tls:
    server: ssl.SSLContext
    ca_file: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA and a certificate for localhost / 127.0.0.1 that it signed (made with ``cryptography``)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "omnirelay test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return Tls(context, folder / "ca.pem")


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mailer", "sésame".encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


async def test_starttls_with_auth(mail_server: Callable[..., MailServer], tls: Tls,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The submission-port setup: STARTTLS required, then AUTH; the server's CA is trusted through
    ``SSL_CERT_FILE``, as a deployment with a private CA would do it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    server = mail_server(tls_context=tls.server, require_starttls=True, authenticator=_authenticator,
                         auth_required=True)
    good = channel(server.server_config(security="starttls", username="mailer", password="sésame"))
    results = await good.submit([submission("a@example.org"), submission("b@example.org")])
    await good.close()
    assert [only(r.reports).outcome for r in results] == ["DELIVERED", "DELIVERED"]
    assert all(r.tls and r.authenticated for r in server.mailbox.received)

    wrong = channel(server.server_config(security="starttls", username="mailer", password="wrong"))
    (result,) = await wrong.submit([submission("c@example.org")])
    await wrong.close()
    report = only(result.reports)
    assert (report.outcome, report.error) == ("UNDELIVERABLE", "EC_CONFIGURATION_ERROR")
    assert report.detail is not None and report.detail.startswith("535 ")

    plain = channel(server.server_config(security="none"))
    (result,) = await plain.submit([submission("d@example.org")])
    await plain.close()
    report = only(result.reports)
    assert (report.outcome, report.error) == ("UNDELIVERABLE", "EC_CONFIGURATION_ERROR")
    assert report.detail is not None and report.detail.startswith("530 ")
    assert len(server.mailbox.received) == 2


async def test_starttls_required_but_not_offered(mail_server: Callable[..., MailServer]) -> None:
    """The config asks for STARTTLS and the server has none: nothing goes out in clear text."""
    server = mail_server()
    ch = channel(server.server_config(security="starttls"))
    (result,) = await ch.submit([submission("a@example.org")])
    await ch.close()
    report = only(result.reports)
    assert (report.outcome, report.error) == ("UNDELIVERABLE", "EC_CONFIGURATION_ERROR")
    assert report.detail is not None and "STARTTLS" in report.detail
    assert server.mailbox.received == []


async def test_implicit_tls(mail_server: Callable[..., MailServer], tls: Tls,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    server = mail_server(ssl_context=tls.server)
    ch = channel(server.server_config(security="tls"))
    (result,) = await ch.submit([submission("a@example.org")])
    await ch.close()
    assert only(result.reports).outcome == "DELIVERED"
    (got,) = server.mailbox.received
    assert got.tls


async def test_untrusted_certificate_is_not_used(mail_server: Callable[..., MailServer], tls: Tls) -> None:
    """Without the CA the certificate does not verify: nothing is sent, and the step is retried later."""
    server = mail_server(ssl_context=tls.server)
    ch = channel(server.server_config(security="tls"), retry_seconds=2.0)
    (result,) = await ch.submit([submission("a@example.org")])
    await ch.close()
    report = only(result.reports)
    assert (report.outcome, report.after_s) == ("RETRY", 2.0)
    assert report.detail is not None and "CERTIFICATE_VERIFY_FAILED" in report.detail
    assert server.mailbox.received == []
