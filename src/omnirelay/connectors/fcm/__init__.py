"""Push notifications over FCM HTTP v1 (:mod:`.connector`), with the service account's OAuth2 tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnirelay.config import PushConfig
from omnirelay.connectors.registry import ConnectorSpec, Wiring

if TYPE_CHECKING:
    from omnirelay.connectors.base import Connector


def _build(config: PushConfig, wiring: Wiring) -> Connector:
    from omnirelay.connectors.fcm.connector import FcmPush

    return FcmPush(config, wiring.metrics)


CONNECTOR = ConnectorSpec(
    name="push",
    channel="PUSH",
    section=lambda s: s.push,
    configured=lambda c: bool(c.apps),
    build=_build,
    metrics=("omnirelay_fcm_sends", "omnirelay_fcm_token_requests"),
    settings_errors=True,  # a service account key that cannot be read
)
