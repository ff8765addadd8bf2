"""Generate ``src/omnirelay/domain/catalogue.json`` from Infobip's status/error code catalogue.

Run once by a developer when the reference YAML changes::

    pip install pyyaml
    python scripts/gen_catalogue.py [path/to/infobip-status-and-error-codes.yml]

The output is a compact JSON document::

    {"statuses": {NAME: {"groupId", "groupName", "id", "name", "description"}},
     "errors":   {NAME: {"groupId", "groupName", "id", "name", "description", "permanent"}}}

Rules:

* group names are the ones Infobip puts on the wire, chosen by group id whatever the family;
* entries whose ``group_id`` is null are skipped;
* when a name occurs in several families, the "General status codes" / "General error codes"
  family wins; otherwise the first occurrence wins;
* descriptions are Infobip's short wire texts ("Message delivered to handset"), never the table's
  documentation paragraphs: the texts Infobip's answers carry where they are known (``WIRE_DESCRIPTIONS``:
  its API examples, its old status table, answers quoted by integrations); otherwise a text made from the
  name in the style of those texts (``EC_UNKNOWN_SUBSCRIBER`` -> "Unknown Subscriber", ``REJECTED_INVALID_UDH``
  -> "Rejected invalid UDH"); a name whose words run together (``EC_NNR_NOTRANSLATIONFORTHISSPECIFICADDRESS``,
  camel case in Infobip's older tables) is split into the fewest words of the table's own vocabulary;
* ``permanent`` defaults to false when absent.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "infobip-status-and-error-codes.yml"
OUTPUT = ROOT / "src" / "omnirelay" / "domain" / "catalogue.json"

STATUS_GROUP_NAMES: dict[int, str] = {
    1: "PENDING",
    2: "UNDELIVERABLE",
    3: "DELIVERED",
    4: "EXPIRED",
    5: "REJECTED",
}
ERROR_GROUP_NAMES: dict[int, str] = {
    0: "OK",
    1: "HANDSET_ERRORS",
    2: "USER_ERRORS",
    3: "OPERATOR_ERRORS",
}
GENERAL_FAMILIES = {"General status codes", "General error codes"}

# Descriptions Infobip's answers carry on the wire; clients compare against these.
WIRE_DESCRIPTIONS: dict[str, str] = {
    "PENDING_WAITING_DELIVERY": "Message sent, waiting for delivery report",
    "PENDING_ENROUTE": "Message sent to next instance",
    "PENDING_ACCEPTED": "Message sent to next instance",
    "UNDELIVERABLE_REJECTED_OPERATOR": "Message rejected by operator",
    "UNDELIVERABLE_NOT_DELIVERED": "Message sent not delivered",
    "DELIVERED_TO_OPERATOR": "Message delivered to operator",
    "DELIVERED_TO_HANDSET": "Message delivered to handset",
    "EXPIRED_EXPIRED": "Message expired",
    "REJECTED_NETWORK": "Network is forbidden",
    "REJECTED_PREFIX_MISSING": "Number prefix missing",
    "REJECTED_DND": "Destination on DND list",
    "REJECTED_SOURCE": "Invalid Source address",
    "REJECTED_NOT_ENOUGH_CREDITS": "Not enough credits",
    "REJECTED_SENDER": "By Sender",
    "REJECTED_DESTINATION_BLOCKLISTED": "By Destination",
    "REJECTED_PREPAID_PACKAGE_EXPIRED": "Prepaid package expired",
    "REJECTED_DESTINATION_NOT_REGISTERED": "Destination not registered",
    "REJECTED_ROUTE_NOT_AVAILABLE": "Route not available",
    "REJECTED_FLOODING_FILTER": "Rejected flooding",
    "REJECTED_SYSTEM_ERROR": "System error",
    "REJECTED_DUPLICATE_MESSAGE_ID": "Rejected duplicate message ID",
    "REJECTED_INVALID_UDH": "Rejected invalid UDH",
    "REJECTED_MESSAGE_TOO_LONG": "Rejected message too long",
    "REJECTED_DESTINATION": "Invalid destination address",
    "NO_ERROR": "No Error",
    "EC_ABSENT_SUBSCRIBER_SM": "Absent Subscriber",
}

#: Words written in capitals in a text made from a name.
ACRONYMS = frozenset(
    [
        "API",
        "BCC",
        "BSUID",
        "CC",
        "CUG",
        "DF",
        "DLR",
        "DND",
        "DNS",
        "DTMF",
        "GMSC",
        "GSM",
        "HLR",
        "HTTP",
        "ID",
        "IMSI",
        "IP",
        "MMS",
        "MNP",
        "MO",
        "MSC",
        "MT",
        "MTP",
        "MX",
        "NC",
        "NNR",
        "NPI",
        "OTP",
        "OTT",
        "PA",
        "PDU",
        "RCS",
        "SC",
        "SCCP",
        "SM",
        "SME",
        "SMPP",
        "SMS",
        "SMSC",
        "SMTP",
        "SS",
        "SSML",
        "TF",
        "TON",
        "TTL",
        "UA",
        "UDH",
        "URL",
        "USSD",
        "VAS",
        "VP",
        "WA",
        "XUDT",
    ]
)
#: Words of the SS7/MAP error names that the table's descriptions do not use (some misspelt as in the names).
NAME_WORDS = frozenset(
    [
        "abnormal",
        "ac",
        "adequate",
        "app",
        "capacity",
        "cancellation",
        "centre",
        "congestion",
        "context",
        "counter",
        "detected",
        "dialog",
        "encapsulated",
        "equipment",
        "equipped",
        "event",
        "gmsc",
        "hop",
        "incompatibility",
        "invoke",
        "local",
        "maintenance",
        "malfunction",
        "map",
        "memory",
        "msc",
        "nature",
        "node",
        "originating",
        "peer",
        "perform",
        "procedure",
        "processing",
        "protection",
        "realeased",
        "reassembly",
        "remote",
        "ressource",
        "segmentation",
        "sc",
        "sm",
        "smpp",
        "submitted",
        "subsystem",
        "supporting",
        "transaction",
        "translation",
        "transport",
        "unequipped",
        "version",
        "violation",
        "xudt",
    ]
)


def _one_line(text: object) -> str:
    return " ".join(str(text or "").split())


#: The MAP "open refuse" prefix of some error names: an acronym only as their first word.
FIRST_ACRONYMS = frozenset({"OR"})
#: Shorter words are never split (``ACC``, ``ADRESS``).
SHORTEST_SPLIT = 7


def _word(word: str, capitalize: bool, first: bool) -> str:
    if word in ACRONYMS or (first and word in FIRST_ACRONYMS):
        return word
    return word.capitalize() if capitalize else word.lower()


def split_words(word: str, vocabulary: frozenset[str]) -> list[str]:
    """``word`` as the fewest words of ``vocabulary`` that spell it, or itself when none do."""
    lower = word.lower()
    best: list[list[str] | None] = [[]] + [None] * len(lower)
    for end in range(1, len(lower) + 1):
        for start in range(max(0, end - 20), end):
            head = best[start]
            piece = lower[start:end]
            if head is not None and piece in vocabulary and (best[end] is None or len(head) + 1 < len(best[end] or [])):
                best[end] = [*head, piece]
    found = best[len(lower)]
    return [w.upper() for w in found] if found else [word]


def short_text(kind: str, name: str, vocabulary: frozenset[str]) -> str:
    """The short text a status or error answers with (see the module's rules)."""
    if name in WIRE_DESCRIPTIONS:
        return WIRE_DESCRIPTIONS[name]
    words = [w for w in name.split("_") if w]
    if kind == "error" and words[0] == "EC" and len(words) > 1:
        words = words[1:]
    words = [
        part
        for w in words
        for part in (split_words(w, vocabulary) if len(w) >= SHORTEST_SPLIT and w.lower() not in vocabulary else [w])
    ]
    # Infobip's error texts are in title case ("Unknown Subscriber"), its status texts in sentence case
    return " ".join(_word(w, kind == "error" or i == 0, i == 0) for i, w in enumerate(words))


def vocabulary(source: dict[str, Any]) -> frozenset[str]:
    """Every word of the table's descriptions (two letters or more, and "a"), and :data:`NAME_WORDS`."""
    words = {"a", *NAME_WORDS}
    for family in source["families"]:
        for group in family["groups"]:
            for code in group["codes"]:
                text = str(code.get("description") or "").lower()
                words.update(w for w in re.findall(r"[a-z]+", text) if len(w) > 1)
    return frozenset(words)


def build(source: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Build the catalogue mapping from the parsed YAML document."""
    out: dict[str, dict[str, dict[str, Any]]] = {"statuses": {}, "errors": {}}
    # (kind, name) -> whether the stored entry came from a general family
    from_general: dict[tuple[str, str], bool] = {}
    words = vocabulary(source)

    for family in source["families"]:
        is_general = family["family"] in GENERAL_FAMILIES
        for group in family["groups"]:
            group_id = group.get("group_id")
            if group_id is None:
                continue
            kind = group["kind"]
            if kind == "status":
                group_names, table = STATUS_GROUP_NAMES, out["statuses"]
            elif kind == "error":
                group_names, table = ERROR_GROUP_NAMES, out["errors"]
            else:
                raise ValueError(f"unknown kind {kind!r} in family {family['family']!r}")
            group_id = int(group_id)
            if group_id not in group_names:
                raise ValueError(f"no wire group name for {kind} group {group_id} ({family['family']!r})")

            for code in group["codes"]:
                name = str(code["name"])
                key = (kind, name)
                if key in from_general and (from_general[key] or not is_general):
                    continue  # general family wins; otherwise first occurrence wins
                entry: dict[str, Any] = {
                    "groupId": group_id,
                    "groupName": group_names[group_id],
                    "id": int(code["id"]),
                    "name": name,
                    "description": short_text(kind, name, words),
                }
                if kind == "error":
                    entry["permanent"] = bool(code.get("permanent", False))
                table[name] = entry
                from_general[key] = is_general

    for name in WIRE_DESCRIPTIONS:
        if name not in out["statuses"] and name not in out["errors"]:
            raise ValueError(f"wire description override for unknown name {name!r}")
    return out


def main(argv: list[str]) -> int:
    """Read the YAML catalogue and write ``catalogue.json``."""
    source_path = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    with source_path.open(encoding="utf-8") as fh:
        source = yaml.safe_load(fh)
    catalogue = build(source)
    OUTPUT.write_text(
        json.dumps(catalogue, ensure_ascii=False, separators=(",", ":")) + "\n",
        encoding="utf-8",
    )
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(catalogue['statuses'])} statuses, {len(catalogue['errors'])} errors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
