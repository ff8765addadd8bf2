"""SMS over SMPP end to end: a real ``omnirelay serve`` with ``[[smpp.connectors]]`` pointing at the node-smpp
SMSC (``peers/smsc``), from ``POST /omni/1/advanced`` to the final report.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from peers.smsc.harness import PASSWORD, SYSTEM_ID, Smsc

from .conftest import ALADDIN_CONFIG, Gateway
from .test_failover import (
    DELIVERED_TO_HANDSET,
    EC_UNKNOWN_SUBSCRIBER,
    NO_ERROR,
    UNDELIVERABLE_NOT_DELIVERED,
    get_message,
    send,
    short,
    wait_reports,
)

SMS_ONLY = [{"from": "InfoSMS", "channel": "SMS"}]
SMS_THEN_VIBER = [{"from": "InfoSMS", "channel": "SMS"}, {"from": "ViberSender", "channel": "VIBER"}]


def smpp_config(smsc: Smsc, extra: str = "") -> str:
    return ALADDIN_CONFIG + f"""
[limits]
min_validity_seconds = 1

[[smpp.connectors]]
name = "smsc"
system_id = "{SYSTEM_ID}"
password = "{PASSWORD}"
port = {smsc.port}
reconnect_max_seconds = 0.5
{extra}
"""


def wait_bound(smsc: Smsc, binds: int = 1) -> None:
    smsc.wait_for(lambda: len(smsc.records("bind_transceiver")) >= binds, what="the gateway's bind")


def test_delivered_and_undeliverable_through_to_the_final_report(
    make_smsc: Callable[..., Smsc], make_gateway: Callable[..., Gateway]
) -> None:
    smsc = make_smsc(fail="0$")
    gw = make_gateway(smpp_config(smsc))
    key = gw.create_scenario(SMS_ONLY, name="sms")["key"]
    wait_bound(smsc)
    long_text = "Long text for three parts. " * 17  # 459 septets: 3 parts of 153
    (delivered,) = send(gw, ["41793026727"], scenarioKey=key, sms={"text": long_text})
    (failed,) = send(gw, ["41793026720"], scenarioKey=key, sms={"text": "short"})
    reports = {r["messageId"]: r for r in wait_reports(gw, 2, timeout=20)}
    ok, ko = reports[delivered], reports[failed]
    assert ok["channel"] == "SMS" and short(ok["status"]) == DELIVERED_TO_HANDSET and short(ok["error"]) == NO_ERROR
    assert ok["messageCount"] == 3
    assert short(ko["status"]) == UNDELIVERABLE_NOT_DELIVERED and ko["status"]["groupName"] == "UNDELIVERABLE"
    assert short(ko["error"]) == EC_UNKNOWN_SUBSCRIBER  # err:001 of the receipt
    assert ko["messageCount"] == 1
    pdus = smsc.submits()
    assert [p["destination_addr"] for p in pdus] == ["41793026727"] * 3 + ["41793026720"]
    assert [p["registered_delivery"] for p in pdus] == [0, 0, 1, 1]
    assert {(p["source_addr"], p["source_addr_ton"], p["dest_addr_ton"]) for p in pdus} == {("InfoSMS", 5, 1)}
    # the provider ids are stored, namespaced by connector
    ids = sorted(row[0] for row in gw.query("SELECT provider_id FROM submissions"))
    assert ids == sorted(f"smsc:{p['message_id']}" for p in pdus if p["registered_delivery"])


def test_undeliverable_sms_fails_over_to_the_next_step(
    make_smsc: Callable[..., Smsc], make_gateway: Callable[..., Gateway]
) -> None:
    smsc = make_smsc(fail="0$")
    gw = make_gateway(smpp_config(smsc))
    key = gw.create_scenario(SMS_THEN_VIBER, name="sms-viber")["key"]
    wait_bound(smsc)
    (mid,) = send(gw, ["41793026730"], scenarioKey=key, viber={"text": "Hi on Viber"})
    (report,) = wait_reports(gw, 1, timeout=20, messageId=mid)
    assert report["channel"] == "VIBER" and short(report["status"]) == DELIVERED_TO_HANDSET, report
    sms, viber = get_message(gw, mid)["attempts"]
    assert (sms["channel"], sms["state"], sms["status"], sms["error"]) == (
        "SMS",
        "UNDELIVERABLE",
        "UNDELIVERABLE_NOT_DELIVERED",
        "EC_UNKNOWN_SUBSCRIBER",
    )
    assert (viber["channel"], viber["state"]) == ("VIBER", "DELIVERED")
    assert len(smsc.submits()) == 1


def test_gateway_killed_between_submit_and_receipt(
    make_smsc: Callable[..., Smsc], make_gateway: Callable[..., Gateway]
) -> None:
    smsc = make_smsc(dlr_delay_ms=2500)
    gw = make_gateway(smpp_config(smsc))
    key = gw.create_scenario(SMS_ONLY, name="sms")["key"]
    wait_bound(smsc)
    mids = send(gw, ["41793026727", "41793026728"], scenarioKey=key, sms={"text": "before the crash"})
    # the provider ids are stored (the SMSC's receipts are still 2.5 s away): kill the gateway now
    deadline = time.monotonic() + 10
    while len([r for r in gw.query("SELECT provider_id FROM submissions") if r[0]]) < 2:
        assert time.monotonic() < deadline, "submissions not recorded"
        time.sleep(0.02)
    assert not smsc.records("dlr")
    gw.kill9()
    # the receipts fall due while nobody is bound: the SMSC holds them for the next bind
    smsc.wait_for(lambda: len(smsc.records("dlr_queued")) >= 2, what="the receipts to fall due")
    gw.start()
    reports = wait_reports(gw, 2, timeout=20)
    assert sorted(r["messageId"] for r in reports) == sorted(mids)
    assert all(short(r["status"]) == DELIVERED_TO_HANDSET for r in reports)
    assert len(smsc.submits()) == 2  # nothing was submitted again after the restart
    assert len(smsc.records("dlr")) == 2


def test_smsc_throttling_loses_and_duplicates_nothing(
    make_smsc: Callable[..., Smsc], make_gateway: Callable[..., Gateway]
) -> None:
    smsc = make_smsc(tps=40)
    gw = make_gateway(smpp_config(smsc))
    key = gw.create_scenario(SMS_ONLY, name="sms")["key"]
    wait_bound(smsc)
    numbers = [f"4179302{i:04d}" for i in range(1, 301) if not str(i).endswith("0")][:150]
    mids = send(gw, numbers, scenarioKey=key, sms={"text": "burst"})
    reports = wait_reports(gw, len(mids), timeout=60)
    assert sorted(r["messageId"] for r in reports) == sorted(mids)
    assert all(short(r["status"]) == DELIVERED_TO_HANDSET for r in reports)
    accepted = [p["destination_addr"] for p in smsc.submits()]
    assert sorted(accepted) == sorted(numbers)  # each exactly once
    assert smsc.submits(status=0x58), "the SMSC should have throttled some"
    metrics = gw.get("/metrics").text
    assert 'omnirelay_smpp_throttles_total{connector="smsc"}' in metrics
