"""Mobile-originated deliver_sm decoded: the text by data_coding, and the part it is of a longer message.

Text: data_coding 0 (the SMSC default alphabet, and the connector's ``gsm7_data_coding``) and the GSM classes
(0xF0-0xF3, the general group 0x10-0x13) are GSM 03.38 septets, one per octet (as SMSCs hand them over SMPP),
in the national tables a UDH names; 8 (and the classes 0x18-0x1B) is UCS-2, read as UTF-16BE so surrogate pairs
join; 3 is Latin-1, 1 IA5 (ASCII), 6 Cyrillic and 7 Hebrew (ISO 8859-5 / -8); octet data (2, 4, 0xF4-0xF7) is
read as Latin-1, so no octet is lost. The text is in ``short_message``, or in the ``message_payload`` TLV when
``short_message`` is empty.

Concatenation: a UDH (esm_class UDHI) with element 0x00 (8-bit reference) or 0x08 (16-bit reference), or the
SAR TLVs (``sar_msg_ref_num``, ``sar_total_segments``, ``sar_segment_seqnum``). A single part takes the
``user_message_reference`` TLV as its reference when there is one (the handset's own message reference, so a
subscriber who sends the same text twice is not taken for a resend).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from typing import Final

from omnirelay.connectors.smpp.pdu import DeliverSm
from omnirelay.connectors.smpp.text import gsm7_decode
from omnirelay.domain.inbound import InboundPart

__all__ = ["InboundSink", "decode_mo", "decode_text"]

InboundSink = Callable[[list[InboundPart]], Awaitable[None]]
"""Where connectors hand inbound parts; it returns once they are stored durably (acknowledge the SMSC after)."""

TLV_USER_MESSAGE_REFERENCE: Final = 0x0204
TLV_SAR_MSG_REF_NUM: Final = 0x020C
TLV_SAR_TOTAL_SEGMENTS: Final = 0x020E
TLV_SAR_SEGMENT_SEQNUM: Final = 0x020F
TLV_MESSAGE_PAYLOAD: Final = 0x0424
ESM_UDHI: Final = 0x40

#: SMPP data_coding values (§5.2.19) of one-octet character sets, and their Python codecs.
CODECS: Final = {1: "ascii", 3: "latin-1", 6: "iso8859-5", 7: "iso8859-8"}


def _alphabet(data_coding: int, gsm7_data_coding: int) -> str:
    """``gsm7``, ``ucs2`` or a codec name for a data_coding."""
    if data_coding in (0, gsm7_data_coding):
        return "gsm7"
    if data_coding == 8:
        return "ucs2"
    if data_coding in CODECS:
        return CODECS[data_coding]
    group = data_coding & 0xF0
    if group == 0xF0:  # data coding / message class: bit 2 says 8-bit data, else GSM 7-bit
        return "latin-1" if data_coding & 0x04 else "gsm7"
    if group in (0x00, 0x10, 0x40, 0x50) and data_coding >= 0x10:  # general data coding groups, uncompressed
        return ("gsm7", "latin-1", "ucs2", "latin-1")[(data_coding >> 2) & 0x03]
    if group in (0xC0, 0xD0):  # message waiting indication, GSM 7-bit
        return "gsm7"
    if group == 0xE0:  # message waiting indication, UCS-2
        return "ucs2"
    return "latin-1"  # octet data (2, 4) and what nobody defined: every octet kept


def decode_text(octets: bytes, data_coding: int, gsm7_data_coding: int = 0, locking: int = 0, single: int = 0) -> str:
    """The text of user data octets (without their UDH) in the alphabet ``data_coding`` names."""
    alphabet = _alphabet(data_coding, gsm7_data_coding)
    if alphabet == "gsm7":
        return gsm7_decode(octets, locking, single)
    if alphabet == "ucs2":
        return octets[: len(octets) & ~1].decode("utf-16-be", "replace")
    return octets.decode(alphabet, "replace")


def _int(value: bytes | None) -> int | None:
    if value is None or not value or len(value) > 4:
        return None
    return int.from_bytes(value, "big")


def decode_mo(deliver: DeliverSm, connector: str, gsm7_data_coding: int = 0) -> InboundPart:
    """The part a mobile-originated deliver_sm carries (routing fields left empty). Raises ValueError for user
    data whose header is cut short."""
    octets = deliver.short_message
    if not octets and TLV_MESSAGE_PAYLOAD in deliver.tlvs:
        octets = deliver.tlvs[TLV_MESSAGE_PAYLOAD]
    reference, total, seq = "", 1, 1
    locking = single = 0
    if deliver.esm_class & ESM_UDHI and octets:
        length = octets[0]
        if length + 1 > len(octets):
            raise ValueError(f"UDH of {length} octets in user data of {len(octets)}")
        header, octets = octets[1 : 1 + length], octets[1 + length :]
        offset = 0
        while offset + 2 <= len(header):
            iei, size = header[offset], header[offset + 1]
            value = header[offset + 2 : offset + 2 + size]
            offset += 2 + size
            if len(value) != size:
                raise ValueError(f"UDH element 0x{iei:02X} is cut short")
            if iei == 0x00 and size == 3 and value[1] > 1:
                reference, total, seq = f"8:{value[0]}", value[1], value[2]
            elif iei == 0x08 and size == 4 and value[2] > 1:
                reference, total, seq = f"16:{struct.unpack('>H', value[:2])[0]}", value[2], value[3]
            elif iei == 0x24 and size == 1:
                single = value[0]
            elif iei == 0x25 and size == 1:
                locking = value[0]
    if not reference:
        sar_ref = _int(deliver.tlvs.get(TLV_SAR_MSG_REF_NUM))
        sar_total = _int(deliver.tlvs.get(TLV_SAR_TOTAL_SEGMENTS))
        sar_seq = _int(deliver.tlvs.get(TLV_SAR_SEGMENT_SEQNUM))
        if sar_ref is not None and sar_total is not None and sar_seq is not None and sar_total > 1:
            reference, total, seq = f"sar:{sar_ref}", sar_total, sar_seq
    if not reference:
        umr = _int(deliver.tlvs.get(TLV_USER_MESSAGE_REFERENCE))
        if umr is not None:
            reference = f"umr:{umr}"
    if total > 1 and not 1 <= seq <= total:
        raise ValueError(f"part {seq} of {total}")
    text = decode_text(octets, deliver.data_coding, gsm7_data_coding, locking, single)
    return InboundPart(connector, deliver.source_addr, deliver.destination_addr, reference, total, seq, text)
