"""Facebook Messenger over the Send API: the client (:mod:`.connector`) and its webhook receiver (:mod:`.webhooks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnirelay.config import MessengerConfig
from omnirelay.connectors.registry import ConnectorSpec, Routes, Wiring

if TYPE_CHECKING:
    from omnirelay.connectors.base import Connector


def _build(config: MessengerConfig, wiring: Wiring) -> Connector:
    from omnirelay.connectors.messenger.connector import Messenger

    return Messenger(config, wiring.metrics)


def _routes(config: MessengerConfig, wiring: Wiring) -> Routes:
    from omnirelay.connectors.messenger.webhooks import MessengerWebhookRoutes

    return MessengerWebhookRoutes(config, list(wiring.accounts), wiring.store, wiring.metrics)


CONNECTOR = ConnectorSpec(
    name="messenger",
    channel="FACEBOOK",
    section=lambda s: s.messenger,
    configured=lambda c: bool(c.pages),
    build=_build,
    routes=_routes,
    metrics=("omnirelay_messenger_sends", "omnirelay_messenger_webhooks"),
)
