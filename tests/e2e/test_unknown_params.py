"""A query parameter an endpoint does not know is a 400 naming it: a misspelled filter (``bulkid``) must not
widen what a call reads, and above all not make ``GET /omni/1/reports`` take every pending report."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import ALADDIN_CONFIG, WHATSAPP_SMS_FLOW, Gateway, Response
from .test_failover import send, take_reports, uid, wait_message


@pytest.fixture
def gw(make_gateway: Callable[..., Gateway]) -> Gateway:
    gateway = make_gateway(ALADDIN_CONFIG + "\n[limits]\nmin_validity_seconds = 1\n")
    gateway.create_scenario(WHATSAPP_SMS_FLOW, default=True)
    return gateway


def assert_names(r: Response, param: str) -> None:
    assert r.status == 400, r
    error = r.error()
    assert error["messageId"] == "BAD_REQUEST", r
    assert list(r.validation()) == [param], r
    assert f"'{param}'" in error["text"], r


def test_misspelled_report_filter_takes_nothing(gw: Gateway) -> None:
    mine, other = uid("mine"), uid("other")
    (a,) = send(gw, ["41790000010"], bulkId=mine)
    (b,) = send(gw, ["41790000020"], bulkId=other)
    wait_message(gw, a)
    wait_message(gw, b)

    assert_names(gw.get(f"/omni/1/reports?bulkid={mine}"), "bulkid")
    assert_names(gw.get(f"/omni/1/reports?bulkId={mine}&limt=1"), "limt")

    # both reports are still there for whoever collects them
    assert [r["messageId"] for r in take_reports(gw, bulkId=other)] == [b]
    assert [r["messageId"] for r in take_reports(gw, bulkId=mine)] == [a]


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/omni/1/logs?bulkid=x", "bulkid"),
        ("/omni/1/logs?limit=5&sender=InfoSMS", "sender"),
        ("/omni/1/logs?messageId=a&messageIds=b", "messageIds"),
        ("/omni/1/scenarios?isdefault=true", "isdefault"),
        ("/omni/1/scenarios?size=5", "size"),
        ("/omni/1/messages/some-id?verbose=1", "verbose"),
        ("/omni/1/scenarios/some-key?expand=flow", "expand"),
    ],
)
def test_unknown_parameter_of_a_get_endpoint_is_400(gw: Gateway, path: str, param: str) -> None:
    assert_names(gw.get(path), param)


def test_known_parameters_still_work(gw: Gateway) -> None:
    (a,) = send(gw, ["41790000030"])
    wait_message(gw, a)
    for path in (
        f"/omni/1/logs?messageId={a}&limit=1&from=WhatsAppSender&to=41790000030&generalStatus=DELIVERED"
        "&channel=WHATSAPP&mcc=228&sentSince=2020-01-01T00:00:00.000%2B0000",
        "/omni/1/scenarios?isDefault=true&limit=5&page=0",
        "/omni/1/scenarios?default=true",
        f"/omni/1/reports?messageId={a}&channel=WHATSAPP&limit=1",
    ):
        r = gw.get(path)
        assert r.status == 200, (path, r)
