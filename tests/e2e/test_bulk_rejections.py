"""One bad destination never sinks a bulk: Infobip sends the rest and answers the bad one with its own status in
its place. Refused destinations are in the logs as rejected and never get a report or a webhook (both stores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .conftest import ALADDIN_CONFIG, ALADDIN_KEY, Gateway, GatewayPool
from .test_failover import get_message, take_reports, uid, wait_reports

CONFIG = ALADDIN_CONFIG + "\n[limits]\nmin_validity_seconds = 1\n"
SMS_FLOW = [{"from": "InfoSMS", "channel": "SMS"}]


def number(i: int) -> str:
    return f"4179{i:06d}0"  # ends in 0: the sandbox delivers it


def logs(gw: Gateway, **query: Any) -> list[dict[str, Any]]:
    r = gw.get("/omni/1/logs?" + urlencode({"limit": 1000, **query}))
    assert r.status == 200, r
    results: list[dict[str, Any]] = r.json["results"]
    return results


def test_bad_destinations_are_rejected_in_place_and_the_rest_delivered(make_gateway: GatewayPool) -> None:
    gw = make_gateway(CONFIG)
    key = gw.create_scenario(SMS_FLOW, name="sms")["key"]
    taken = uid("taken")
    first = gw.post("/omni/1/advanced", {"scenarioKey": key, "sms": {"text": "earlier"},
                                         "destinations": [{"messageId": taken, "to": {"phoneNumber": number(999)}}]})
    assert first.status == 200, first
    take_reports(gw)  # whatever of it is there already; it is not part of the bulk below

    destinations: list[dict[str, Any]] = [{"messageId": uid("m"), "to": {"phoneNumber": number(i)}} for i in range(60)]
    expected = {i: "PENDING_ENROUTE" for i in range(60)}
    bad = {
        5: ({"messageId": uid("bad"), "to": {"phoneNumber": "not-a-number"}}, "REJECTED_DESTINATION"),
        17: ({"messageId": uid("bad"), "to": {"phoneNumber": "0791234567"}}, "REJECTED_PREFIX_MISSING"),
        23: ({"messageId": uid("bad"), "to": {"emailAddress": "jane@example.com"}}, "MISSING_TO"),
        30: ({"messageId": uid("bad")}, "MISSING_TO"),
        41: ({"messageId": destinations[40]["messageId"], "to": {"phoneNumber": number(41)}},
             "REJECTED_DUPLICATE_MESSAGE_ID"),
        45: ({"messageId": taken, "to": {"phoneNumber": number(45)}}, "REJECTED_DUPLICATE_MESSAGE_ID"),
        52: ({"to": {"phoneNumber": "+41 79 302 67 27"}}, "REJECTED_DESTINATION"),
    }
    for i, (dest, status) in bad.items():
        destinations[i] = dest
        expected[i] = status
    bulk = uid("bulk")
    r = gw.post("/omni/1/advanced", {"scenarioKey": key, "bulkId": bulk, "sms": {"text": "Hello"},
                                     "notifyUrl": "http://127.0.0.1:9/never", "destinations": destinations})
    assert r.status == 200, r
    assert r.json["bulkId"] == bulk
    messages = r.json["messages"]
    assert [m["status"]["name"] for m in messages] == [expected[i] for i in range(60)]
    for i, m in enumerate(messages):
        assert m["status"]["groupName"] == ("PENDING" if i not in bad else "REJECTED"), m
        if "messageId" in destinations[i]:
            assert m["messageId"] == destinations[i]["messageId"]
        assert m["to"] == destinations[i].get("to", {})

    good = {messages[i]["messageId"] for i in range(60) if i not in bad}
    refused = {messages[i]["messageId"]: expected[i] for i in (5, 17, 23, 30, 52)}  # stored under their own ids
    reports = wait_reports(gw, len(good), bulkId=bulk)
    assert {rep["messageId"] for rep in reports} == good
    assert all(rep["status"]["name"] == "DELIVERED_TO_HANDSET" for rep in reports)

    in_logs = {e["messageId"]: e["status"]["name"] for e in logs(gw, bulkId=bulk)}
    assert {mid: in_logs[mid] for mid in refused} == refused
    assert {mid for mid, s in in_logs.items() if s == "DELIVERED_TO_HANDSET"} == good
    assert len(in_logs) == len(good) + len(refused)  # the duplicates are answered, not stored
    rejected_logs = logs(gw, bulkId=bulk, generalStatus="REJECTED")
    assert {e["messageId"] for e in rejected_logs} == set(refused)
    assert all("price" not in e for e in rejected_logs)  # nothing was sent, nothing is charged

    one = get_message(gw, messages[5]["messageId"])
    assert one["phase"] == "DONE" and one["status"]["name"] == "REJECTED_DESTINATION"
    assert one["attempts"] == []
    assert one["history"][-1]["text"].startswith("rejected: destinations[5].to.phoneNumber")
    # the message that already had the taken id is untouched
    assert get_message(gw, taken)["to"] == {"phoneNumber": number(999)}

    assert take_reports(gw, bulkId=bulk) == []  # never a report for a refused destination
    refused_rows = ",".join("?" * len(refused))
    assert gw.query(f"SELECT COUNT(*) FROM jobs j JOIN messages m ON m.id = j.message"
                    f" WHERE m.message_id IN ({refused_rows})", *refused)[0][0] == 0
    webhooks = gw.query("SELECT COUNT(*) FROM outbox")[0][0]
    assert webhooks == len(good)  # one report webhook for each delivered message, none for a refused one


def test_a_request_of_only_bad_destinations_is_answered_200(gateway: Gateway) -> None:
    key = gateway.create_scenario(SMS_FLOW, name="sms only")["key"]
    r = gateway.post("/omni/1/advanced", {"scenarioKey": key, "sms": {"text": "Hi"},
                                          "destinations": [{"to": {"phoneNumber": "12"}}]})
    assert r.status == 200, r
    (m,) = r.json["messages"]
    assert m["status"]["name"] == "REJECTED_DESTINATION"
    assert "bulkId" not in r.json
    assert get_message(gateway, m["messageId"])["status"]["name"] == "REJECTED_DESTINATION"


def test_replayed_request_with_a_bad_destination_answers_the_same(gateway: Gateway) -> None:
    key = gateway.create_scenario(SMS_FLOW, name="sms only")["key"]
    body = {"scenarioKey": key, "sms": {"text": "Hi"},
            "destinations": [{"messageId": uid("ok"), "to": {"phoneNumber": number(1)}},
                             {"messageId": uid("bad"), "to": {"phoneNumber": "nope"}}]}
    first = gateway.post("/omni/1/advanced", body)
    assert [m["status"]["name"] for m in first.json["messages"]] == ["PENDING_ENROUTE", "REJECTED_DESTINATION"]
    again = gateway.post("/omni/1/advanced", body)
    assert again.json == first.json
    ids = [d["messageId"] for d in body["destinations"]]
    assert gateway.query("SELECT COUNT(*) FROM messages WHERE message_id IN (?, ?)", *ids)[0][0] == 2


def test_text_endpoint_rejects_per_destination_too(gateway: Gateway) -> None:
    key = gateway.create_scenario(SMS_FLOW, name="sms only")["key"]
    r = gateway.post("/omni/1/text", {"scenarioKey": key, "text": "Hi",
                                      "destinations": [{"to": {"phoneNumber": number(2)}}, {"to": {}}]})
    assert r.status == 200, r
    assert [m["status"]["name"] for m in r.json["messages"]] == ["PENDING_ENROUTE", "MISSING_TO"]


def test_send_with_a_bad_number_sends_the_rest(make_gateway: GatewayPool, tmp_path: Path) -> None:
    gw = make_gateway(CONFIG)
    gw.create_scenario(SMS_FLOW, name="sms", default=True)
    done = gw.cli("send", "--to", number(1), "--to", "4179-typo", "--to", number(2), "--text", "hi", "--wait", "10",
                  "--url", gw.url, "--api-key", ALADDIN_KEY, locate=False, check=False)
    summary = done.stdout + done.stderr
    assert done.returncode == 1, summary  # one of them was not delivered
    assert "2 accepted, 1 rejected, 3 finished" in summary, summary
    assert "REJECTED_DESTINATION" in summary and "DELIVERED_TO_HANDSET" in summary
    # a CSV file is checked whole first (issue 15): its bad row is named by its line, and nothing is sent
    csv_file = tmp_path / "to.csv"
    csv_file.write_text(f"to\n{number(3)}\n4179-typo\n{number(4)}\n")
    done = gw.cli("send", "--csv", str(csv_file), "--text", "hi", "--url", gw.url, "--api-key", ALADDIN_KEY,
                  locate=False, check=False)
    assert done.returncode == 1 and f"{csv_file}:3: to '4179-typo'" in done.stderr, done
    assert gw.query("SELECT count(*) FROM messages") == [(3,)]

