"""Rate limits per account and endpoint: past its limit a request gets Infobip's 429 ``TOO_MANY_REQUESTS`` with
``Retry-After``, and nothing of it is done."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from .conftest import ACCOUNTS_CONFIG, ALADDIN_KEY, BOB_KEY, WHATSAPP_SMS_FLOW, Gateway, app_auth

pytestmark = pytest.mark.timeout(120)

TOO_MANY = {"requestError": {"serviceException": {"messageId": "TOO_MANY_REQUESTS", "text": "Too many requests"}}}


def create(gw: Gateway, auth: Any = None) -> Any:
    kw = {} if auth is None else {"auth": auth}
    return gw.post("/omni/1/scenarios", {"flow": WHATSAPP_SMS_FLOW}, **kw)


def scenario_count(gw: Gateway) -> int:
    return int(gw.query("SELECT count(*) FROM scenarios")[0][0])


def test_scenario_creation_past_its_limit_is_429_until_the_retry_after_passed(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ACCOUNTS_CONFIG + '[rate_limits]\n"POST /omni/1/scenarios" = "3/12s"\n')
    for _ in range(3):
        assert create(gw).status == 200
    r = create(gw)
    assert r.status == 429, r
    assert r.json == TOO_MANY
    assert r.headers["retry-after"] == "4"  # 12 s / 3: when the bucket surely holds a token again
    assert scenario_count(gw) == 3, "the refused request created nothing"
    assert create(gw, app_auth(BOB_KEY)).status == 200, "limits are per account"
    assert gw.get("/omni/1/scenarios").status == 200, "and per endpoint"

    time.sleep(int(r.headers["retry-after"]))
    assert create(gw).status == 200
    assert create(gw).status == 429


def test_documented_default_limit_of_scenario_creation(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ACCOUNTS_CONFIG)
    for n in range(20):  # Infobip: 20 requests per 10 minutes
        assert create(gw).status == 200, n
    r = create(gw)
    assert r.status == 429 and r.json == TOO_MANY
    assert r.headers["retry-after"] == "30"


def test_a_limit_can_be_switched_off(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ACCOUNTS_CONFIG + '[rate_limits]\n"POST /omni/1/scenarios" = "off"\n')
    for n in range(25):
        assert create(gw).status == 200, n


def test_a_send_past_its_limit_stores_nothing(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ACCOUNTS_CONFIG + '[rate_limits]\n"POST /omni/1/advanced" = "2/1h"\n')
    gw.create_scenario(default=True)
    body = {"destinations": [{"to": {"phoneNumber": "41793026720"}}], "sms": {"text": "hi"}}
    assert gw.post("/omni/1/advanced", body).status == 200
    assert gw.post("/omni/1/advanced", body).status == 200
    r = gw.post("/omni/1/advanced", {**body, "destinations": [{"to": {"phoneNumber": "41793026720"},
                                                              "messageId": "refused-1"}]})
    assert r.status == 429 and r.json == TOO_MANY
    assert r.headers["retry-after"] == "1800"
    assert gw.query("SELECT count(*) FROM messages WHERE message_id = ?", "refused-1")[0][0] == 0
    assert gw.post("/omni/1/text", {"destinations": [{"to": {"phoneNumber": "41793026720"}}],
                                    "text": "hi"}).status == 200, "the legacy send has its own budget"


async def test_many_concurrent_sends_under_the_default_limit_all_pass(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ACCOUNTS_CONFIG)
    gw.create_scenario(default=True)
    body = {"destinations": [{"to": {"phoneNumber": "41793026720"}}], "sms": {"text": "hi"}}
    async with gw.session() as session:

        async def one() -> int:
            async with session.post("/omni/1/advanced", json=body) as r:
                return r.status

        statuses = await asyncio.gather(*(one() for _ in range(400)))
    assert set(statuses) == {200}


def test_an_unknown_endpoint_in_rate_limits_stops_the_start(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ACCOUNTS_CONFIG + '[rate_limits]\n"POST /omni/1/scenario" = "3/1m"\n', start=False)
    with pytest.raises(RuntimeError) as failed:
        gw.start()
    assert "[rate_limits]" in str(failed.value) and "POST /omni/1/scenario'" in str(failed.value)
    assert "Traceback" not in str(failed.value)


def test_a_malformed_limit_stops_the_start(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ACCOUNTS_CONFIG + '[rate_limits]\n"POST /omni/1/scenarios" = "3 a minute"\n',
                               start=False)
    with pytest.raises(RuntimeError) as failed:
        gw.start()
    assert "rate_limits" in str(failed.value)
    assert "Traceback" not in str(failed.value)


def test_the_client_commands_wait_out_a_429(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(ACCOUNTS_CONFIG + '[rate_limits]\n"GET /omni/1/logs" = "1/2s"\n')
    assert gw.get("/omni/1/logs").status == 200
    assert gw.get("/omni/1/logs").status == 429
    done = gw.cli("logs", "--json", "--url", gw.url, "--api-key", ALADDIN_KEY, locate=False, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
