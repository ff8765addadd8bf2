"""SMPP 3.4 PDUs: the few an ESME sends and receives, encoded and decoded with :mod:`struct`.

A PDU is a 16-octet header (command_length, command_id, command_status, sequence_number, all big-endian
unsigned 32-bit) and a body of fixed fields: 1-octet integers and NUL-terminated C-octet strings, then
optional TLVs (tag and length 16-bit each). Only what the gateway needs is here; everything is bytes in,
bytes out, no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "BIND_RECEIVER",
    "BIND_TRANSCEIVER",
    "BIND_TRANSMITTER",
    "DELIVER_SM",
    "ENQUIRE_LINK",
    "GENERIC_NACK",
    "HEADER",
    "MAX_PDU_LENGTH",
    "RESP",
    "SUBMIT_SM",
    "TLV_MESSAGE_STATE",
    "TLV_NETWORK_ERROR_CODE",
    "TLV_RECEIPTED_MESSAGE_ID",
    "UNBIND",
    "DeliverSm",
    "PduError",
    "bind",
    "cstring",
    "parse_deliver_sm",
    "parse_header",
    "pdu",
    "read_cstring",
    "status_name",
    "submit_sm_body",
]

HEADER: Final = struct.Struct(">IIII")
MAX_PDU_LENGTH: Final = 65536
"""Longer than any PDU an SMSC sends; a longer command_length means the stream lost its framing."""

RESP: Final = 0x80000000
GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_TRANSMITTER: Final = 0x00000002
SUBMIT_SM: Final = 0x00000004
DELIVER_SM: Final = 0x00000005
UNBIND: Final = 0x00000006
BIND_TRANSCEIVER: Final = 0x00000009
ENQUIRE_LINK: Final = 0x00000015
ALERT_NOTIFICATION: Final = 0x00000102
DATA_SM: Final = 0x00000103

KNOWN_COMMANDS: Final = frozenset(
    {BIND_RECEIVER, BIND_TRANSMITTER, SUBMIT_SM, DELIVER_SM, UNBIND, BIND_TRANSCEIVER, ENQUIRE_LINK}
    | {c | RESP for c in (BIND_RECEIVER, BIND_TRANSMITTER, SUBMIT_SM, DELIVER_SM, UNBIND, BIND_TRANSCEIVER)}
    | {ENQUIRE_LINK | RESP, GENERIC_NACK, ALERT_NOTIFICATION, DATA_SM, DATA_SM | RESP}
)

TLV_RECEIPTED_MESSAGE_ID: Final = 0x001E
TLV_NETWORK_ERROR_CODE: Final = 0x0423
TLV_MESSAGE_STATE: Final = 0x0427

INTERFACE_VERSION: Final = 0x34

#: command_status values (SMPP 3.4 §5.1.3) by code, for messages that name them.
STATUS_NAMES: Final[dict[int, str]] = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x06: "ESME_RINVPRTFLG",
    0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME",
    0x40: "ESME_RINVDESTFLAG",
    0x42: "ESME_RINVSUBREP",
    0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x53: "ESME_RINVSYSTYP",
    0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL",
    0xC0: "ESME_RINVOPTPARSTREAM",
    0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN",
    0xC3: "ESME_RMISSINGOPTPARAM",
    0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE",
    0xFF: "ESME_RUNKNOWNERR",
}

ESME_ROK: Final = 0x00
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RSYSERR: Final = 0x08
ESME_RMSGQFUL: Final = 0x14
ESME_RTHROTTLED: Final = 0x58
ESME_RX_T_APPN: Final = 0x64
ESME_RX_P_APPN: Final = 0x65


class PduError(ValueError):
    """A PDU that cannot be decoded (truncated, a C-string without its NUL, a bad TLV)."""


def status_name(status: int) -> str:
    """``"ESME_RINVDSTADR (0x0B)"``: the status's name and code, for details and logs."""
    return f"{STATUS_NAMES.get(status, 'unknown status')} (0x{status:02X})"


