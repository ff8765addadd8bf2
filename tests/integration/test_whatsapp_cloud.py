"""The WhatsApp Cloud API connector against Prism serving Meta's own OpenAPI document (tests/prism.py).

Prism validates each request: the path, the Bearer token, the headers (Meta's ``User-Agent`` pattern) and
the body against the ``Message`` schema (one of text, image, audio, …, template, contacts, each with
``additionalProperties: false``). A refused body answers 422, which the connector turns into a rejection,
so every send below must come back with Prism's 200 and a wamid. The first tests prove Prism does refuse:
a body without ``recipient_type`` and one with a wrong property get 422.

Prism does not follow the ``discriminator`` of template components, so template components are also checked
against the schema their ``type`` names (``template_component_errors``). And Prism only knows the 200
answer, so the Graph errors the connector must map are queued on the recording proxy, which still passes
each request through Prism first (the body is still validated) and replaces Prism's 200 by the error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from omnirelay.config import WhatsAppConfig, WhatsAppSenderConfig
from omnirelay.connectors.http import USER_AGENT
from omnirelay.connectors.whatsapp.connector import WhatsAppCloud, build_message
from omnirelay.domain.delivery import Submission
from omnirelay.metrics import Metrics
from tests.prism import (
    PHONE_NUMBER_ID,
    Prism,
    RecordingProxy,
    graph_error,
    template_component_errors,
)
from tests.prism import prism as prism  # the session fixture

SPEC_WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA"
"""The wamid of the document's example answer: Prism gives it to every send."""

TEXT = {"text": "This WhatsApp message will be delivered to WhatsApp application on the user device."}
IMAGE = {"text": "Get your message across!", "imageUrl": "https://www.example.com/image.png"}
AUDIO = {"audioUrl": "https://www.example.com/audio.ogg"}
VIDEO = {"text": "Get your message across!", "videoUrl": "https://www.example.com/video.mp4"}
DOCUMENT = {"text": "File caption", "fileUrl": "https://www.example.com/document.pdf"}
LOCATION = {
    "locationName": "Name of the location",
    "address": "Address name",
    "longitude": 15.946519,
    "latitude": 45.793337,
}
CONTACTS = {
    "contacts": [
        {
            "addresses": [
                {
                    "street": "Zadarska",
                    "city": "Zagreb",
                    "zip": "1111",
                    "country": "Croatia",
                    "countryCode": "HR",
                    "type": "WORK",
                }
            ],
            "birthday": "2016-01-01",
            "emails": [{"email": "infobip@infobip.com", "type": "WORK"}],
            "name": {"firstName": "First Name", "lastName": "Last Name", "formattedName": "Formatted Name"},
            "org": {"company": "Infobip"},
            "phones": [{"phone": "41793026727", "type": "WORK", "waId": "41793026727"}],
            "urls": [{"url": "https://dev.infobip.com/omni-channel/omni-whatsapp-example", "type": "WORK"}],
        }
    ]
}
TEMPLATE = {"templateName": "template_name", "templateData": ["Jennifer", "$2543.56"], "language": "en"}
MEDIA_TEMPLATE = {
    "templateName": "media_template_name",
    "mediaTemplateData": {
        "header": {"imageUrl": "https://www.infobip.com/infobip-logo.png"},
        "body": {"placeholders": ["Jennifer", "$2543.56"]},
        "buttons": [
            {"quickReplyPayload": "button1"},
            {"quickReplyPayload": "button2"},
            {"urlPlaceholder": "example1.pdf"},
        ],
    },
    "language": "en",
}
DOCUMENT_TEMPLATE = {
    "templateName": "invoice",
    "language": "en_GB",
    "mediaTemplateData": {
        "header": {"documentUrl": "https://e.com/invoice.pdf", "documentFilename": "Invoice.pdf"},
        "body": {"placeholders": ["42"]},
    },
}
VIDEO_TEMPLATE = {
    "templateName": "promo",
    "language": "de",
    "mediaTemplateData": {"header": {"videoUrl": "https://e.com/v.mp4"}, "body": {"placeholders": []}},
}
TEXT_TEMPLATE = {
    "templateName": "order",
    "language": "fr",
    "mediaTemplateData": {"header": {"textPlaceholder": "42"}, "body": {"placeholders": ["Jean"]}},
}

KINDS: dict[str, dict[str, Any]] = {
    "text": TEXT,
    "text with preview": {"text": "See https://example.com", "previewUrl": True},
    "image": IMAGE,
    "audio": AUDIO,
    "video": VIDEO,
    "document": DOCUMENT,
    "location": LOCATION,
    "contacts": CONTACTS,
    "template": TEMPLATE,
    "media template with buttons": MEDIA_TEMPLATE,
    "document template": DOCUMENT_TEMPLATE,
    "video template": VIDEO_TEMPLATE,
    "text header template": TEXT_TEMPLATE,
}
TYPES = {
    "text with preview": "text",
    "media template with buttons": "template",
    "document template": "template",
    "video template": "template",
    "text header template": "template",
}


