"""Viber over the REST bot API: the client (:mod:`.connector`) and its callback receiver (:mod:`.webhooks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnirelay.config import ViberConfig
from omnirelay.connectors.registry import ConnectorSpec, Routes, Wiring

if TYPE_CHECKING:
    from omnirelay.connectors.base import Connector


def _build(config: ViberConfig, wiring: Wiring) -> Connector:
    from omnirelay.connectors.viber.connector import ViberBot

    return ViberBot(config, wiring.metrics)


def _routes(config: ViberConfig, wiring: Wiring) -> Routes:
    from omnirelay.connectors.viber.webhooks import ViberWebhookRoutes

    return ViberWebhookRoutes(config, wiring.store, wiring.metrics)


CONNECTOR = ConnectorSpec(
    name="viber",
    channel="VIBER",
    section=lambda s: s.viber,
    configured=lambda c: bool(c.bots),
    build=_build,
    routes=_routes,
    metrics=("omnirelay_viber_sends", "omnirelay_viber_callbacks"),
    settings_errors=True,  # a users_file that cannot be read
)
