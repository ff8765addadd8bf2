"""SMPP delivery receipts read tolerantly, and SMPP answers mapped to OMNI outcomes and Infobip errors.

A receipt is a deliver_sm with esm_class message type 0b0001. Its short_message usually carries SMPP 3.4
Appendix B text, ``id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD
err:EEE text:...``, but SMSCs differ: fields go missing (Jasmin sends no ``sub``/``dlvrd``/``text``),
dates have seconds or not, case varies. The TLVs ``receipted_message_id`` (0x001E) and ``message_state``
(0x0427) win over the text when both are present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from omnirelay.connectors.smpp.pdu import (
    ESME_RMSGQFUL,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    ESME_RX_T_APPN,
    TLV_MESSAGE_STATE,
    TLV_NETWORK_ERROR_CODE,
    TLV_RECEIPTED_MESSAGE_ID,
    DeliverSm,
)
from omnirelay.domain.delivery import Receipt
from omnirelay.domain.lifecycle import Outcome

__all__ = [
    "MESSAGE_STATES",
    "RETRY_STATUSES",
    "STATS",
    "THROTTLE_STATUSES",
    "ParsedReceipt",
    "normalise_id",
    "parse_receipt",
    "parse_receipt_text",
    "receipt_for",
    "submit_error",
]

#: ``stat:`` values -> the OMNI outcome they end a step with; None = intermediate (the step goes on).
STATS: Final[dict[str, Outcome | None]] = {
    "DELIVRD": Outcome.DELIVERED,
    "UNDELIV": Outcome.UNDELIVERABLE,
    "EXPIRED": Outcome.EXPIRED,
    "REJECTD": Outcome.REJECTED,
    "DELETED": Outcome.UNDELIVERABLE,  # deleted at the SMSC (cancelled by an operator): it will not arrive
    "UNKNOWN": Outcome.UNDELIVERABLE,  # the SMSC gave up tracking it: treat as not delivered, so failover goes on
    "SKIPPED": Outcome.UNDELIVERABLE,  # SMPP 5
    "ACCEPTD": None,
    "ENROUTE": None,
}

#: message_state (§5.2.28) -> the ``stat:`` word with the same meaning.
MESSAGE_STATES: Final[dict[int, str]] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
    9: "SKIPPED",
}

#: Receipt ``err:`` codes are, on most SMSCs, the GSM MAP error of the last delivery attempt; Infobip's
#: handset errors carry the same numbers.
MAP_ERRORS: Final[dict[int, str]] = {
    1: "EC_UNKNOWN_SUBSCRIBER",
    2: "EC_UNKNOWN_BASE_STATION",
    5: "EC_UNIDENTIFIED_SUBSCRIBER",
    6: "EC_ABSENT_SUBSCRIBER_SM",
    7: "EC_UNKNOWN_EQUIPMENT",
    8: "EC_ROAMING_NOT_ALLOWED",
    9: "EC_ILLEGAL_SUBSCRIBER",
    10: "EC_BEARER_SERVICE_NOT_PROVISIONED",
    11: "EC_TELESERVICE_NOT_PROVISIONED",
    12: "EC_ILLEGAL_EQUIPMENT",
    13: "EC_CALL_BARRED",
    15: "EC_CUG_REJECT",
    20: "EC_SS_INCOMPATIBILITY",
    21: "EC_FACILITY_NOT_SUPPORTED",
    24: "EC_NO_RADIO_RESOURCE_AVAILABLE",
    27: "EC_ABSENT_SUBSCRIBER",
    31: "EC_SUBSCRIBER_BUSY_FOR_MT_SMS",
    32: "EC_SM_DELIVERY_FAILURE",
    33: "EC_MESSAGE_WAITING_LIST_FULL",
    34: "EC_SYSTEM_FAILURE",
    35: "EC_DATA_MISSING",
    36: "EC_UNEXPECTED_DATA_VALUE",
    51: "EC_RESOURCE_LIMITATION",
    71: "EC_UNKNOWN_ALPHABET",
    255: "EC_UNKNOWN_ERROR",
}

#: submit_sm_resp statuses that mean "not now": back off the bind and submit the same PDU again.
THROTTLE_STATUSES: Final = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})
#: Transient failures: the step is submitted again later (RETRY) when no part of it went out.
RETRY_STATUSES: Final = frozenset({ESME_RSYSERR, ESME_RX_T_APPN})

#: submit_sm_resp status -> the Infobip error a refusal carries.
SUBMIT_ERRORS: Final[dict[int, str]] = {
    0x01: "EC_MSG_TEXT_TOO_LONG",  # ESME_RINVMSGLEN
    0x0A: "EC_INVALID_SOURCE_ADDRESS",  # ESME_RINVSRCADR
    0x48: "EC_INVALID_SOURCE_ADDRESS",  # ESME_RINVSRCTON
    0x49: "EC_INVALID_SOURCE_ADDRESS",  # ESME_RINVSRCNPI
    0x0B: "EC_INVALID_DESTINATION_ADDRESS",  # ESME_RINVDSTADR
    0x50: "EC_INVALID_DESTINATION_ADDRESS",  # ESME_RINVDSTTON
    0x51: "EC_INVALID_DESTINATION_ADDRESS",  # ESME_RINVDSTNPI
    0x02: "EC_INVALID_PDU_FORMAT",  # ESME_RINVCMDLEN
    0x03: "EC_INVALID_PDU_FORMAT",  # ESME_RINVCMDID
    0x43: "EC_INVALID_PDU_FORMAT",  # ESME_RINVESMCLASS
    0x61: "EC_INVALID_PDU_FORMAT",  # ESME_RINVSCHED
    0x62: "EC_INVALID_PDU_FORMAT",  # ESME_RINVEXPIRY
    0xC0: "EC_INVALID_PDU_FORMAT",
    0xC1: "EC_INVALID_PDU_FORMAT",
    0xC2: "EC_INVALID_PDU_FORMAT",
    0xC3: "EC_INVALID_PDU_FORMAT",
    0xC4: "EC_INVALID_PDU_FORMAT",
}
SUBMIT_ERROR_DEFAULT: Final = "EC_NOTSUBMITTEDTOGMSC"


def submit_error(status: int) -> str:
    """The Infobip error name for a submit_sm_resp that refused a message."""
    return SUBMIT_ERRORS.get(status, SUBMIT_ERROR_DEFAULT)


def normalise_id(raw: str) -> str:
    """An SMSC message id as the gateway keys it: trimmed, lower case, without leading zeros.

    Applied to submit_sm_resp ids and receipt ids alike, so ``"00A1F"`` and ``"a1f"`` meet. (An SMSC that
    answers in decimal but receipts in hex needs a connector option this does not guess.)
    """
    value = raw.strip().strip("\0").strip().lower()
    return value.lstrip("0") or ("0" if value else "")


_TEXT_FIELD: Final = re.compile(r"(?i)\b(id|sub|dlvrd|submit date|done date|stat|err)\s*:\s*(\S*)")


def parse_receipt_text(text: str) -> dict[str, str]:
    """The fields of receipt text, keys in lower case (``id``, ``sub``, ``dlvrd``, ``submit date``,
    ``done date``, ``stat``, ``err``, ``text``); missing fields are absent, unknown words ignored."""
    fields: dict[str, str] = {}
    head = text
    match = re.search(r"(?i)\btext\s*:", text)
    if match:
        head = text[: match.start()]
        fields["text"] = text[match.end() :]
    for key, value in _TEXT_FIELD.findall(head):
        fields.setdefault(key.lower(), value)
    return fields


@dataclass(frozen=True)
class ParsedReceipt:
    """What a delivery receipt says, TLVs preferred over the text."""

    message_id: str
    """Normalised (:func:`normalise_id`); empty when the receipt names none."""
    stat: str
    """The ``stat:`` word (``DELIVRD``, ``UNDELIV``, …), upper case; empty when unknown."""
    err: str
    """The raw ``err:`` value, or the network_error_code TLV as ``type:code``; empty when absent."""


def _decode(deliver: DeliverSm) -> str:
    if deliver.data_coding & 0x0F == 8:
        return deliver.short_message.decode("utf-16-be", "replace")
    # Receipt text is ASCII in every SMSC default alphabet (GSM 03.38 agrees on letters, digits, ':' and space).
    return deliver.short_message.decode("latin-1")


def parse_receipt(deliver: DeliverSm) -> ParsedReceipt:
    """Read a receipt's id, state and error from its TLVs and text."""
    fields = parse_receipt_text(_decode(deliver))
    raw_id = deliver.tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
    message_id = normalise_id(raw_id.decode("latin-1") if raw_id is not None else fields.get("id", ""))
    stat = fields.get("stat", "").upper()
    state = deliver.tlvs.get(TLV_MESSAGE_STATE)
    if state and state[0] in MESSAGE_STATES:
        stat = MESSAGE_STATES[state[0]]
    err = fields.get("err", "")
    network = deliver.tlvs.get(TLV_NETWORK_ERROR_CODE)
    if not err and network is not None and len(network) == 3:
        err = f"{network[0]}:{int.from_bytes(network[1:], 'big')}"
    return ParsedReceipt(message_id, stat, err)


def _error_name(err: str) -> str | None:
    code = err.rsplit(":", 1)[-1]
    if not code.isdigit():
        return None
    return MAP_ERRORS.get(int(code))


def receipt_for(parsed: ParsedReceipt, connector: str) -> Receipt | None:
    """The :class:`Receipt` for a final receipt, None for an intermediate one (ENROUTE, ACCEPTD) or one
    without id or with a state nobody knows (logged by the caller)."""
    if not parsed.message_id or parsed.stat not in STATS:
        return None
    outcome = STATS[parsed.stat]
    if outcome is None:
        return None
    error = None if outcome == Outcome.DELIVERED else _error_name(parsed.err)
    detail = f"stat:{parsed.stat}" + (f" err:{parsed.err}" if parsed.err else "")
    return Receipt(
        channel="SMS", provider_id=f"{connector}:{parsed.message_id}", outcome=outcome, error=error, detail=detail
    )