def sender(base_url: str, token: str = "EAABwzLixnjYBOzYmNMJJGfHq9DgNh") -> WhatsAppSenderConfig:
    return WhatsAppSenderConfig(
        sender="WhatsAppSender",
        phone_number_id=PHONE_NUMBER_ID,
        access_token=token,
        app_secret="app-secret",
        verify_token="verify-me",
        base_url=base_url,
    )


def submission(whatsapp: dict[str, Any], to: str = "41793026720", tries: int = 1, n: int = 1) -> Submission:
    return Submission(
        message=n,
        step=0,
        account_id=1,
        message_id=f"m-{n}",
        channel="WHATSAPP",
        sender="WhatsAppSender",
        address=to,
        content={"whatsApp": whatsapp},
        validity_s=60.0,
        tries=tries,
    )


@pytest.fixture
def proxy(prism: Prism) -> Iterator[RecordingProxy]:
    p = RecordingProxy(prism.url).start()
    yield p
    p.stop()


@pytest.fixture
async def cloud(proxy: RecordingProxy) -> AsyncIterator[WhatsAppCloud]:
    c = WhatsAppCloud(WhatsAppConfig([sender(proxy.url)]), Metrics())
    yield c
    await c.close()


# --- Prism does validate ---------------------------------------------------------------------------------


async def raw_post(prism: Prism, body: dict[str, Any], user_agent: str = USER_AGENT) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{prism.url}/v23.0/{PHONE_NUMBER_ID}/messages",
            json=body,
            headers={"Authorization": "Bearer EAAtoken", "User-Agent": user_agent},
        ) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_prism_refuses_a_body_without_recipient_type(prism: Prism) -> None:
    good = build_message("41793026720", TEXT)
    assert (await raw_post(prism, good))[0] == 200
    broken = {k: v for k, v in good.items() if k != "recipient_type"}
    status, answer = await raw_post(prism, broken)
    assert status == 422
    assert "Request body must have required property 'recipient_type'" in {v["message"] for v in answer["validation"]}


async def test_prism_refuses_unknown_properties_and_wrong_types(prism: Prism) -> None:
    status, _ = await raw_post(prism, {**build_message("41793026720", TEXT), "text": {"body": "x", "bogus": 1}})
    assert status == 422
    location = build_message("41793026720", LOCATION)
    location["location"]["latitude"] = 45.793337  # Meta's document types it as a string
    assert (await raw_post(prism, location))[0] == 422


async def test_prism_checks_the_user_agent(prism: Prism) -> None:
    # why the connector sends its own User-Agent: aiohttp's default does not match Meta's pattern
    status, answer = await raw_post(prism, build_message("41793026720", TEXT), user_agent="Python/3.11 aiohttp/3.9.5")
    assert status == 422, answer
    assert answer["validation"][0]["location"] == ["header", "user-agent"]


# --- every kind of message passes Meta's schema ------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_message_kind_is_accepted(kind: str, cloud: WhatsAppCloud, proxy: RecordingProxy) -> None:
    (result,) = await cloud.submit([submission(KINDS[kind])])
    (exchange,) = proxy.sends()
    assert exchange.prism_status == 200, exchange.prism_body.decode()
    assert result.reports == [] and result.provider_id == exchange.wamid
    sent = exchange.json
    assert sent["messaging_product"] == "whatsapp" and sent["recipient_type"] == "individual"
    assert sent["to"] == "41793026720" and sent["type"] == TYPES.get(kind, kind)
    assert exchange.path == f"/v23.0/{PHONE_NUMBER_ID}/messages"
    assert exchange.headers["Authorization"] == "Bearer EAABwzLixnjYBOzYmNMJJGfHq9DgNh"
    assert exchange.headers["Content-Type"] == "application/json"
    for component in sent.get("template", {}).get("components", []):
        assert template_component_errors(component) == [], component


async def test_media_template_body_as_sent(cloud: WhatsAppCloud, proxy: RecordingProxy) -> None:
    await cloud.submit([submission(MEDIA_TEMPLATE)])
    (exchange,) = proxy.sends()
    assert exchange.json["template"] == {
        "name": "media_template_name",
        "language": {"policy": "deterministic", "code": "en"},
        "components": [
            {
                "type": "header",
                "parameters": [{"type": "image", "image": {"link": "https://www.infobip.com/infobip-logo.png"}}],
            },
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Jennifer"}, {"type": "text", "text": "$2543.56"}],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "button1"}],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "1",
                "parameters": [{"type": "payload", "payload": "button2"}],
            },
            {
                "type": "button",
                "sub_type": "url",
                "index": "2",
                "parameters": [{"type": "text", "text": "example1.pdf"}],
            },
        ],
    }


async def test_straight_to_prism_every_kind_in_one_batch(prism: Prism) -> None:
    cloud = WhatsAppCloud(WhatsAppConfig([sender(prism.url)]))
    try:
        results = await cloud.submit([submission(w, n=i) for i, w in enumerate(KINDS.values())])
    finally:
        await cloud.close()
    assert [(r.provider_id, r.reports) for r in results] == [(SPEC_WAMID, [])] * len(KINDS)


