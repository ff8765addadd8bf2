"""The connectors a gateway can run, and what each needs: the composition root builds them from this list.

Each connector package declares one :class:`ConnectorSpec` (in its ``__init__``): which section of the
settings is its own and when that section configures it, how to build the connector from that section alone
(plus the shared services of :class:`Wiring`), its webhook receiver if it has one, and the metrics it adds.
A spec imports its connector's modules only when it builds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from aiohttp import web

    from omnirelay.config import AccountConfig, Settings
    from omnirelay.connectors.base import Connector, ReceiptSink
    from omnirelay.domain.inbound import InboundPart
    from omnirelay.metrics import Metrics
    from omnirelay.store.base import Store


@dataclass(frozen=True)
class Wiring:
    """The shared services a connector may use (never the settings of others)."""

    store: Store
    metrics: Metrics
    receipts: ReceiptSink
    """Where receipts go (stored durably, the engine woken)."""
    inbound_sms: Callable[[list[InboundPart]], Awaitable[None]]
    """Where mobile-originated SMS parts go."""
    accounts: Sequence[AccountConfig]
    """The declared accounts: a receiver finds the account that takes its inbound messages among them."""


class Routes(Protocol):
    """A webhook receiver: it adds its routes to the application."""

    def add_to(self, app: web.Application) -> None: ...


C = TypeVar("C")


@dataclass(frozen=True)
class ConnectorSpec(Generic[C]):
    """What one connector package declares."""

    name: str
    """The settings section (``[smpp]``, ``[push]``, …)."""
    channel: str
    """The OMNI channel it serves (``SMS``, ``PUSH``, …)."""
    section: Callable[[Settings], C]
    """Its own settings, out of the whole."""
    configured: Callable[[C], bool]
    """Whether the section makes the connector run."""
    build: Callable[[C, Wiring], Connector]
    """The connector; ValueError or OSError for settings it cannot run with (:attr:`settings_errors`)."""
    routes: Callable[[C, Wiring], Routes] | None = None
    """Its webhook receiver, added to the API of every process that serves one."""
    metrics: tuple[str, ...] = ()
    """The metric families it adds to ``/metrics`` (``omnirelay_viber_sends``, …)."""
    settings_errors: bool = False
    """Whether a ValueError or OSError of :attr:`build` is a mistake in the settings (a file that cannot be
    read), reported as ``<name>: <why>`` rather than raised."""


def registry() -> tuple[ConnectorSpec[Any], ...]:
    """Every connector, in the order the gateway builds, starts and closes them."""
    from omnirelay.connectors import fcm, line, messenger, smpp, smtp, viber, whatsapp

    return (
        smpp.CONNECTOR,
        whatsapp.CONNECTOR,
        smtp.CONNECTOR,
        viber.CONNECTOR,
        fcm.CONNECTOR,
        messenger.CONNECTOR,
        line.CONNECTOR,
    )
