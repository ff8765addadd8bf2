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
* a handful of descriptions are replaced by the short texts Infobip's own API examples show on the
  wire (real clients compare against them); all descriptions are collapsed to a single line;
* ``permanent`` defaults to false when absent.
"""

from __future__ import annotations

import json
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

# Descriptions Infobip's own API examples show on the wire; clients compare against these.
WIRE_DESCRIPTIONS: dict[str, str] = {
    "PENDING_ENROUTE": "Message sent to next instance",
    "DELIVERED_TO_HANDSET": "Message delivered to handset",
    "UNDELIVERABLE_NOT_DELIVERED": "Message sent not delivered",
    "REJECTED_PREFIX_MISSING": "Number prefix missing",
    "NO_ERROR": "No Error",
    "EC_ABSENT_SUBSCRIBER_SM": "Absent Subscriber",
}


def _one_line(text: object) -> str:
    return " ".join(str(text or "").split())


def build(source: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Build the catalogue mapping from the parsed YAML document."""
    out: dict[str, dict[str, dict[str, Any]]] = {"statuses": {}, "errors": {}}
    # (kind, name) -> whether the stored entry came from a general family
    from_general: dict[tuple[str, str], bool] = {}

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
                    "description": _one_line(WIRE_DESCRIPTIONS.get(name, code.get("description"))),
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
    print(
        f"wrote {OUTPUT.relative_to(ROOT)}: "
        f"{len(catalogue['statuses'])} statuses, {len(catalogue['errors'])} errors"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
