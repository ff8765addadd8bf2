"""WhatsApp over Meta's Cloud API: the client (:mod:`.connector`) and its webhook receiver (:mod:`.webhooks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnirelay.config import WhatsAppConfig
from omnirelay.connectors.registry import ConnectorSpec, Routes, Wiring

if TYPE_CHECKING:
    from omnirelay.connectors.base import Connector


def _build(config: WhatsAppConfig, wiring: Wiring) -> Connector:
    from omnirelay.connectors.whatsapp.connector import WhatsAppCloud

    return WhatsAppCloud(config, wiring.metrics)


def _routes(config: WhatsAppConfig, wiring: Wiring) -> Routes:
    from omnirelay.connectors.whatsapp.webhooks import WhatsAppWebhookRoutes

    return WhatsAppWebhookRoutes(config, list(wiring.accounts), wiring.store, wiring.metrics)


CONNECTOR = ConnectorSpec(
    name="whatsapp",
    channel="WHATSAPP",
    section=lambda s: s.whatsapp,
    configured=lambda c: bool(c.senders),
    build=_build,
    routes=_routes,
    metrics=("omnirelay_whatsapp_sends", "omnirelay_whatsapp_webhooks"),
)
