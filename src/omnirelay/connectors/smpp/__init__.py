"""SMS over SMPP 3.4: the session and connector (:mod:`.connector`), the PDU codec (:mod:`.pdu`), text encoding
(:mod:`.text`), delivery receipts (:mod:`.receipts`) and mobile-originated messages (:mod:`.inbound`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnirelay.config import SmppConfig
from omnirelay.connectors.registry import ConnectorSpec, Wiring

if TYPE_CHECKING:
    from omnirelay.connectors.base import Connector


def _build(config: SmppConfig, wiring: Wiring) -> Connector:
    from omnirelay.connectors.smpp.connector import SmppChannel

    return SmppChannel(config, wiring.receipts, wiring.store, wiring.metrics, inbound=wiring.inbound_sms)


CONNECTOR = ConnectorSpec(
    name="smpp",
    channel="SMS",
    section=lambda s: s.smpp,
    configured=lambda c: bool(c.connectors),
    build=_build,
    metrics=(
        "omnirelay_smpp_bound",
        "omnirelay_smpp_window_in_use",
        "omnirelay_smpp_submits",
        "omnirelay_smpp_receipts",
        "omnirelay_smpp_throttles",
        "omnirelay_smpp_inbound",
        "omnirelay_smpp_inbound_waiting",
    ),
)
