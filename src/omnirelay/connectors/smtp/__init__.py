"""Email over SMTP (:mod:`.connector`): pooled connections per server, replies mapped to outcomes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnirelay.config import SmtpConfig
from omnirelay.connectors.registry import ConnectorSpec, Wiring

if TYPE_CHECKING:
    from omnirelay.connectors.base import Connector


def _build(config: SmtpConfig, wiring: Wiring) -> Connector:
    from omnirelay.connectors.smtp.connector import SmtpChannel

    return SmtpChannel(config, wiring.metrics)


CONNECTOR = ConnectorSpec(
    name="smtp",
    channel="EMAIL",
    section=lambda s: s.smtp,
    configured=lambda c: bool(c.servers),
    build=_build,
    metrics=("omnirelay_smtp_sends", "omnirelay_smtp_connections"),
)
