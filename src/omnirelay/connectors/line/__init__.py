"""LINE over the Messaging API: the push client (:mod:`.connector`) and its webhook receiver (:mod:`.webhooks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnirelay.config import LineConfig
from omnirelay.connectors.registry import ConnectorSpec, Routes, Wiring

if TYPE_CHECKING:
    from omnirelay.connectors.base import Connector


def _build(config: LineConfig, wiring: Wiring) -> Connector:
    from omnirelay.connectors.line.connector import Line

    return Line(config, wiring.metrics, wiring.store)


def _routes(config: LineConfig, wiring: Wiring) -> Routes:
    from omnirelay.connectors.line.webhooks import LineWebhookRoutes

    return LineWebhookRoutes(config, list(wiring.accounts), wiring.store, wiring.metrics)


CONNECTOR = ConnectorSpec(
    name="line",
    channel="LINE",
    section=lambda s: s.line,
    configured=lambda c: bool(c.channels),
    build=_build,
    routes=_routes,
    metrics=("omnirelay_line_sends", "omnirelay_line_webhooks"),
)
