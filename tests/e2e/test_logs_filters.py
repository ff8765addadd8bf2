"""``from``, ``mcc`` and ``mnc`` of ``GET /omni/1/logs`` filter the whole window, not the newest 1,000 messages:
the messages they match here are the oldest of 1,100+, and each filter follows what the entry shows (a message
that failed over is from the later step's sender)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from .conftest import ALADDIN_CONFIG, WHATSAPP_SMS_FLOW, Gateway
from .test_failover import send, wait_message
from .test_reports_logs import ids_of, logs

CONFIG = ALADDIN_CONFIG + r"""
[limits]
min_validity_seconds = 1

[mcc_mnc]
prefixes = { "4179" = "01" }

[[sandbox.rules]]
channel = "WHATSAPP"
to = '\d+7'
outcome = "REJECTED"
"""

OLD_FLOW = [{"from": "OldWA", "channel": "WHATSAPP"}, {"from": "OldSMS", "channel": "SMS"}]
NEWER = 1100


@pytest.fixture(scope="module")
def filled(module_gateways: Callable[..., Gateway]) -> tuple[Gateway, dict[str, list[str]]]:
    """A gateway whose oldest messages are Swiss (MCC 228, MNC 01 by the prefix table) and sent from OldWA (those
    ending in 7 fail over to SMS from OldSMS), followed by 1,100 German ones (MCC 262, no MNC) of the default
    scenario."""
    gw = module_gateways(CONFIG)
    gw.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    old_key = gw.create_scenario(OLD_FLOW)["key"]
    whatsapp = [f"4179000{i:04d}" for i in range(10, 26) if i % 10 != 7]
    failover = [f"4179000{i:04d}" for i in (17, 27, 37, 47)]
    ids = send(gw, whatsapp + failover, scenarioKey=old_key)
    # scheduled for later: not started, so shown (and filtered) as its first step
    later = datetime.fromtimestamp(time.time() + 86400, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    (scheduled,) = send(gw, ["41790009990"], scenarioKey=old_key, sendAt=later)
    for mid in ids:
        wait_message(gw, mid)
    time.sleep(0.05)
    newer = send(gw, [f"49170{i:07d}" for i in range(NEWER)])
    wait_message(gw, newer[-1], timeout=60)  # the engine has taken them all up
    groups = {
        "whatsapp": ids[: len(whatsapp)],
        "failover": ids[len(whatsapp) :],
        "scheduled": [scheduled],
        "newer": newer,
    }
    return gw, groups


def found(gw: Gateway, **query: Any) -> list[dict[str, Any]]:
    return logs(gw, urlencode({"limit": 1000, **query}))


def test_from_finds_the_oldest_messages(filled: tuple[Gateway, dict[str, list[str]]]) -> None:
    gw, groups = filled
    entries = found(gw, **{"from": "OldWA"})
    assert set(ids_of(entries)) == {*groups["whatsapp"], *groups["scheduled"]}, entries
    assert all(e["from"] == "OldWA" for e in entries), entries
    failed_over = found(gw, **{"from": "OldSMS"})
    assert set(ids_of(failed_over)) == set(groups["failover"]), failed_over
    assert all(e["from"] == "OldSMS" and e["channel"] == "SMS" for e in failed_over), failed_over
    # newest first, as without a filter
    assert ids_of(entries)[0] == groups["scheduled"][0]
    assert ids_of(found(gw, **{"from": "OldWA", "limit": 3})) == ids_of(entries)[:3]


def test_mcc_and_mnc_find_the_oldest_messages(filled: tuple[Gateway, dict[str, list[str]]]) -> None:
    gw, groups = filled
    swiss = {*groups["whatsapp"], *groups["failover"], *groups["scheduled"]}
    for query in ({"mcc": "228"}, {"mnc": "01"}, {"mcc": "228", "mnc": "01"}):
        entries = found(gw, **query)
        assert set(ids_of(entries)) == swiss, (query, entries)
        assert all(e["mccMnc"] == "22801" for e in entries), entries
    assert found(gw, mcc="228", mnc="02") == []
    assert found(gw, mcc="262", mnc="01") == []
    german = found(gw, mcc="262")
    assert len(german) == 1000 and set(ids_of(german)) <= set(groups["newer"]), len(german)
    assert all(e["mccMnc"] == "262" for e in german)


def test_filters_combine(filled: tuple[Gateway, dict[str, list[str]]]) -> None:
    gw, groups = filled
    entries = found(gw, **{"from": "OldWA", "mcc": "228", "generalStatus": "DELIVERED", "channel": "WHATSAPP"})
    assert set(ids_of(entries)) == set(groups["whatsapp"]), entries
    assert found(gw, **{"from": "OldWA", "mcc": "262"}) == []


@pytest.mark.parametrize(("query", "param"), [("mcc=22", "mcc"), ("mcc=2280", "mcc"), ("mnc=1", "mnc"),
                                              ("mnc=x1", "mnc")])
def test_malformed_network_codes_are_400(filled: tuple[Gateway, dict[str, list[str]]], query: str,
                                         param: str) -> None:
    gw, _ = filled
    r = gw.get(f"/omni/1/logs?{query}")
    assert r.status == 400, r
    assert list(r.validation()) == [param], r
