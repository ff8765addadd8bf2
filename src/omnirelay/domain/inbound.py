"""Inbound (mobile-originated) SMS: the parts a connector receives, the message they make, Infobip's shape of it.

A message arrives as one or more parts. Each part is known by its *group* (connector, sender, our number, the
concatenation reference and the part count: the same for every part of one message) and its sequence number;
a part's *key* adds its text. A key seen again within the dedupe window is a resend of the SMSC (it did not
get our acknowledgement in time, or lost it) and is dropped; anything else is stored. A message is complete
when its group holds every part; parts are joined in sequence order.

Infobip's inbound SMS (``MO_JSON_2``, the webhook and ``GET /sms/1/inbox/reports``) is
``{"results":[{"messageId","from","to","text","cleanText","keyword","receivedAt","smsCount","price"}],
"messageCount","pendingMessageCount"}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from omnirelay.domain.dates import format_ts

__all__ = [
    "Build",
    "InboundMessage",
    "InboundPart",
    "InboundSmsList",
    "InboundSmsPrice",
    "InboundSmsResult",
    "assemble",
    "inbox_body",
    "result_body",
    "split_keyword",
    "webhook_body",
]


@dataclass(frozen=True)
class InboundPart:
    """One received part of an inbound SMS, routed to the account that owns its destination."""

    connector: str
    source: str
    """The sender (the subscriber's number, or an alphanumeric id), as the SMSC gave it."""
    destination: str
    """Our number the subscriber wrote to."""
    reference: str
    """What ties the parts of one message together: ``"8:<ref>"`` / ``"16:<ref>"`` (UDH concatenation),
    ``"sar:<ref>"`` (SAR TLVs); for a single part, ``"umr:<n>"`` (user_message_reference) or empty."""
    total: int
    seq: int
    text: str
    account_id: int = 0
    url: str | None = None
    """The account's ``inbound_url``: where the complete message is pushed (None: pull only)."""

    @property
    def group(self) -> str:
        """The same for every part of one message (and only for them)."""
        return _digest(self.connector, self.source, self.destination, self.reference, str(self.total))

    @property
    def key(self) -> str:
        """The part and its text: seen again within the dedupe window, it is a resend."""
        return _digest(self.group, str(self.seq), self.text)


def _digest(*fields: str) -> str:
    return hashlib.sha256("\x1f".join(fields).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class InboundMessage:
    """A message whose parts are all there (or whose time to wait for the rest ran out)."""

    account_id: int
    url: str | None
    source: str
    destination: str
    text: str
    parts: int
    """How many parts it was received in (fewer than ``total`` for an incomplete one)."""
    total: int
    received_at: float
    """When its first part arrived."""

    @property
    def complete(self) -> bool:
        return self.parts >= self.total


Build = Callable[[InboundMessage], tuple[str, bytes]]
"""Makes a message's id and its result object (the JSON of one entry of ``results``)."""


def assemble(parts: Sequence[tuple[int, str]]) -> str:
    """The text of a message from its (seq, text) parts, in sequence order."""
    return "".join(text for _, text in sorted(parts))


def split_keyword(text: str, keywords: Sequence[str]) -> tuple[str | None, str]:
    """(keyword, clean text): the keyword when the text's first word is one of ``keywords`` (case does not
    matter; given in upper case), else None and the whole text."""
    stripped = text.lstrip()
    word, _, rest = stripped.partition(" ")
    if word and word.upper() in {k.upper() for k in keywords}:
        return word.upper(), rest.strip()
    return None, text


class InboundSmsPrice(msgspec.Struct):
    """What an inbound SMS cost."""

    pricePerMessage: float
    currency: str


class InboundSmsResult(msgspec.Struct):
    """One inbound SMS as Infobip gives it."""

    messageId: str
    from_: str = msgspec.field(name="from")
    to: str = ""
    text: str = ""
    cleanText: str = ""
    keyword: str | None = None
    receivedAt: str = ""
    smsCount: int = 1
    price: InboundSmsPrice | None = None


class InboundSmsList(msgspec.Struct):
    """The webhook body and the answer of ``GET /sms/1/inbox/reports``."""

    results: list[InboundSmsResult]
    messageCount: int
    pendingMessageCount: int


_encoder = msgspec.json.Encoder()


def result_body(
    message_id: str, message: InboundMessage, keywords: Sequence[str], price: float, currency: str
) -> bytes:
    """One entry of ``results`` for ``message``."""
    keyword, clean = split_keyword(message.text, keywords)
    return _encoder.encode(
        InboundSmsResult(
            messageId=message_id,
            from_=message.source,
            to=message.destination,
            text=message.text,
            cleanText=clean,
            keyword=keyword,
            receivedAt=format_ts(message.received_at),
            smsCount=message.parts,
            price=InboundSmsPrice(price, currency),
        )
    )


def webhook_body(result: bytes) -> bytes:
    """The body pushed to the account's ``inbound_url`` for one message."""
    return b'{"results":[' + result + b'],"messageCount":1,"pendingMessageCount":0}'


def inbox_body(results: Sequence[bytes], pending: int) -> bytes:
    """The answer of ``GET /sms/1/inbox/reports``."""
    return (
        b'{"results":['
        + b",".join(results)
        + b'],"messageCount":'
        + str(len(results)).encode()
        + b',"pendingMessageCount":'
        + str(pending).encode()
        + b"}"
    )