async def test_a_refused_body_is_a_rejection_with_prisms_reasons(prism: Prism) -> None:
    # Meta's document allows HOME and WORK phone types only; the connector passes the type through
    contacts = json.loads(json.dumps(CONTACTS))
    contacts["contacts"][0]["phones"][0]["type"] = "CELL"
    cloud = WhatsAppCloud(WhatsAppConfig([sender(prism.url)]))
    try:
        (result,) = await cloud.submit([submission(contacts)])
    finally:
        await cloud.close()
    (report,) = result.reports
    assert (report.outcome, report.error) == ("REJECTED", "EC_BAD_REQUEST")
    assert "HTTP 422" in (report.detail or "") and "Invalid request" in (report.detail or "")


async def test_without_a_valid_token_prism_answers_401(prism: Prism) -> None:
    cloud = WhatsAppCloud(WhatsAppConfig([sender(prism.url, token="")]))
    try:
        (result,) = await cloud.submit([submission(TEXT)])
    finally:
        await cloud.close()
    assert (result.reports[0].outcome, result.reports[0].error) == ("REJECTED", "EC_UNAUTHORIZED_ACCESS")


async def test_a_batch_is_sent_concurrently_and_answered_in_order(cloud: WhatsAppCloud, proxy: RecordingProxy) -> None:
    numbers = [f"4179302{i:04d}" for i in range(60)]
    results = await cloud.submit([submission(TEXT, to=n, n=i) for i, n in enumerate(numbers)])
    wamid_of = {e.json["to"]: e.wamid for e in proxy.sends()}
    assert len(set(wamid_of.values())) == 60
    assert [r.provider_id for r in results] == [wamid_of[n] for n in numbers]


# --- Graph errors answered at once -------------------------------------------------------------------------


async def test_not_a_whatsapp_user(cloud: WhatsAppCloud, proxy: RecordingProxy) -> None:
    proxy.fail_next(*graph_error(131026, "Message undeliverable", details="Recipient is not a WhatsApp user"))
    (result,) = await cloud.submit([submission(TEXT)])
    assert proxy.sends()[0].prism_status == 200  # the body was valid; the error is Meta's verdict
    (report,) = result.reports
    assert (report.outcome, report.error, report.not_a_user, report.after_s) == (
        "REJECTED",
        "EC_UNKNOWN_USER",
        True,
        0.0,
    )
    assert "131026" in (report.detail or "") and "Recipient is not a WhatsApp user" in (report.detail or "")


async def test_throttled_asks_to_retry_with_backoff(cloud: WhatsAppCloud, proxy: RecordingProxy) -> None:
    proxy.fail_next(*graph_error(130429, "Rate limit hit", http_status=400))
    proxy.fail_next(*graph_error(131056, "(Business Account, Consumer Account) pair rate limit hit"))
    first, second = await cloud.submit([submission(TEXT, tries=1), submission(TEXT, tries=4, n=2)])
    assert {(r.reports[0].outcome, r.reports[0].after_s) for r in (first, second)} == {("RETRY", 1.0), ("RETRY", 8.0)}


async def test_template_errors_are_permanent(cloud: WhatsAppCloud, proxy: RecordingProxy) -> None:
    proxy.fail_next(*graph_error(132001, "Template name does not exist in the translation", http_status=404))
    (result,) = await cloud.submit([submission(TEMPLATE)])
    (report,) = result.reports
    assert (report.outcome, report.error, report.after_s) == ("REJECTED", "EC_INVALID_TEMPLATE", 0.0)
    assert "132001" in (report.detail or "")


async def test_server_errors_retry(cloud: WhatsAppCloud, proxy: RecordingProxy) -> None:
    proxy.fail_next(500, b"Internal Server Error")
    (result,) = await cloud.submit([submission(TEXT, tries=2)])
    assert (result.reports[0].outcome, result.reports[0].after_s) == ("RETRY", 2.0)


async def test_metrics_count_sends_by_result(proxy: RecordingProxy) -> None:
    metrics = Metrics()
    cloud = WhatsAppCloud(WhatsAppConfig([sender(proxy.url)]), metrics)
    proxy.fail_next(*graph_error(131026, "Message undeliverable"))
    try:
        await cloud.submit([submission(TEXT)])
        await cloud.submit([submission(TEXT, n=2), submission(TEXT, n=3)])
    finally:
        await cloud.close()
    text = metrics.render().decode()
    assert 'omnirelay_whatsapp_sends_total{result="rejected",sender="WhatsAppSender"} 1.0' in text
    assert 'omnirelay_whatsapp_sends_total{result="accepted",sender="WhatsAppSender"} 2.0' in text


async def test_component_check_catches_what_prism_lets_through(prism: Prism) -> None:
    body = build_message("41793026720", MEDIA_TEMPLATE)
    body["template"]["components"][0]["parameters"] = [{"type": "image"}]  # no image
    body["template"]["components"][2]["parameters"] = []  # a button without its parameter
    assert (await raw_post(prism, body))[0] == 200  # Prism checks components against their base schema only
    header, _, button = body["template"]["components"][:3]
    assert any('"image" is a required property' in e for e in template_component_errors(header))
    assert any("less than 1 item" in e for e in template_component_errors(button))
