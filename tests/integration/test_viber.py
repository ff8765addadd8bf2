"""The Viber connector against the fake bot API (tests/integration/fakes/viber.py), which enforces the documented
request shapes, the auth token, the webhook being set, and answers Viber's status codes.

The first tests prove the fake does refuse what Viber's documentation refuses, so that a send the connector
makes and the fake accepts is one Viber would take.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from omnirelay.config import ViberBotConfig, ViberConfig
from omnirelay.connectors.viber.connector import ViberBot, build_message
from omnirelay.domain import catalogue
from omnirelay.domain.delivery import Submission
from omnirelay.metrics import Metrics
from tests.integration.fakes.viber import FIRST_TOKEN, FakeViber

TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
USER = "01234567890A="
PHONE = "41793026727"

TEXT = {"text": "Your parcel is on its way"}
IMAGE = {"text": "Our new shop", "imageURL": "https://www.example.com/shop.png"}
BUTTON = {
    "text": "Track your parcel",
    "imageURL": "https://www.example.com/parcel.png",
    "buttonText": "Track",
    "buttonURL": "https://www.example.com/track/42",
}


def bot(base_url: str, token: str = TOKEN, **users: str) -> ViberBotConfig:
    return ViberBotConfig(
        sender="ViberSender",
        auth_token=token,
        sender_name="Parcel Service",
        avatar="https://www.example.com/avatar.png",
        base_url=base_url,
        users={PHONE: USER, **users},
    )


def submission(viber: dict[str, Any], to: str = PHONE, tries: int = 1, n: int = 1,
               sender: str | None = "ViberSender") -> Submission:
    return Submission(
        message=n,
        step=0,
        account_id=1,
        message_id=f"m-{n}",
        channel="VIBER",
        sender=sender,
        address=to,
        content={"viber": viber},
        validity_s=60.0,
        tries=tries,
    )


@pytest.fixture
def fake() -> Iterator[FakeViber]:
    f = FakeViber(TOKEN, webhook_set=True).start()
    f.add_user(USER)
    yield f
    f.stop()


@pytest.fixture
async def viber(fake: FakeViber) -> AsyncIterator[ViberBot]:
    channel = ViberBot(ViberConfig([bot(fake.url)]), Metrics())
    yield channel
    await channel.close()


async def raw_send(fake: FakeViber, body: dict[str, Any], token: str = TOKEN) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.url}/pa/send_message", json=body, headers={"X-Viber-Auth-Token": token}) as r,
    ):
        assert r.status == 200  # Viber answers 200 whatever the status
        answer: dict[str, Any] = await r.json()
        return answer


# --- the fake does refuse ----------------------------------------------------------------------------------


async def test_the_fake_refuses_what_viber_documents_as_wrong(fake: FakeViber) -> None:
    good = build_message(USER, bot(fake.url), TEXT)
    assert (await raw_send(fake, good))["status"] == 0
    assert (await raw_send(fake, good, token="wrong"))["status"] == 2
    assert (await raw_send(fake, {k: v for k, v in good.items() if k != "sender"}))["status"] == 4
    assert (await raw_send(fake, {**good, "sender": {"name": "x" * 29}}))["status"] == 3
    assert (await raw_send(fake, {**good, "bogus": 1}))["status"] == 3
    picture = build_message(USER, bot(fake.url), IMAGE)
    assert (await raw_send(fake, {**picture, "media": "not a url"}))["status"] == 3
    rich = build_message(USER, bot(fake.url), BUTTON)
    assert (await raw_send(fake, rich))["status"] == 0
    assert (await raw_send(fake, {**rich, "min_api_version": 1}))["status"] == 3
    too_tall = json.loads(json.dumps(rich))
    too_tall["rich_media"]["Buttons"][0]["Rows"] = 6
    assert (await raw_send(fake, too_tall))["status"] == 3


async def test_the_fake_takes_no_send_before_set_webhook() -> None:
    fake = FakeViber(TOKEN).start()
    fake.add_user(USER)
    channel = ViberBot(ViberConfig([bot(fake.url)]))
    try:
        (result,) = await channel.submit([submission(TEXT)])
    finally:
        await channel.close()
        fake.stop()
    (report,) = result.reports
    assert (report.outcome, report.error) == ("REJECTED", "EC_CONFIGURATION_ERROR")
    assert "webhookNotSet" in (report.detail or "")


# --- mapping -----------------------------------------------------------------------------------------------


async def test_text_is_a_text_message_to_the_mapped_user(viber: ViberBot, fake: FakeViber) -> None:
    (result,) = await viber.submit([submission({**TEXT, "trackingData": "order-42"})])
    (sent,) = fake.sends
    assert sent.status == 0 and result.reports == []
    assert result.provider_id == str(sent.message_token) == str(FIRST_TOKEN)  # 64-bit, kept exactly
    assert sent.headers["X-Viber-Auth-Token"] == TOKEN
    assert sent.json == {
        "receiver": USER,
        "sender": {"name": "Parcel Service", "avatar": "https://www.example.com/avatar.png"},
        "tracking_data": "order-42",
        "type": "text",
        "text": "Your parcel is on its way",
    }


async def test_image_is_a_picture_with_its_text(viber: ViberBot, fake: FakeViber) -> None:
    (result,) = await viber.submit([submission(IMAGE)])
    (sent,) = fake.sends
    assert sent.status == 0 and result.provider_id == str(sent.message_token)
    body = sent.json
    assert (body["type"], body["media"], body["text"]) == ("picture", IMAGE["imageURL"], "Our new shop")


async def test_button_is_a_rich_media_card(viber: ViberBot, fake: FakeViber) -> None:
    (result,) = await viber.submit([submission(BUTTON)])
    (sent,) = fake.sends
    assert sent.status == 0 and result.provider_id == str(sent.message_token)
    body = sent.json
    assert body["type"] == "rich_media" and body["min_api_version"] >= 2 and body["alt_text"] == BUTTON["text"]
    buttons = body["rich_media"]["Buttons"]
    assert [b.get("Image") for b in buttons] == [BUTTON["imageURL"], None, None]
    assert [b.get("Text") for b in buttons] == [None, BUTTON["text"], "Track"]
    assert buttons[2]["ActionType"] == "open-url" and buttons[2]["ActionBody"] == BUTTON["buttonURL"]
    assert body["rich_media"]["ButtonsGroupRows"] == sum(b["Rows"] for b in buttons) <= 7


async def test_a_button_without_image_or_text(viber: ViberBot, fake: FakeViber) -> None:
    (result,) = await viber.submit([submission({"buttonText": "Open", "buttonURL": "https://e.com/x"})])
    assert result.reports == [] and fake.sends[0].status == 0
    assert len(fake.sends[0].json["rich_media"]["Buttons"]) == 1


@pytest.mark.parametrize(
    "content",
    [
        {"text": "half a button", "buttonText": "Open"},
        {"text": "a file", "fileUrl": "https://e.com/a.pdf"},
        {},
    ],
)
async def test_content_that_cannot_be_sent_is_refused_without_a_request(
        content: dict[str, Any], viber: ViberBot, fake: FakeViber) -> None:
    (result,) = await viber.submit([submission(content)])
    (report,) = result.reports
    assert (report.outcome, report.error) == ("REJECTED", "EC_BAD_REQUEST")
    assert fake.sends == []


async def test_a_number_without_a_viber_user_id_fails_over_without_a_request(
        viber: ViberBot, fake: FakeViber) -> None:
    (result,) = await viber.submit([submission(TEXT, to="41790000000")])
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user) == ("REJECTED", "EC_UNKNOWN_USER", False)
    assert "41790000000" in (report.detail or "") and fake.sends == []


async def test_an_unknown_bot_is_refused(viber: ViberBot) -> None:
    (result,) = await viber.submit([submission(TEXT, sender="OtherBot")])
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_SENDER_NOT_REGISTERED")


async def test_users_file_adds_to_the_map(tmp_path: Path, fake: FakeViber) -> None:
    other = fake.add_user("9sT2nKpR7a1bXc3dYe5fZg==")
    users = tmp_path / "viber-users.json"
    users.write_text(json.dumps({"+385911234567": other}))
    config = bot(fake.url)
    config.users_file = str(users)
    channel = ViberBot(ViberConfig([config]))
    try:
        first, second = await channel.submit([submission(TEXT, to="385911234567"), submission(TEXT, n=2)])
    finally:
        await channel.close()
    assert first.reports == [] and second.reports == []
    assert {s.json["receiver"] for s in fake.sends} == {other, USER}


# --- errors ------------------------------------------------------------------------------------------------


async def test_not_a_viber_user_fails_over_and_is_remembered(fake: FakeViber) -> None:
    channel = ViberBot(ViberConfig([bot(fake.url, **{"41790000001": "never-registered=="})]))
    try:
        (result,) = await channel.submit([submission(TEXT, to="41790000001")])
    finally:
        await channel.close()
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user, report.after_s) == (
        "REJECTED", "EC_UNKNOWN_USER", True, 0.0)
    assert "receiverNotRegistered" in (report.detail or "")


async def test_not_subscribed_fails_over_but_is_not_remembered(fake: FakeViber) -> None:
    fake.add_user("left-the-bot==", subscribed=False)
    channel = ViberBot(ViberConfig([bot(fake.url, **{"41790000002": "left-the-bot=="})]))
    try:
        (result,) = await channel.submit([submission(TEXT, to="41790000002")])
    finally:
        await channel.close()
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user) == ("REJECTED", "EC_UNKNOWN_USER", False)
    assert "Viber status 6 (receiverNotSubscribed)" in (report.detail or "")


async def test_throttled_asks_to_retry_with_backoff(viber: ViberBot, fake: FakeViber) -> None:
    fake.throttle(2)
    first, second = await viber.submit([submission(TEXT, tries=1), submission(TEXT, tries=4, n=2)])
    assert {(r.reports[0].outcome, r.reports[0].error, r.reports[0].after_s) for r in (first, second)} == {
        ("RETRY", "EC_TOO_MANY_REQUESTS", 1.0), ("RETRY", "EC_TOO_MANY_REQUESTS", 8.0)}
    (third,) = await viber.submit([submission(TEXT, n=3)])
    assert third.reports == [] and third.provider_id is not None


async def test_a_wrong_auth_token_is_permanent(fake: FakeViber) -> None:
    channel = ViberBot(ViberConfig([bot(fake.url, token="not-the-token")]))
    try:
        (result,) = await channel.submit([submission(TEXT)])
    finally:
        await channel.close()
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_UNAUTHORIZED_ACCESS")


async def test_an_unreachable_api_is_retried() -> None:
    fake = FakeViber(TOKEN).start()
    url = fake.url
    fake.stop()
    channel = ViberBot(ViberConfig([bot(url)]))
    try:
        (result,) = await channel.submit([submission(TEXT, tries=2)])
    finally:
        await channel.close()
    assert (result.reports[0].outcome, result.reports[0].after_s) == ("RETRY", 2.0)


def test_every_error_name_is_in_the_catalogue() -> None:
    from omnirelay.connectors.viber import connector as viber

    for verdict in [*viber.VERDICTS.values(), viber.classify(999)]:
        assert catalogue.is_error_name(verdict.error), verdict


async def test_metrics_count_sends_by_result(fake: FakeViber) -> None:
    metrics = Metrics()
    channel = ViberBot(ViberConfig([bot(fake.url)]), metrics)
    fake.throttle(1)
    try:
        await channel.submit([submission(TEXT)])
        await channel.submit([submission(TEXT, n=2), submission(TEXT, to="41790000000", n=3)])
    finally:
        await channel.close()
    text = metrics.render().decode()
    assert 'omnirelay_viber_sends_total{result="retry",sender="ViberSender"} 1.0' in text
    assert 'omnirelay_viber_sends_total{result="accepted",sender="ViberSender"} 1.0' in text
    assert 'omnirelay_viber_sends_total{result="rejected",sender="ViberSender"} 1.0' in text


def test_a_sender_name_viber_would_refuse_is_a_config_error() -> None:
    config = bot("http://127.0.0.1:9")
    config.sender_name = "A name longer than Viber's 28"
    with pytest.raises(ValueError, match="sender_name must be 1 to 28 characters"):
        ViberBot(ViberConfig([config]))
