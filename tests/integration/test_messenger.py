"""The Messenger connector against the fake Send API on loopback (tests/integration/fakes/messenger.py).

The fake refuses what Meta's Send API reference refuses (the first tests prove it does), so every send the
connector makes must come back with the fake's 200 and a mid of its own; the Graph errors the connector must
map are either the fake's own verdicts (an unknown PSID, a user who blocked the page, a wrong token) or queued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from omnirelay.config import MessengerConfig, MessengerPageConfig
from omnirelay.connectors.messenger.connector import Messenger
from omnirelay.domain.delivery import Submission
from omnirelay.metrics import Metrics
from tests.integration.fakes.messenger import APP_SECRET, PAGE_ID, PAGE_TOKEN, FakeMessenger, graph_error

SENDER = "MyPage"
PSID = "6783957751646370"


def page(base_url: str, **kw: Any) -> MessengerPageConfig:
    fields: dict[str, Any] = {"sender": SENDER, "page_id": PAGE_ID, "page_access_token": PAGE_TOKEN,
                              "app_secret": APP_SECRET, "verify_token": "v", "base_url": base_url, **kw}
    return MessengerPageConfig(**fields)


def submission(facebook: dict[str, Any], to: str = PSID, n: int = 1, tries: int = 1,
               sender: str | None = SENDER) -> Submission:
    return Submission(message=n, step=0, account_id=1, message_id=f"m{n}", channel="FACEBOOK", sender=sender,
                      address=to, content={"facebook": facebook}, validity_s=60.0, tries=tries)


@pytest.fixture
def fake() -> Iterator[FakeMessenger]:
    f = FakeMessenger()
    f.start()
    f.add_user(PSID)
    yield f
    f.stop()


@pytest.fixture
async def messenger(fake: FakeMessenger) -> AsyncIterator[Messenger]:
    m = Messenger(MessengerConfig([page(fake.url)]), Metrics())
    yield m
    await m.close()


# --- the fake does enforce the documented shapes -------------------------------------------------------


async def raw_send(fake: FakeMessenger, body: dict[str, Any], token: str = PAGE_TOKEN) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.url}/v23.0/{PAGE_ID}/messages", json=body,
                     headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        return r.status, await r.json()


async def test_the_fake_refuses_what_the_send_api_refuses(fake: FakeMessenger) -> None:
    good = {"recipient": {"id": PSID}, "messaging_type": "UPDATE", "message": {"text": "hi"}}
    assert (await raw_send(fake, good))[0] == 200
    status, answer = await raw_send(fake, {**good, "messaging_type": None})
    assert status == 400 and answer["error"]["code"] == 100 and "messaging_type" in answer["error"]["message"]
    status, answer = await raw_send(fake, {**good, "message": {"text": "hi", "attachment": {}}})
    assert status == 400 and "exactly one of text and attachment" in answer["error"]["message"]
    status, answer = await raw_send(fake, {**good, "messaging_type": "MESSAGE_TAG"})
    assert status == 400 and "tag" in answer["error"]["message"]
    status, answer = await raw_send(fake, good, token="wrong")
    assert status == 400 and answer["error"]["code"] == 190


# --- mapping --------------------------------------------------------------------------------------------

KINDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "text": ({"text": "Your order has shipped"}, {"text": "Your order has shipped"}),
    "text by type": ({"type": "TEXT", "text": "Hi"}, {"text": "Hi"}),
    "image": ({"type": "IMAGE", "url": "https://e.com/a.png", "text": "not sent"},
              {"attachment": {"type": "image", "payload": {"url": "https://e.com/a.png", "is_reusable": False}}}),
    "audio": ({"type": "AUDIO", "url": "https://e.com/a.mp3"},
              {"attachment": {"type": "audio", "payload": {"url": "https://e.com/a.mp3", "is_reusable": False}}}),
    "video": ({"type": "VIDEO", "url": "https://e.com/a.mp4"},
              {"attachment": {"type": "video", "payload": {"url": "https://e.com/a.mp4", "is_reusable": False}}}),
    "file": ({"type": "FILE", "url": "https://e.com/a.pdf"},
             {"attachment": {"type": "file", "payload": {"url": "https://e.com/a.pdf", "is_reusable": False}}}),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_kind_is_sent_as_the_send_api_wants_it(kind: str, messenger: Messenger,
                                                          fake: FakeMessenger) -> None:
    facebook, message = KINDS[kind]
    (result,) = await messenger.submit([submission(facebook)])
    (send,) = fake.sends
    assert send.status == 200, send.answer
    assert send.json == {"recipient": {"id": PSID}, "messaging_type": "UPDATE", "message": message}
    assert send.headers["Authorization"] == f"Bearer {PAGE_TOKEN}"
    assert result.provider_id == f"{PSID}:{send.mid}" and not result.reports


async def test_a_page_with_a_message_tag_sends_outside_the_24_hour_window(fake: FakeMessenger) -> None:
    m = Messenger(MessengerConfig([page(fake.url, message_tag="ACCOUNT_UPDATE")]))
    try:
        (result,) = await m.submit([submission({"text": "Your password was changed"})])
    finally:
        await m.close()
    assert fake.sends[0].json["messaging_type"] == "MESSAGE_TAG" and fake.sends[0].json["tag"] == "ACCOUNT_UPDATE"
    assert result.provider_id is not None


async def test_content_that_cannot_be_sent_is_refused_without_a_request(messenger: Messenger,
                                                                        fake: FakeMessenger) -> None:
    results = await messenger.submit([submission({"type": "IMAGE"}), submission({}, n=2),
                                      submission({"type": "CAROUSEL", "text": "x"}, n=3)])
    assert [(r.reports[0].outcome, r.reports[0].error) for r in results] == [("REJECTED", "EC_BAD_REQUEST")] * 3
    assert "facebook.url" in (results[0].reports[0].detail or "")
    assert fake.sends == []


async def test_an_unknown_page_is_a_sender_error(messenger: Messenger, fake: FakeMessenger) -> None:
    (result,) = await messenger.submit([submission({"text": "hi"}, sender="OtherPage")])
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_SENDER_NOT_REGISTERED")
    assert fake.sends == []


async def test_a_step_without_from_uses_the_only_page(messenger: Messenger) -> None:
    (result,) = await messenger.submit([submission({"text": "hi"}, sender=None)])
    assert result.provider_id is not None


# --- Graph errors ----------------------------------------------------------------------------------------


async def test_an_unknown_psid_is_not_a_user(messenger: Messenger, fake: FakeMessenger) -> None:
    (result,) = await messenger.submit([submission({"text": "hi"}, to="1111111111")])
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user, report.after_s) == (
        "REJECTED", "EC_UNKNOWN_USER", True, 0.0)
    assert "2018001" in (report.detail or "") and "No matching user found" in (report.detail or "")


async def test_a_user_who_blocked_the_page_is_not_a_user(messenger: Messenger, fake: FakeMessenger) -> None:
    fake.blocked.add("2222")
    (result,) = await messenger.submit([submission({"text": "hi"}, to="2222")])
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user) == ("REJECTED", "EC_UNKNOWN_USER", True)
    assert "551" in (report.detail or "")


@pytest.mark.parametrize(("error", "tries", "after_s"), [
    (graph_error(613, "Calls to this api have exceeded the rate limit."), 1, 1.0),
    (graph_error(4, "Application request limit reached", status=403), 3, 4.0),
    (graph_error(32, "Page request limit reached", status=403), 2, 2.0),
    (graph_error(1200, "Temporary send message failure. Please try again later", status=500), 1, 1.0),
])
async def test_throttling_and_temporary_failures_are_tried_again(
        error: tuple[int, dict[str, Any]], tries: int, after_s: float, messenger: Messenger,
        fake: FakeMessenger) -> None:
    fake.fail_next(*error)
    (result,) = await messenger.submit([submission({"text": "hi"}, tries=tries)])
    assert (result.reports[0].outcome, result.reports[0].after_s) == ("RETRY", after_s)


async def test_a_5xx_without_a_graph_error_is_tried_again(messenger: Messenger, fake: FakeMessenger) -> None:
    fake.fail_next(502, {"unexpected": True})
    (result,) = await messenger.submit([submission({"text": "hi"})])
    assert result.reports[0].outcome == "RETRY" and "HTTP 502" in (result.reports[0].detail or "")


async def test_a_bad_token_is_a_configuration_error(fake: FakeMessenger) -> None:
    m = Messenger(MessengerConfig([page(fake.url, page_access_token="expired")]))
    try:
        (result,) = await m.submit([submission({"text": "hi"})])
    finally:
        await m.close()
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user) == ("REJECTED", "EC_CONFIGURATION_ERROR", False)
    assert "Messenger error 190" in (report.detail or "")


async def test_outside_the_messaging_window_is_no_session(messenger: Messenger, fake: FakeMessenger) -> None:
    fake.fail_next(*graph_error(10, "This message is sent outside of allowed window.", 2018278))
    (result,) = await messenger.submit([submission({"text": "hi"})])
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_NO_SESSION")


async def test_an_unreachable_peer_is_tried_again() -> None:
    from tests.integration.fakes.server import free_port

    m = Messenger(MessengerConfig([page(f"http://127.0.0.1:{free_port()}")]))
    try:
        (result,) = await m.submit([submission({"text": "hi"}, tries=2)])
    finally:
        await m.close()
    assert (result.reports[0].outcome, result.reports[0].after_s) == ("RETRY", 2.0)
    assert "unreachable" in (result.reports[0].detail or "")


async def test_metrics_count_sends_by_result(fake: FakeMessenger) -> None:
    metrics = Metrics()
    m = Messenger(MessengerConfig([page(fake.url)]), metrics)
    try:
        await m.submit([submission({"text": "a"}), submission({"text": "b"}, n=2), submission({"text": "c"}, to="9")])
    finally:
        await m.close()
    text = metrics.render().decode()
    assert 'omnirelay_messenger_sends_total{result="accepted",sender="MyPage"} 2.0' in text
    assert 'omnirelay_messenger_sends_total{result="rejected",sender="MyPage"} 1.0' in text
