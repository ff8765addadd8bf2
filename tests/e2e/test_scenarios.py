"""``/omni/1/scenarios``: create, list, read, replace and delete, with the rules a flow must meet."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import WHATSAPP_SMS_FLOW, Gateway, app_auth

UNKNOWN_KEY = "0123456789ABCDEF0123456789ABCDEF"


def assert_bad(r: Any, field: str) -> None:
    assert r.status == 400, r
    exc = r.error()
    assert exc["messageId"] == "BAD_REQUEST", exc
    assert field in r.validation(), r
    assert all(isinstance(m, str) and m for m in r.validation()[field]), r


def assert_not_found(r: Any) -> None:
    assert r.status == 404, r
    exc = r.error()
    assert exc["messageId"] == "NOT_FOUND", exc
    assert exc["text"], exc


# --- create and read ---------------------------------------------------------------------------------------


def test_create_returns_the_scenario_with_a_new_key(gateway: Gateway) -> None:
    r = gateway.post("/omni/1/scenarios", {"name": "one", "flow": WHATSAPP_SMS_FLOW, "default": False})
    assert r.status == 200, r
    body = r.json
    assert re.fullmatch(r"[0-9A-F]{32}", body["key"]), body
    assert body == {"key": body["key"], "name": "one", "flow": WHATSAPP_SMS_FLOW, "default": False,
                    "defaultScenario": False}
    other = gateway.create_scenario(name="one")
    assert other["key"] != body["key"]


def test_create_without_default_is_not_default(gateway: Gateway) -> None:
    created = gateway.create_scenario([{"channel": "SMS", "from": "InfoSMS"}], name="plain")
    assert created["default"] is False


def test_create_without_name_still_has_a_name(gateway: Gateway) -> None:
    r = gateway.post("/omni/1/scenarios", {"flow": [{"channel": "SMS"}]})
    assert r.status == 200, r
    assert isinstance(r.json["name"], str) and r.json["name"]


def test_get_returns_what_create_returned(gateway: Gateway) -> None:
    created = gateway.create_scenario(name="readable")
    r = gateway.get(f"/omni/1/scenarios/{created['key']}")
    assert r.status == 200, r
    assert r.json == created


def test_step_without_from_is_allowed_for_sms(gateway: Gateway) -> None:
    created = gateway.create_scenario([{"channel": "SMS"}], name="no sender")
    assert created["flow"] == [{"channel": "SMS"}]


def test_default_scenario_spelling_is_accepted_and_both_are_emitted(gateway: Gateway) -> None:
    """The old official clients send ``defaultScenario`` (and ``"key": null``) and read it back; answers say
    ``default`` as documented and ``defaultScenario`` beside it."""
    body = {"key": None, "name": "legacy client", "flow": [{"channel": "SMS", "from": "InfoSMS"}],
            "defaultScenario": True}
    r = gateway.post("/omni/1/scenarios", body)
    assert r.status == 200, r
    assert r.json["default"] is True and r.json["defaultScenario"] is True
    read = gateway.get(f"/omni/1/scenarios/{r.json['key']}").json
    assert read["default"] is True and read["defaultScenario"] is True
    listed = gateway.get("/omni/1/scenarios?isDefault=true").json["scenarios"]
    assert [(s["default"], s["defaultScenario"]) for s in listed] == [(True, True)]
    r = gateway.put(f"/omni/1/scenarios/{r.json['key']}", {**body, "defaultScenario": False})
    assert r.status == 200, r
    assert r.json["default"] is False and r.json["defaultScenario"] is False


def test_vk_alias_becomes_vkontakte(gateway: Gateway) -> None:
    created = gateway.create_scenario([{"channel": "VK"}, {"channel": "SMS"}], name="vk")
    assert [s["channel"] for s in created["flow"]] == ["VKONTAKTE", "SMS"]
    assert [s["channel"] for s in gateway.get(f"/omni/1/scenarios/{created['key']}").json["flow"]] == [
        "VKONTAKTE", "SMS"]


def test_vk_and_vkontakte_together_are_a_duplicate(gateway: Gateway) -> None:
    r = gateway.post("/omni/1/scenarios", {"flow": [{"channel": "VKONTAKTE"}, {"channel": "VK"}]})
    assert_bad(r, "flow[1].channel")


# --- list ---------------------------------------------------------------------------------------------------


def test_list_paging_and_default_filter(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    made = [gw.create_scenario([{"channel": "SMS"}], name=f"s{i}", default=(i == 3)) for i in range(5)]
    keys = [s["key"] for s in made]

    listed = gw.get("/omni/1/scenarios")
    assert listed.status == 200, listed
    assert set(listed.json) == {"scenarios"}
    assert [s["key"] for s in listed.json["scenarios"]] == keys  # creation order
    assert listed.json["scenarios"][3] == made[3]

    pages = [gw.get(f"/omni/1/scenarios?limit=2&page={p}").json["scenarios"] for p in range(4)]
    assert [[s["key"] for s in page] for page in pages] == [keys[0:2], keys[2:4], keys[4:5], []]
    assert [s["key"] for s in gw.get("/omni/1/scenarios?limit=3").json["scenarios"]] == keys[:3]
    assert gw.get("/omni/1/scenarios?limit=0").json["scenarios"] == []

    only_default = gw.get("/omni/1/scenarios?isDefault=true").json["scenarios"]
    assert [s["key"] for s in only_default] == [keys[3]]
    assert only_default[0]["default"] is True
    others = gw.get("/omni/1/scenarios?isDefault=false").json["scenarios"]
    assert [s["key"] for s in others] == keys[:3] + keys[4:]
    # the old docs' spelling of the filter
    assert [s["key"] for s in gw.get("/omni/1/scenarios?default=true").json["scenarios"]] == [keys[3]]
    # paging applies to the filtered list
    assert [s["key"] for s in gw.get("/omni/1/scenarios?isDefault=false&limit=2&page=1").json["scenarios"]] == [
        keys[2], keys[4]]


def test_list_default_limit_is_100(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    for i in range(105):
        gw.create_scenario([{"channel": "SMS"}], name=f"n{i}")
    assert len(gw.get("/omni/1/scenarios").json["scenarios"]) == 100
    assert len(gw.get("/omni/1/scenarios?page=1").json["scenarios"]) == 5


@pytest.mark.parametrize(("query", "field"), [
    ("limit=abc", "limit"),
    ("limit=-1", "limit"),
    ("limit=1001", "limit"),
    ("page=-1", "page"),
    ("page=x", "page"),
    ("isDefault=maybe", "isDefault"),
])
def test_list_rejects_bad_parameters(gateway: Gateway, query: str, field: str) -> None:
    assert_bad(gateway.get(f"/omni/1/scenarios?{query}"), field)


@pytest.mark.parametrize("page", ["9223372036854775807", "99999999999999999999", "999999999999999999"])
def test_list_with_a_huge_page_is_not_a_server_error(gateway: Gateway, page: str) -> None:
    """A page past the end is an empty list (or a 400 naming page), never a 500."""
    r = gateway.get(f"/omni/1/scenarios?page={page}&limit=100")
    assert r.status in (200, 400), r
    if r.status == 200:
        assert r.json == {"scenarios": []}
    else:
        assert_bad(r, "page")


# --- replace ----------------------------------------------------------------------------------------------


def test_put_replaces_name_flow_and_default(gateway: Gateway) -> None:
    created = gateway.create_scenario(name="before", default=False)
    new = {"name": "after", "flow": [{"channel": "SMS", "from": "Other"}, {"channel": "VIBER", "from": "V"}],
           "default": True}
    r = gateway.put(f"/omni/1/scenarios/{created['key']}", new)
    assert r.status == 200, r
    assert r.json == {"key": created["key"], **new, "defaultScenario": True}
    assert gateway.get(f"/omni/1/scenarios/{created['key']}").json == r.json


def test_put_without_default_keeps_the_current_flag(gateway: Gateway) -> None:
    created = gateway.create_scenario(name="stays default", default=True)
    r = gateway.put(f"/omni/1/scenarios/{created['key']}", {"name": "renamed", "flow": [{"channel": "SMS"}]})
    assert r.status == 200, r
    assert r.json["default"] is True
    assert gateway.get(f"/omni/1/scenarios/{created['key']}").json["default"] is True


def test_invalid_put_changes_nothing(gateway: Gateway) -> None:
    created = gateway.create_scenario(name="kept")
    r = gateway.put(f"/omni/1/scenarios/{created['key']}", {"name": "x", "flow": []})
    assert_bad(r, "flow")
    r = gateway.put(f"/omni/1/scenarios/{created['key']}", {"name": "x", "flow": [{"channel": "WHATSAPP"}]})
    assert_bad(r, "flow[0].from")
    assert gateway.get(f"/omni/1/scenarios/{created['key']}").json == created


# --- the default scenario ----------------------------------------------------------------------------------


def test_a_new_default_unsets_the_old(gateway: Gateway) -> None:
    first = gateway.create_scenario(name="first default", default=True)
    second = gateway.create_scenario(name="second default", default=True)
    assert gateway.get(f"/omni/1/scenarios/{first['key']}").json["default"] is False
    assert gateway.get(f"/omni/1/scenarios/{second['key']}").json["default"] is True
    defaults = gateway.get("/omni/1/scenarios?isDefault=true").json["scenarios"]
    assert [s["key"] for s in defaults] == [second["key"]]
    # and through PUT
    r = gateway.put(f"/omni/1/scenarios/{first['key']}", {"name": "first again", "flow": first["flow"],
                                                          "default": True})
    assert r.status == 200, r
    assert gateway.get(f"/omni/1/scenarios/{second['key']}").json["default"] is False
    defaults = gateway.get("/omni/1/scenarios?isDefault=true").json["scenarios"]
    assert [s["key"] for s in defaults] == [first["key"]]


def test_send_without_scenario_key_uses_the_current_default(gateway: Gateway) -> None:
    email_only = {"name": "email", "flow": [{"channel": "EMAIL", "from": "noreply@example.com"}], "default": True}
    sms_only = {"name": "sms", "flow": [{"channel": "SMS", "from": "InfoSMS"}], "default": True}
    send = {"destinations": [{"to": {"phoneNumber": "41793026727"}}], "sms": {"text": "t"}, "email": {"text": "t"}}

    assert gateway.post("/omni/1/scenarios", email_only).status == 200
    r = gateway.post("/omni/1/advanced", send)
    assert r.status == 200, r  # the e-mail scenario needs an e-mail address: this destination is refused
    assert r.json["messages"][0]["status"]["name"] == "MISSING_TO"

    assert gateway.post("/omni/1/scenarios", sms_only).status == 200
    r = gateway.post("/omni/1/advanced", send)
    assert r.status == 200, r


def test_deleting_the_default_leaves_no_default(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    only = gw.create_scenario(default=True)
    assert gw.delete(f"/omni/1/scenarios/{only['key']}").status == 204
    assert gw.get("/omni/1/scenarios?isDefault=true").json == {"scenarios": []}
    r = gw.post("/omni/1/advanced", {"destinations": [{"to": {"phoneNumber": "41793026727"}}], "sms": {"text": "t"}})
    assert_bad(r, "scenarioKey")


# --- delete --------------------------------------------------------------------------------------------------


def test_delete(gateway: Gateway) -> None:
    created = gateway.create_scenario(name="doomed")
    r = gateway.delete(f"/omni/1/scenarios/{created['key']}")
    assert r.status == 204, r
    assert r.body == b""
    assert_not_found(gateway.get(f"/omni/1/scenarios/{created['key']}"))
    assert_not_found(gateway.delete(f"/omni/1/scenarios/{created['key']}"))
    assert created["key"] not in {s["key"] for s in gateway.get("/omni/1/scenarios?limit=1000").json["scenarios"]}
    r = gateway.post("/omni/1/advanced", {"scenarioKey": created["key"], "sms": {"text": "t"},
                                          "destinations": [{"to": {"phoneNumber": "41793026727"}}]})
    assert_bad(r, "scenarioKey")


# --- 404 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_unknown_key_is_404_in_the_envelope(gateway: Gateway, method: str) -> None:
    body = {"name": "x", "flow": [{"channel": "SMS"}]} if method == "PUT" else None
    r = gateway.request(method, f"/omni/1/scenarios/{UNKNOWN_KEY}", body)
    assert_not_found(r)
    assert r.headers["content-type"].startswith("application/json")


def test_put_on_unknown_key_does_not_create_it(gateway: Gateway) -> None:
    gateway.put(f"/omni/1/scenarios/{UNKNOWN_KEY}", {"name": "x", "flow": [{"channel": "SMS"}]})
    assert_not_found(gateway.get(f"/omni/1/scenarios/{UNKNOWN_KEY}"))


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "empty", "flow": []}, "flow"),
    ({"name": "no flow"}, "flow"),
    ({"name": "null flow", "flow": None}, "flow"),
    ({"name": "flow not a list", "flow": "SMS"}, "flow"),
    ({"flow": [{"channel": "TELEGRAM"}]}, "flow[0].channel"),
    ({"flow": [{"channel": "SMS"}, {"channel": "sms"}]}, "flow[1].channel"),
    ({"flow": [{"from": "InfoSMS"}]}, "flow[0].channel"),  # a missing field is named by its own path
    ({"flow": [{"channel": "SMS"}, {"channel": "SMS", "from": "x"}]}, "flow[1].channel"),
    ({"flow": [{"channel": "SMS"}, {"channel": "VIBER", "from": "v"}, {"channel": "SMS"}]}, "flow[2].channel"),
    ({"flow": [{"channel": "WHATSAPP"}, {"channel": "SMS"}]}, "flow[0].from"),
    ({"flow": [{"channel": "SMS"}, {"channel": "WHATSAPP", "from": "   "}]}, "flow[1].from"),
    ({"flow": [{"channel": "VIBER"}]}, "flow[0].from"),
    ({"flow": [{"channel": "EMAIL", "from": "not an address"}]}, "flow[0].from"),
    ({"flow": [{"channel": "SMS", "from": 42}]}, "flow[0].from"),
    ({"name": "x" * 201, "flow": [{"channel": "SMS"}]}, "name"),
    ({"name": 7, "flow": [{"channel": "SMS"}]}, "name"),
    ({"flow": [{"channel": "SMS"}], "default": "yes"}, "default"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_invalid_scenarios_name_the_field(gateway: Gateway, body: dict[str, Any], field: str) -> None:
    before = gateway.get("/omni/1/scenarios?limit=1000").json["scenarios"]
    assert_bad(gateway.post("/omni/1/scenarios", body), field)
    assert gateway.get("/omni/1/scenarios?limit=1000").json["scenarios"] == before


def test_name_of_200_characters_is_fine(gateway: Gateway) -> None:
    assert gateway.create_scenario([{"channel": "SMS"}], name="n" * 200)["name"] == "n" * 200


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"[]", b"null"], ids=["empty", "truncated", "text",
                                                                                "array", "null"])
def test_malformed_scenario_body_is_400(gateway: Gateway, body: bytes) -> None:
    r = gateway.post("/omni/1/scenarios", body)
    assert r.status == 400, r
    assert r.error()["messageId"] == "BAD_REQUEST"
    assert r.validation(), r


def test_xml_body_is_validated_like_json(gateway: Gateway) -> None:
    r = gateway.post("/omni/1/scenarios", b"<scenario><flow/></scenario>", headers={"Content-Type": "application/xml"})
    assert r.status == 400, r
    assert "flow" in r.validation()


def test_json_without_content_type_is_read(gateway: Gateway) -> None:
    r = gateway.post("/omni/1/scenarios", b'{"flow":[{"channel":"SMS"}]}', headers={"Content-Type": "text/plain"})
    assert r.status == 200, r


def test_scenarios_of_other_accounts_do_not_count_for_duplicates(gateway: Gateway) -> None:
    """Sanity of scoping: bob can create the very same flow Aladdin has."""
    gateway.create_scenario(name="same")
    gateway.create_scenario(name="same", auth=app_auth("b0b0b0b0" * 8))
