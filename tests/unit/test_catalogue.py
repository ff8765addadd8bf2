"""Tests for the Infobip status/error catalogue (omnirelay.domain.catalogue)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import msgspec
import pytest

from omnirelay.domain import catalogue
from omnirelay.domain.catalogue import Error, Status

STATUS_FIELDS = {"groupId", "groupName", "id", "name", "description"}
ERROR_FIELDS = STATUS_FIELDS | {"permanent"}
STATUS_GROUPS = {1: "PENDING", 2: "UNDELIVERABLE", 3: "DELIVERED", 4: "EXPIRED", 5: "REJECTED"}
ERROR_GROUPS = {0: "OK", 1: "HANDSET_ERRORS", 2: "USER_ERRORS", 3: "OPERATOR_ERRORS"}


def _raw() -> dict[str, dict[str, dict[str, Any]]]:
    text = resources.files("omnirelay.domain").joinpath("catalogue.json").read_text(encoding="utf-8")
    data: dict[str, dict[str, dict[str, Any]]] = json.loads(text)
    return data


def test_pending_enroute_matches_wire_example() -> None:
    s = catalogue.PENDING_ENROUTE
    assert s == catalogue.status("PENDING_ENROUTE")
    assert (s.groupId, s.groupName, s.id, s.name) == (1, "PENDING", 7, "PENDING_ENROUTE")
    assert s.description == "Message sent to next instance"


def test_delivered_to_handset() -> None:
    s = catalogue.DELIVERED_TO_HANDSET
    assert (s.groupId, s.groupName, s.id) == (3, "DELIVERED", 5)
    assert s.description == "Message delivered to handset"


def test_other_wire_example_descriptions() -> None:
    s = catalogue.UNDELIVERABLE_NOT_DELIVERED
    assert (s.groupId, s.groupName, s.id, s.description) == (
        2,
        "UNDELIVERABLE",
        9,
        "Message sent not delivered",
    )
    prefix = catalogue.status("REJECTED_PREFIX_MISSING")
    assert (prefix.groupId, prefix.groupName, prefix.id, prefix.description) == (
        5,
        "REJECTED",
        8,
        "Number prefix missing",
    )


def test_exported_status_constants() -> None:
    assert (catalogue.PENDING_ACCEPTED.groupId, catalogue.PENDING_ACCEPTED.id) == (1, 26)
    assert (catalogue.EXPIRED_EXPIRED.groupName, catalogue.EXPIRED_EXPIRED.id) == ("EXPIRED", 15)
    assert (catalogue.REJECTED_DESTINATION.groupName, catalogue.REJECTED_DESTINATION.id) == ("REJECTED", 52)


def test_no_error_is_exact_wire_object() -> None:
    e = catalogue.NO_ERROR
    assert msgspec.json.decode(msgspec.json.encode(e)) == {
        "groupId": 0,
        "groupName": "OK",
        "id": 0,
        "name": "NO_ERROR",
        "description": "No Error",
        "permanent": False,
    }


def test_absent_subscriber_is_transient_handset_error() -> None:
    e = catalogue.EC_ABSENT_SUBSCRIBER_SM
    assert e == catalogue.error("EC_ABSENT_SUBSCRIBER_SM")
    assert (e.groupId, e.groupName, e.id) == (1, "HANDSET_ERRORS", 6)
    assert e.permanent is False
    assert e.description == "Absent Subscriber"


def test_unknown_subscriber_is_permanent() -> None:
    e = catalogue.error("EC_UNKNOWN_SUBSCRIBER")
    assert (e.groupId, e.groupName, e.id) == (1, "HANDSET_ERRORS", 1)
    assert e.permanent is True


def test_expiry_and_cancel_errors() -> None:
    assert catalogue.EC_VALIDITY_EXPIRED.name == "EC_VALIDITY_EXPIRED"
    assert catalogue.EC_VALIDITY_EXPIRED.groupName in ERROR_GROUPS.values()
    assert catalogue.EC_MESSAGE_CANCELED.name == "EC_MESSAGE_CANCELED"
    assert catalogue.EC_MESSAGE_CANCELED.groupName in ERROR_GROUPS.values()


def test_chat_error_is_present() -> None:
    e = catalogue.error("EC_UNKNOWN_USER")
    assert (e.groupId, e.groupName, e.id) == (1, "HANDSET_ERRORS", 7002)


def test_every_entry_has_the_wire_fields() -> None:
    raw = _raw()
    assert set(raw) == {"statuses", "errors"}
    assert raw["statuses"] and raw["errors"]
    for name, entry in raw["statuses"].items():
        assert set(entry) == STATUS_FIELDS, name
        assert entry["name"] == name
        assert STATUS_GROUPS[entry["groupId"]] == entry["groupName"], name
        assert isinstance(entry["id"], int), name
        assert isinstance(entry["description"], str) and entry["description"], name
        assert "\n" not in entry["description"], name
    for name, entry in raw["errors"].items():
        assert set(entry) == ERROR_FIELDS, name
        assert entry["name"] == name
        assert ERROR_GROUPS[entry["groupId"]] == entry["groupName"], name
        assert isinstance(entry["id"], int), name
        assert isinstance(entry["permanent"], bool), name
        assert isinstance(entry["description"], str) and entry["description"], name
        assert "\n" not in entry["description"], name


def test_lookup_round_trips_every_entry() -> None:
    raw = _raw()
    for name, entry in raw["statuses"].items():
        assert catalogue.is_status_name(name)
        assert msgspec.structs.asdict(catalogue.status(name)) == entry
    for name, entry in raw["errors"].items():
        assert catalogue.is_error_name(name)
        assert msgspec.structs.asdict(catalogue.error(name)) == entry


def test_unknown_names_raise_key_error() -> None:
    with pytest.raises(KeyError, match="NOT_A_STATUS"):
        catalogue.status("NOT_A_STATUS")
    with pytest.raises(KeyError, match="NOT_AN_ERROR"):
        catalogue.error("NOT_AN_ERROR")
    assert not catalogue.is_status_name("NOT_A_STATUS")
    assert not catalogue.is_error_name("NOT_AN_ERROR")


def test_status_and_error_namespaces_are_separate() -> None:
    assert catalogue.is_status_name("PENDING_ENROUTE")
    assert not catalogue.is_error_name("PENDING_ENROUTE")
    assert catalogue.is_error_name("NO_ERROR")
    assert not catalogue.is_status_name("NO_ERROR")
    with pytest.raises(KeyError):
        catalogue.error("PENDING_ENROUTE")


def test_structs_are_frozen() -> None:
    assert isinstance(catalogue.PENDING_ENROUTE, Status)
    assert isinstance(catalogue.NO_ERROR, Error)
    with pytest.raises(AttributeError):
        catalogue.PENDING_ENROUTE.id = 99  # type: ignore[misc]


def test_every_description_is_a_short_wire_text_not_a_paragraph() -> None:
    for kind, table in _raw().items():
        for name, entry in table.items():
            text = entry["description"]
            assert text and len(text) <= 60 and "\n" not in text, (kind, name, text)
            assert not text.endswith("."), (kind, name, text)  # a label, as on the wire, not a sentence of docs


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("PENDING_ACCEPTED", "Message sent to next instance"),
        ("PENDING_WAITING_DELIVERY", "Message sent, waiting for delivery report"),
        ("EXPIRED_EXPIRED", "Message expired"),
        ("REJECTED_DESTINATION", "Invalid destination address"),
        ("REJECTED_NETWORK", "Network is forbidden"),
        ("REJECTED_DUPLICATE_MESSAGE_ID", "Rejected duplicate message ID"),
        ("REJECTED_MESSAGE_TOO_LONG", "Rejected message too long"),
        ("UNDELIVERABLE_REJECTED_OPERATOR", "Message rejected by operator"),
    ],
)
def test_status_wire_texts(name: str, text: str) -> None:
    assert catalogue.status(name).description == text


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("EC_UNKNOWN_SUBSCRIBER", "Unknown Subscriber"),
        ("EC_ABSENT_SUBSCRIBER", "Absent Subscriber"),
        ("EC_UNKNOWN_USER", "Unknown User"),
        ("EC_VALIDITY_EXPIRED", "Validity Expired"),
        ("EC_INVALID_PDU_FORMAT", "Invalid PDU Format"),
        ("EC_NNR_NOTRANSLATIONFORTHISSPECIFICADDRESS", "NNR No Translation For This Specific Address"),
    ],
)
def test_error_wire_texts(name: str, text: str) -> None:
    assert catalogue.error(name).description == text
