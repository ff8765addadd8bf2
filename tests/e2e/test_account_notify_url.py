"""The account's own report URL (``notify_url`` of ``[[accounts]]``): reports of requests without ``notifyUrl``
are pushed there; a request's own ``notifyUrl`` wins; ``notify: false`` pushes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

from .conftest import ALADDIN_KEY, BOB_KEY, Gateway, app_auth
from .test_failover import DELIVERED_TO_HANDSET, send, short, take_reports, wait_message
from .test_webhooks import FLOW, Receiver, receivers  # noqa: F401 - the fixture

ALADDIN_SECRET = "aladdin-webhook-secret"


def config(account_url: str) -> str:
    return f"""
[[accounts]]
username = "Aladdin"
password = "open sesame"
api_keys = ["{ALADDIN_KEY}"]
webhook_secret = "{ALADDIN_SECRET}"
notify_url = "{account_url}"

[[accounts]]
username = "bob"
api_keys = ["{BOB_KEY}"]

[limits]
min_validity_seconds = 1
"""


def test_reports_without_notify_url_go_to_the_accounts_url(
    make_gateway: Callable[..., Gateway], receivers: Callable[..., Receiver]  # noqa: F811
) -> None:
    account_hook, own_hook = receivers(), receivers()
    gw = make_gateway(config(account_hook.url("/account")))
    gw.create_scenario(FLOW, default=True)
    bob = app_auth(BOB_KEY)
    gw.create_scenario(FLOW, default=True, auth=bob)

    (plain,) = send(gw, ["41793000010"], callbackData="plain")
    (own,) = send(gw, ["41793000020"], notifyUrl=own_hook.url("/own"))
    (silent,) = send(gw, ["41793000030"], notify=False)
    (bobs,) = send(gw, ["41793000040"], auth=bob)  # bob's account has no URL: nothing is pushed for him
    for mid in (plain, own, silent):
        wait_message(gw, mid)
    wait_message(gw, bobs, auth=bob)

    (pushed,) = account_hook.wait_posts(1)
    assert pushed.path == "/account"
    report = pushed.report
    assert report["messageId"] == plain and report["callbackData"] == "plain", report
    assert short(report["status"]) == DELIVERED_TO_HANDSET and report["channel"] == "WHATSAPP", report
    assert pushed.headers["x-omnirelay-signature"].startswith("sha256="), pushed.headers
    # the pushed report is the one the pull returns
    pulled = {r["messageId"]: r for r in take_reports(gw)}
    assert pulled[plain] == report, (pulled[plain], report)

    (own_post,) = own_hook.wait_posts(1)
    assert own_post.path == "/own" and own_post.report["messageId"] == own, own_post
    time.sleep(1.0)  # what would have been pushed by now
    assert [p.report["messageId"] for p in account_hook.snapshot()] == [plain]
    assert [p.report["messageId"] for p in own_hook.snapshot()] == [own]


def test_a_notify_url_that_is_not_a_url_is_refused_at_start(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(config("ftp://example.com/reports"), start=False)
    result = gw.cli("serve", check=False, timeout=30)
    assert result.returncode != 0, result
    assert "notify_url" in result.stdout + result.stderr, result