def cstring(value: str, encoding: str = "latin-1") -> bytes:
    """A C-octet string: the value's octets and a NUL."""
    return value.encode(encoding, "replace") + b"\0"


def read_cstring(body: bytes, offset: int) -> tuple[bytes, int]:
    """The C-octet string at ``offset`` (without its NUL) and the offset after it."""
    end = body.find(b"\0", offset)
    if end < 0:
        raise PduError(f"C-string at offset {offset} has no terminating NUL")
    return body[offset:end], end + 1


def pdu(command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> bytes:
    """A whole PDU: header and body."""
    return HEADER.pack(16 + len(body), command_id, status, sequence) + body


def parse_header(header: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a 16-octet header."""
    length, command_id, status, sequence = HEADER.unpack(header)
    return length, command_id, status, sequence


def bind(system_id: str, password: str, system_type: str) -> bytes:
    """The body of a bind_transmitter / bind_receiver / bind_transceiver (§4.1): no address range."""
    return (
        cstring(system_id)
        + cstring(password)
        + cstring(system_type)
        + bytes((INTERFACE_VERSION, 0, 0))  # interface_version, addr_ton, addr_npi
        + b"\0"  # address_range
    )


def submit_sm_body(
    source: tuple[int, int, bytes],
    destination: bytes,
    esm_class: int,
    validity_period: bytes,
    registered_delivery: int,
    data_coding: int,
    short_message: bytes,
) -> bytes:
    """The body of a submit_sm (§4.4.1). ``source`` is (TON, NPI, address with its NUL); ``destination`` (with
    its NUL) is international (TON 1, NPI 1). ``validity_period`` is the time string without its NUL (empty:
    the SMSC's default)."""
    ton, npi, address = source
    return b"".join(
        (
            b"\0",  # service_type: the SMSC's default
            bytes((ton, npi)),
            address,
            b"\x01\x01",
            destination,
            bytes((esm_class, 0, 0, 0)),  # esm_class, protocol_id, priority_flag, schedule_delivery_time ""
            validity_period,
            bytes((0, registered_delivery, 0, data_coding, 0, len(short_message))),
            short_message,
        )
    )


@dataclass
class DeliverSm:
    """The fields of a deliver_sm (§4.6.1) that a gateway reads."""

    source_addr: str
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def is_receipt(self) -> bool:
        """Whether this is an SMSC delivery receipt (message type 0b0001 in esm_class bits 5-2)."""
        return self.esm_class & 0x3C == 0x04


def parse_deliver_sm(body: bytes) -> DeliverSm:
    """Decode a deliver_sm body (also a data_sm-like body padded with the same fixed fields)."""
    try:
        offset = 0
        _, offset = read_cstring(body, offset)  # service_type
        offset += 2  # source TON, NPI
        source, offset = read_cstring(body, offset)
        offset += 2  # destination TON, NPI
        destination, offset = read_cstring(body, offset)
        esm_class = body[offset]
        offset += 3  # esm_class, protocol_id, priority_flag
        _, offset = read_cstring(body, offset)  # schedule_delivery_time
        _, offset = read_cstring(body, offset)  # validity_period
        offset += 3  # registered_delivery, replace_if_present_flag, data_coding
        data_coding = body[offset - 1]
        offset += 1  # sm_default_msg_id
        length = body[offset]
        offset += 1
        short_message = body[offset : offset + length]
        if len(short_message) != length:
            raise PduError("short_message is cut short")
        offset += length
    except IndexError:
        raise PduError("deliver_sm body is cut short") from None
    tlvs: dict[int, bytes] = {}
    while offset + 4 <= len(body):
        tag, size = struct.unpack_from(">HH", body, offset)
        offset += 4
        value = body[offset : offset + size]
        if len(value) != size:
            raise PduError(f"TLV 0x{tag:04X} is cut short")
        tlvs[tag] = value
        offset += size
    return DeliverSm(
        source.decode("latin-1"), destination.decode("latin-1"), esm_class, data_coding, short_message, tlvs
    )
