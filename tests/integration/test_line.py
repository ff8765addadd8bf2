"""The LINE connector against the fake Messaging API on loopback (tests/integration/fakes/line.py).

The fake refuses what LINE's push-message reference refuses (the first tests prove it does), keeps what each
user was shown, and answers a retry key it accepted before with 409: so the tests can see that a push sent
again after a lost answer is shown once, and that every mapped message object passes LINE's checks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from omnirelay.config import LineChannelConfig, LineConfig
from omnirelay.connectors.line.connector import Line, blocked_key, retry_key
from omnirelay.domain.delivery import Submission
from omnirelay.metrics import Metrics
from omnirelay.store.base import Store
from tests.integration.fakes.line import CHANNEL_SECRET, CHANNEL_TOKEN, FakeLine

SENDER = "MyLineChannel"
USER = "U4af4980629abcdef0123456789abcdef"


def channel(base_url: str, **kw: Any) -> LineChannelConfig:
    fields: dict[str, Any] = {"sender": SENDER, "channel_access_token": CHANNEL_TOKEN,
                              "channel_secret": CHANNEL_SECRET, "base_url": base_url, **kw}
    return LineChannelConfig(**fields)


def submission(line: dict[str, Any], to: str = USER, n: int = 1, step: int = 0, tries: int = 1,
               sender: str | None = SENDER) -> Submission:
    return Submission(message=n, step=step, account_id=1, message_id=f"m{n}", channel="LINE", sender=sender,
                      address=to, content={"line": line}, validity_s=60.0, tries=tries)


@pytest.fixture
def fake() -> Iterator[FakeLine]:
    f = FakeLine()
    f.start()
    f.add_friend(USER)
    yield f
    f.stop()


@pytest.fixture
async def line(fake: FakeLine) -> AsyncIterator[Line]:
    c = Line(LineConfig([channel(fake.url)]), Metrics())
    yield c
    await c.close()


# --- the fake does enforce the documented shapes -------------------------------------------------------


async def raw_push(fake: FakeLine, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.url}/v2/bot/message/push", json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_the_fake_refuses_what_line_refuses(fake: FakeLine) -> None:
    auth = {"Authorization": f"Bearer {CHANNEL_TOKEN}"}
    good = {"to": USER, "messages": [{"type": "text", "text": "hi"}]}
    assert (await raw_push(fake, good, auth))[0] == 200
    assert (await raw_push(fake, good, {"Authorization": "Bearer nope"}))[0] == 401
    status, answer = await raw_push(fake, good, {**auth, "X-Line-Retry-Key": "not-a-uuid"})
    assert status == 400 and "X-Line-Retry-Key" in answer["message"]
    image = {"type": "image", "originalContentUrl": "http://e.com/a.png"}
    status, answer = await raw_push(fake, {"to": USER, "messages": [image]}, auth)
    assert status == 400 and {d["property"] for d in answer["details"]} == {
        "messages[0].originalContentUrl", "messages[0].previewImageUrl"}
    status, _ = await raw_push(fake, {"to": USER, "messages": [{"type": "text", "text": "x"}] * 6}, auth)
    assert status == 400
    key = {**auth, "X-Line-Retry-Key": str(uuid.uuid4())}
    assert (await raw_push(fake, good, key))[0] == 200
    status, answer = await raw_push(fake, good, key)
    assert status == 409 and answer["sentMessages"]
    assert len(fake.received_by(USER)) == 2  # the first push and the keyed one; not the 409


# --- mapping --------------------------------------------------------------------------------------------

FLEX = {"type": "BUBBLE", "body": {"type": "box", "layout": "vertical",
                                   "contents": [{"type": "text", "text": "Order 42 shipped"}]}}
KINDS: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "text": ({"type": "TEXT", "text": "Hello from LINE"}, [{"type": "text", "text": "Hello from LINE"}]),
    "text without type": ({"text": "Hi"}, [{"type": "text", "text": "Hi"}]),
    "image with text": ({"type": "IMAGE", "url": "https://e.com/a.jpg", "text": "Look"},
                        [{"type": "image", "originalContentUrl": "https://e.com/a.jpg",
                          "previewImageUrl": "https://e.com/a.jpg"}, {"type": "text", "text": "Look"}]),
    "image with thumbnail": ({"type": "IMAGE", "url": "https://e.com/a.jpg", "thumbnailUrl": "https://e.com/t.jpg"},
                             [{"type": "image", "originalContentUrl": "https://e.com/a.jpg",
                               "previewImageUrl": "https://e.com/t.jpg"}]),
    "video": ({"type": "VIDEO", "url": "https://e.com/v.mp4", "thumbnailUrl": "https://e.com/t.jpg"},
              [{"type": "video", "originalContentUrl": "https://e.com/v.mp4", "previewImageUrl": "https://e.com/t.jpg"}]),
    "audio": ({"type": "AUDIO", "url": "https://e.com/a.m4a", "duration": 4000},
              [{"type": "audio", "originalContentUrl": "https://e.com/a.m4a", "duration": 4000}]),
    "audio, legacy string duration": ({"type": "AUDIO", "url": "https://e.com/a.m4a", "duration": "60000"},
                                      [{"type": "audio", "originalContentUrl": "https://e.com/a.m4a",
                                        "duration": 60000}]),
    "sticker": ({"type": "STICKER", "packageId": "446", "stickerId": "1988"},
                [{"type": "sticker", "packageId": "446", "stickerId": "1988"}]),
    "flex": ({"type": "FLEX", "altText": "Your order", "contents": FLEX},
             [{"type": "flex", "altText": "Your order", "contents": {**FLEX, "type": "bubble"}}]),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_type_is_pushed_and_counts_as_delivered(kind: str, line: Line, fake: FakeLine) -> None:
    data, messages = KINDS[kind]
    sub = submission(data)
    (result,) = await line.submit([sub])
    (push,) = fake.pushes
    assert push.status == 200, push.answer
    assert push.json == {"to": USER, "messages": messages}
    assert push.headers["Authorization"] == f"Bearer {CHANNEL_TOKEN}"
    assert push.retry_key == retry_key(sub) and uuid.UUID(push.retry_key).version == 5
    assert result.provider_id == push.answer["sentMessages"][0]["id"]
    assert [(r.outcome, r.after_s) for r in result.reports] == [("DELIVERED", 0.0)]
    assert fake.received_by(USER) == messages


async def test_content_that_cannot_be_pushed_is_refused_without_a_request(line: Line, fake: FakeLine) -> None:
    results = await line.submit([
        submission({"type": "VIDEO", "url": "https://e.com/v.mp4"}),
        submission({"type": "AUDIO", "url": "https://e.com/a.m4a"}, n=2),
        submission({"type": "FLEX", "contents": FLEX}, n=3),
        submission({"type": "STICKER", "packageId": "1"}, n=4),
        submission({}, n=5),
    ])
    assert [(r.reports[0].outcome, r.reports[0].error) for r in results] == [("REJECTED", "EC_BAD_REQUEST")] * 5
    assert "thumbnailUrl" in (results[0].reports[0].detail or "")
    assert fake.pushes == []


def test_the_retry_key_is_one_per_step() -> None:
    first = retry_key(submission({"text": "a"}, n=1, step=0))
    assert retry_key(submission({"text": "a"}, n=1, step=0, tries=3)) == first  # every try of the step
    assert retry_key(submission({"text": "a"}, n=1, step=1)) != first
    assert retry_key(submission({"text": "a"}, n=2, step=0)) != first


# --- errors and retries ----------------------------------------------------------------------------------


async def test_a_user_line_does_not_know_is_not_a_user(line: Line, fake: FakeLine) -> None:
    (result,) = await line.submit([submission({"text": "hi"}, to="Uffffffffffffffffffffffffffffffff")])
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user) == ("REJECTED", "EC_UNKNOWN_USER", True)
    assert "Failed to send messages" in (report.detail or "")
    assert result.provider_id is None


async def test_a_user_who_blocked_the_account_is_accepted_and_not_shown(line: Line, fake: FakeLine) -> None:
    fake.blocked.add("Ublocked")
    (result,) = await line.submit([submission({"text": "hi"}, to="Ublocked")])
    assert result.reports[0].outcome == "DELIVERED"  # all LINE tells: see the README
    assert fake.received_by("Ublocked") == []


@pytest.mark.parametrize(("status", "message", "outcome", "error"), [
    (429, "Too many requests", "RETRY", "EC_TOO_MANY_REQUESTS"),
    (429, "You have reached your monthly limit.", "REJECTED", "EC_ACCOUNT_ISSUE"),
    (500, "Internal server error", "RETRY", "EC_PROVIDER_INTERNAL_ERROR"),
    (403, "Access to this API is not available for your account", "REJECTED", "EC_CONFIGURATION_ERROR"),
    (400, "The request body has 1 error(s)", "REJECTED", "EC_BAD_REQUEST"),
])
async def test_refusals_map_to_outcomes(status: int, message: str, outcome: str, error: str, line: Line,
                                        fake: FakeLine) -> None:
    fake.fail_next(status, {"message": message})
    (result,) = await line.submit([submission({"text": "hi"}, tries=2)])
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user) == (outcome, error, False)
    assert report.after_s == (2.0 if outcome == "RETRY" else 0.0)
    assert message in (report.detail or "")
    assert fake.received_by(USER) == []


async def test_a_wrong_token_is_a_configuration_error(fake: FakeLine) -> None:
    c = Line(LineConfig([channel(fake.url, channel_access_token="revoked")]))
    try:
        (result,) = await c.submit([submission({"text": "hi"})])
    finally:
        await c.close()
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_CONFIGURATION_ERROR")


async def test_a_push_sent_again_after_a_lost_answer_is_shown_once(line: Line, fake: FakeLine) -> None:
    fake.lose_next_answer()
    sub = submission({"text": "Exactly once"})
    (first,) = await line.submit([sub])
    assert first.reports[0].outcome == "RETRY" and "unreachable" in (first.reports[0].detail or "")
    # the engine submits the same step again (tries 2): the same retry key, so LINE answers 409
    (second,) = await line.submit([submission({"text": "Exactly once"}, tries=2)])
    pushes = fake.pushes_to(USER)
    assert [p.status for p in pushes] == [200, 409]
    assert pushes[0].retry_key == pushes[1].retry_key
    assert second.reports[0].outcome == "DELIVERED"
    assert second.provider_id == pushes[0].answer["sentMessages"][0]["id"]
    assert fake.received_by(USER) == [{"type": "text", "text": "Exactly once"}]


async def test_a_5xx_then_a_retry_delivers_once(line: Line, fake: FakeLine) -> None:
    fake.fail_next(500, {"message": "Internal server error"})
    (first,) = await line.submit([submission({"text": "hi"})])
    (second,) = await line.submit([submission({"text": "hi"}, tries=2)])
    assert (first.reports[0].outcome, second.reports[0].outcome) == ("RETRY", "DELIVERED")
    assert [p.status for p in fake.pushes_to(USER)] == [500, 200]
    assert len(fake.received_by(USER)) == 1


async def test_metrics_count_pushes_by_result(fake: FakeLine) -> None:
    metrics = Metrics()
    c = Line(LineConfig([channel(fake.url)]), metrics)
    try:
        await c.submit([submission({"text": "a"}), submission({"text": "b"}, n=2),
                        submission({"text": "c"}, to="U0", n=3)])
    finally:
        await c.close()
    text = metrics.render().decode()
    assert 'omnirelay_line_sends_total{result="delivered",sender="MyLineChannel"} 2.0' in text
    assert 'omnirelay_line_sends_total{result="rejected",sender="MyLineChannel"} 1.0' in text


# --- users who blocked the channel (remembered in the store from unfollow webhooks) -------------------


async def test_a_user_who_unfollowed_is_not_pushed_until_they_follow_again(fake: FakeLine, store: Store) -> None:
    fake.blocked.add("Ublocker")  # LINE itself would answer 200 and show nothing
    c = Line(LineConfig([channel(fake.url)]), Metrics(), store)
    key = blocked_key(SENDER)
    try:
        await store.set_capabilities([(0, key, "Ublocker", time.time() + 3600)])
        first, friend = await c.submit([submission({"text": "hi"}, to="Ublocker"),
                                        submission({"text": "hi"}, n=2)])
        (report,) = first.reports
        assert (report.outcome, report.error, report.not_a_user) == ("REJECTED", "EC_BLOCKED_USER", False)
        assert "blocked MyLineChannel" in (report.detail or "")
        assert friend.reports[0].outcome == "DELIVERED"  # the rest of the batch is pushed
        assert fake.pushes_to("Ublocker") == []
        # blocked on this channel only: another channel of the same LINE user is pushed
        assert await store.capabilities_of(0, blocked_key("OtherChannel"), ["Ublocker"], time.time()) == set()

        fake.blocked.discard("Ublocker")
        fake.add_friend("Ublocker")
        await store.set_capabilities([(0, key, "Ublocker", 0.0)])  # a follow forgets it
        (again,) = await c.submit([submission({"text": "hi"}, to="Ublocker", n=3)])
        assert again.reports[0].outcome == "DELIVERED" and len(fake.received_by("Ublocker")) == 1
    finally:
        await c.close()


async def test_capability_rows_set_from_outside_the_engine(store: Store) -> None:
    now = time.time()
    await store.set_capabilities([(0, "LINE:a:blocked", "U1", now + 60), (0, "LINE:a:blocked", "U2", now + 60),
                                  (0, "LINE:a:blocked", "U2", 0.0)])  # the later row of a key wins
    assert await store.capabilities_of(0, "LINE:a:blocked", ["U1", "U2", "U3"], now) == {"U1"}
    assert await store.capabilities_of(0, "LINE:a:blocked", ["U1"], now + 120) == set()  # expired
    assert await store.capabilities_of(1, "LINE:a:blocked", ["U1"], now) == set()  # another account
    assert await store.capabilities_of(0, "LINE:a:blocked", [], now) == set()
