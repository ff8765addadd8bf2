"""WhatsApp Cloud API: the OMNI ``whatsApp`` object → Cloud API body mapping, Graph error codes → outcomes,
the webhook signature, status → receipt and inbound message → Infobip webhook, and the webhook routes with
an in-test store. No network: the bodies are checked against Meta's schema in tests/integration."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from omnirelay.config import AccountConfig, WhatsAppConfig, WhatsAppSenderConfig
from omnirelay.connectors.http import RETRY_CAP_S, ContentError
from omnirelay.connectors.http import backoff as retry_after
from omnirelay.connectors.meta import GraphError
from omnirelay.connectors.whatsapp.connector import (
    VERDICTS,
    WEBHOOK_RETRY_S,
    WhatsAppCloud,
    answer_to_result,
    build_message,
    classify,
)
from omnirelay.connectors.whatsapp.webhooks import (
    WhatsAppWebhookRoutes,
    _Contact,
    _Profile,
    _Status,
    _Value,
    inbound_content,
    inbound_report,
    sign,
    signature_ok,
    status_receipt,
)
from omnirelay.domain import catalogue
from omnirelay.domain.delivery import Receipt, Submission
from omnirelay.metrics import Metrics
from omnirelay.store.base import Account

TO = "41793026727"
ENVELOPE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO}


def body(whatsapp: dict[str, Any]) -> dict[str, Any]:
    """The mapped body without the envelope (which is checked as well)."""
    mapped = build_message(TO, whatsapp)
    assert {k: mapped[k] for k in ENVELOPE} == ENVELOPE
    return {k: v for k, v in mapped.items() if k not in ENVELOPE}


# --- OMNI whatsApp -> Cloud API -------------------------------------------------------------------------


def test_text_with_and_without_preview_url() -> None:
    assert body({"text": "Hi"}) == {"type": "text", "text": {"body": "Hi", "preview_url": False}}
    assert body({"text": "See https://example.com", "previewUrl": True}) == {
        "type": "text",
        "text": {"body": "See https://example.com", "preview_url": True},
    }


def test_validity_fields_are_not_content() -> None:
    assert body({"text": "Hi", "validityPeriod": 5, "validityPeriodTimeUnit": "MINUTES"})["type"] == "text"


@pytest.mark.parametrize(
    ("omni", "expected"),
    [
        (
            {"text": "Get your message across!", "imageUrl": "https://www.example.com/image.png"},
            {
                "type": "image",
                "image": {"link": "https://www.example.com/image.png", "caption": "Get your message across!"},
            },
        ),
        ({"imageUrl": "https://e.com/i.png"}, {"type": "image", "image": {"link": "https://e.com/i.png"}}),
        (
            {"text": "Look", "videoUrl": "https://www.example.com/video.mp4"},
            {"type": "video", "video": {"link": "https://www.example.com/video.mp4", "caption": "Look"}},
        ),
        (  # WhatsApp audio has no caption
            {"text": "ignored", "audioUrl": "https://www.example.com/audio.ogg"},
            {"type": "audio", "audio": {"link": "https://www.example.com/audio.ogg"}},
        ),
        (
            {"text": "File caption", "fileUrl": "https://www.example.com/docs/document.pdf?x=1"},
            {
                "type": "document",
                "document": {
                    "link": "https://www.example.com/docs/document.pdf?x=1",
                    "caption": "File caption",
                    "filename": "document.pdf",
                },
            },
        ),
        ({"fileUrl": "https://e.com/"}, {"type": "document", "document": {"link": "https://e.com/"}}),
    ],
)
def test_media_by_link(omni: dict[str, Any], expected: dict[str, Any]) -> None:
    assert body(omni) == expected


def test_location_coordinates_are_strings_as_meta_types_them() -> None:
    omni = {
        "locationName": "Name of the location",
        "address": "Address name",
        "longitude": 15.946519,
        "latitude": 45.793337,
    }
    assert body(omni) == {
        "type": "location",
        "location": {
            "latitude": "45.793337",
            "longitude": "15.946519",
            "name": "Name of the location",
            "address": "Address name",
        },
    }
    assert body({"longitude": 0, "latitude": -1.5}) == {
        "type": "location",
        "location": {"latitude": "-1.5", "longitude": "0.0"},
    }


def test_contacts_are_renamed_to_meta_names() -> None:
    # Infobip's "Send WhatsApp Contact message" example, plus fields Meta does not know (dropped)
    omni = {
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
                        "extra": "dropped",
                    }
                ],
                "birthday": "2016-01-01",
                "emails": [{"email": "infobip@infobip.com", "type": "WORK"}],
                "name": {
                    "firstName": "First Name",
                    "lastName": "Last Name",
                    "middleName": "M",
                    "formattedName": "Formatted Name",
                    "namePrefix": "Dr",
                    "nameSuffix": "Jr",
                },
                "org": {"company": "Infobip", "department": "Dev", "title": "Engineer"},
                "phones": [{"phone": "41793026727", "type": "WORK", "waId": "41793026727"}],
                "urls": [{"url": "https://dev.infobip.com", "type": "WORK"}],
            }
        ]
    }
    assert body(omni) == {
        "type": "contacts",
        "contacts": [
            {
                "addresses": [
                    {
                        "street": "Zadarska",
                        "city": "Zagreb",
                        "zip": "1111",
                        "country": "Croatia",
                        "country_code": "HR",
                        "type": "WORK",
                    }
                ],
                "birthday": "2016-01-01",
                "emails": [{"email": "infobip@infobip.com", "type": "WORK"}],
                "name": {
                    "first_name": "First Name",
                    "last_name": "Last Name",
                    "middle_name": "M",
                    "formatted_name": "Formatted Name",
                    "prefix": "Dr",
                    "suffix": "Jr",
                },
                "org": {"company": "Infobip", "department": "Dev", "title": "Engineer"},
                "phones": [{"phone": "41793026727", "type": "WORK", "wa_id": "41793026727"}],
                "urls": [{"url": "https://dev.infobip.com", "type": "WORK"}],
            }
        ],
    }


def test_template_with_template_data() -> None:
    # Infobip's "Send WhatsApp template message" example
    omni = {"templateName": "template_name", "templateData": ["Jennifer", "$2543.56"], "language": "en"}
    assert body(omni) == {
        "type": "template",
        "template": {
            "name": "template_name",
            "language": {"policy": "deterministic", "code": "en"},
            "components": [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": "Jennifer"}, {"type": "text", "text": "$2543.56"}],
                },
            ],
        },
    }


def test_template_without_parameters_and_legacy_policy() -> None:
    omni = {"templateName": "hello_world", "language": "en_US", "policy": "FALLBACK", "templateNamespace": "ns"}
    assert body(omni) == {
        "type": "template",
        "template": {"name": "hello_world", "language": {"policy": "deterministic", "code": "en_US"}},
    }


def test_media_template_header_body_and_buttons() -> None:
    omni = {
        "templateName": "media_template_name",
        "templateData": ["overridden by mediaTemplateData.body"],
        "mediaTemplateData": {
            "header": {"imageUrl": "https://www.infobip.com/infobip-logo.png"},
            "body": {"placeholders": ["Jennifer", "$2543.56"]},
            "buttons": [{"quickReplyPayload": "button1"}, {}, {"urlPlaceholder": "example1.pdf"}],
        },
        "language": "en",
    }
    assert body(omni)["template"]["components"] == [
        {
            "type": "header",
            "parameters": [{"type": "image", "image": {"link": "https://www.infobip.com/infobip-logo.png"}}],
        },
        {"type": "body", "parameters": [{"type": "text", "text": "Jennifer"}, {"type": "text", "text": "$2543.56"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": "button1"}],
        },
        # the second button is static (no parameter) but keeps its index
        {"type": "button", "sub_type": "url", "index": "2", "parameters": [{"type": "text", "text": "example1.pdf"}]},
    ]


@pytest.mark.parametrize(
    ("header", "parameter"),
    [
        ({"textPlaceholder": "Order 42"}, {"type": "text", "text": "Order 42"}),
        ({"videoUrl": "https://e.com/v.mp4"}, {"type": "video", "video": {"link": "https://e.com/v.mp4"}}),
        (
            {"documentUrl": "https://e.com/a/invoice.pdf"},
            {"type": "document", "document": {"link": "https://e.com/a/invoice.pdf", "filename": "invoice.pdf"}},
        ),
        (
            {"documentUrl": "https://e.com/a/x", "documentFilename": "Invoice 42.pdf"},
            {"type": "document", "document": {"link": "https://e.com/a/x", "filename": "Invoice 42.pdf"}},
        ),
        (
            {"latitude": 45.5, "longitude": 15.25},
            {"type": "location", "location": {"latitude": "45.5", "longitude": "15.25"}},
        ),
    ],
)
def test_media_template_headers(header: dict[str, Any], parameter: dict[str, Any]) -> None:
    omni = {
        "templateName": "t",
        "language": "en",
        "mediaTemplateData": {"header": header, "body": {"placeholders": []}},
    }
    assert body(omni)["template"]["components"] == [{"type": "header", "parameters": [parameter]}]


def test_the_template_wins_over_other_content() -> None:
    assert (
        body({"templateName": "t", "language": "de", "text": "x", "imageUrl": "https://e.com/i.png"})["type"]
        == "template"
    )


@pytest.mark.parametrize(
    ("omni", "message"),
    [
        ({}, "nothing to send"),
        ({"validityPeriod": 5}, "nothing to send"),
        ({"templateName": "t"}, "language is required"),
        ({"latitude": 1.0}, "nothing to send"),
        ({"text": 5}, "whatsApp"),
    ],
)
def test_unsendable_content(omni: dict[str, Any], message: str) -> None:
    with pytest.raises(ContentError, match=message):
        build_message(TO, omni)


# --- Graph error codes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "outcome", "error", "not_a_user"),
    [
        (131026, "REJECTED", "EC_UNKNOWN_USER", True),
        (131047, "REJECTED", "EC_NO_SESSION", False),
        (131049, "UNDELIVERABLE", "EC_FREQUENCY_CAPPING", False),
        (131048, "UNDELIVERABLE", "EC_SPAM_RATE", False),
        (130429, "RETRY", "EC_TOO_MANY_REQUESTS", False),
        (131056, "RETRY", "EC_TOO_MANY_REQUESTS", False),
        (131000, "RETRY", "EC_PROVIDER_INTERNAL_ERROR", False),
        (132000, "REJECTED", "EC_INVALID_TEMPLATE_ARGS", False),
        (132012, "REJECTED", "EC_INVALID_TEMPLATE_ARGS", False),
        (132001, "REJECTED", "EC_INVALID_TEMPLATE", False),
        (132015, "REJECTED", "EC_INVALID_TEMPLATE", False),
        (131052, "REJECTED", "EC_MEDIA_HOSTING_ERROR", False),
        (131042, "REJECTED", "EC_ACCOUNT_ISSUE", False),
        (190, "REJECTED", "EC_UNAUTHORIZED_ACCESS", False),
        (200, "REJECTED", "EC_UNAUTHORIZED_ACCESS", False),
        (299, "REJECTED", "EC_UNAUTHORIZED_ACCESS", False),
        (999999, "UNDELIVERABLE", "EC_PROVIDER_DR_ERROR", False),
        (None, "UNDELIVERABLE", "EC_PROVIDER_DR_ERROR", False),
    ],
)
def test_classify(code: int | None, outcome: str, error: str, not_a_user: bool) -> None:
    verdict = classify(code)
    assert (verdict.outcome, verdict.error, verdict.not_a_user) == (outcome, error, not_a_user)


def test_every_verdict_names_a_catalogue_error() -> None:
    for code, verdict in VERDICTS.items():
        assert catalogue.is_error_name(verdict.error), (code, verdict)
    assert catalogue.is_error_name(classify(None).error)


def test_retry_backoff_doubles_up_to_a_cap() -> None:
    assert [retry_after(t) for t in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_after(30) == RETRY_CAP_S
    assert retry_after(0) == 1.0


def graph(code: int, message: str = "msg", details: str = "more") -> bytes:
    return json.dumps(
        {
            "error": {
                "message": f"(#{code}) {message}",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": details},
                "fbtrace_id": "x",
            }
        }
    ).encode()


def test_answer_200_gives_the_wamid() -> None:
    answer = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": TO, "wa_id": TO}],
        "messages": [{"id": "wamid.ABC", "message_status": "accepted"}],
    }
    result = answer_to_result(200, json.dumps(answer).encode())
    assert result.provider_id == "wamid.ABC" and result.reports == []


def test_answer_200_without_id_is_refused() -> None:
    (report,) = answer_to_result(200, b"{}").reports
    assert report.outcome == "REJECTED" and "without a message id" in (report.detail or "")


def test_answer_131026_is_not_a_user_with_code_in_detail() -> None:
    result = answer_to_result(400, graph(131026, "Message undeliverable", "Recipient is not a WhatsApp user"))
    assert result.provider_id is None
    (report,) = result.reports
    assert (report.after_s, report.outcome, report.error, report.not_a_user) == (
        0.0,
        "REJECTED",
        "EC_UNKNOWN_USER",
        True,
    )
    assert "131026" in (report.detail or "") and "Recipient is not a WhatsApp user" in (report.detail or "")


def test_answer_throttled_retries_with_backoff() -> None:
    (report,) = answer_to_result(400, graph(130429, "Rate limit hit"), tries=3).reports
    assert (report.outcome, report.after_s) == ("RETRY", 4.0)
    assert "130429" in (report.detail or "")


def test_answer_template_error_is_permanent() -> None:
    (report,) = answer_to_result(404, graph(132001, "Template name does not exist in the translation")).reports
    assert (report.outcome, report.error, report.after_s) == ("REJECTED", "EC_INVALID_TEMPLATE", 0.0)


@pytest.mark.parametrize(
    ("status", "answer", "outcome", "error"),
    [
        (500, b"", "RETRY", "EC_PROVIDER_INTERNAL_ERROR"),
        (503, b"<html>down</html>", "RETRY", "EC_PROVIDER_INTERNAL_ERROR"),
        (429, b"", "RETRY", "EC_PROVIDER_INTERNAL_ERROR"),
        (500, graph(12345), "RETRY", "EC_PROVIDER_INTERNAL_ERROR"),
        (400, graph(12345), "REJECTED", "EC_BAD_REQUEST"),
        (422, b'{"title":"Invalid request","status":422}', "REJECTED", "EC_BAD_REQUEST"),
        (401, b'{"error":{"message":"Invalid OAuth access token.","code":190}}', "REJECTED", "EC_UNAUTHORIZED_ACCESS"),
        (403, b"", "REJECTED", "EC_UNAUTHORIZED_ACCESS"),
    ],
)
def test_answers_without_a_known_code(status: int, answer: bytes, outcome: str, error: str) -> None:
    (report,) = answer_to_result(status, answer).reports
    assert (report.outcome, report.error) == (outcome, error)
    assert f"HTTP {status}" in (report.detail or "")


# --- the connector without a network -------------------------------------------------------------------


def sender(name: str = "WhatsAppSender", base_url: str = "http://127.0.0.1:9") -> WhatsAppSenderConfig:
    return WhatsAppSenderConfig(
        sender=name,
        phone_number_id="106540352242922",
        access_token="EAAtoken",
        app_secret="app-secret",
        verify_token="verify-me",
        base_url=base_url,
        account="Aladdin",
    )


def submission(from_: str | None, whatsapp: dict[str, Any], tries: int = 1) -> Submission:
    return Submission(
        message=1,
        step=0,
        account_id=1,
        message_id="m-1",
        channel="WHATSAPP",
        sender=from_,
        address=TO,
        content={"whatsApp": whatsapp},
        validity_s=60.0,
        tries=tries,
    )


async def test_unknown_sender_and_unsendable_content_are_refused_at_once() -> None:
    metrics = Metrics()
    cloud = WhatsAppCloud(WhatsAppConfig([sender("A"), sender("B")]), metrics)
    unknown, empty, nameless = await cloud.submit(
        [submission("Nobody", {"text": "Hi"}), submission("A", {}), submission(None, {"text": "Hi"})]
    )
    await cloud.close()
    assert unknown.provider_id is None
    (report,) = unknown.reports
    assert (report.outcome, report.error) == ("REJECTED", "EC_SENDER_NOT_REGISTERED")
    assert "'Nobody'" in (report.detail or "") and "A, B" in (report.detail or "")
    assert empty.reports[0].outcome == "REJECTED" and "nothing to send" in (empty.reports[0].detail or "")
    assert nameless.reports[0].error == "EC_SENDER_NOT_REGISTERED"  # two senders: a step needs a from
    assert b'omnirelay_whatsapp_sends_total{result="rejected",sender="Nobody"} 1.0' in metrics.render()


async def test_unreachable_graph_api_retries() -> None:
    cloud = WhatsAppCloud(WhatsAppConfig([sender(base_url="http://127.0.0.1:9")]))
    (result,) = await cloud.submit([submission(None, {"text": "Hi"}, tries=2)])  # the only sender
    await cloud.close()
    (report,) = result.reports
    assert (report.outcome, report.after_s) == ("RETRY", 2.0)
    assert "unreachable" in (report.detail or "")


# --- webhook: signature, statuses, inbound ----------------------------------------------------------------


def test_signature() -> None:
    raw = b'{"object":"whatsapp_business_account","entry":[]}'
    good = sign("app-secret", raw)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert signature_ok("app-secret", raw, good)
    assert signature_ok("app-secret", raw, good.upper().replace("SHA256=", "sha256="))
    assert not signature_ok("other-secret", raw, good)
    assert not signature_ok("app-secret", raw + b" ", good)  # the raw bytes, not the JSON, are signed
    assert not signature_ok("app-secret", raw, None)
    assert not signature_ok("app-secret", raw, "")
    assert not signature_ok("app-secret", raw, good[7:])  # without "sha256="
    assert not signature_ok("app-secret", raw, "sha1=" + good[7:])


def test_status_receipts() -> None:
    assert status_receipt(_Status("wamid.1", "sent")) is None
    assert status_receipt(_Status("wamid.1", "delivered")) == Receipt("WHATSAPP", "wamid.1", "DELIVERED")
    assert status_receipt(_Status("wamid.1", "read")) == Receipt("WHATSAPP", "wamid.1", "SEEN")
    failed = status_receipt(_Status("wamid.1", "failed", errors=[GraphError(131026, "Message undeliverable")]))
    assert failed is not None
    assert (failed.outcome, failed.error, failed.not_a_user, failed.after_s) == (
        "REJECTED",
        "EC_UNKNOWN_USER",
        True,
        0.0,
    )
    assert failed.detail == "WhatsApp error 131026 (Message undeliverable)"
    throttled = status_receipt(_Status("wamid.1", "failed", errors=[GraphError(130429, "Rate limit hit")]))
    assert throttled is not None and (throttled.outcome, throttled.after_s) == ("RETRY", WEBHOOK_RETRY_S)
    bare = status_receipt(_Status("wamid.1", "failed"))
    assert bare is not None and bare.outcome == "UNDELIVERABLE"


MEDIA = "https://graph.facebook.com/v23.0"


@pytest.mark.parametrize(
    ("message", "content"),
    [
        ({"type": "text", "text": {"body": "Support hello"}}, {"type": "TEXT", "text": "Support hello"}),
        (
            {"type": "image", "image": {"caption": "Taj Mahal", "id": "1003383421", "mime_type": "image/jpeg"}},
            {"type": "IMAGE", "url": f"{MEDIA}/1003383421", "caption": "Taj Mahal"},
        ),
        ({"type": "audio", "audio": {"id": "7", "voice": True}}, {"type": "VOICE", "url": f"{MEDIA}/7"}),
        ({"type": "audio", "audio": {"id": "7"}}, {"type": "AUDIO", "url": f"{MEDIA}/7"}),
        ({"type": "sticker", "sticker": {"id": "8"}}, {"type": "STICKER", "url": f"{MEDIA}/8"}),
        (
            {
                "type": "location",
                "location": {
                    "address": "101 Forest Ave",
                    "latitude": 37.44,
                    "longitude": -122.16,
                    "name": "Philz Coffee",
                    "url": "https://philzcoffee.com/",
                },
            },
            {
                "type": "LOCATION",
                "longitude": -122.16,
                "latitude": 37.44,
                "name": "Philz Coffee",
                "address": "101 Forest Ave",
                "url": "https://philzcoffee.com/",
            },
        ),
        (
            {
                "type": "contacts",
                "contacts": [
                    {
                        "name": {"first_name": "Lucía", "formatted_name": "Lucía Gómez"},
                        "phones": [{"phone": "+1 983", "type": "MOBILE", "wa_id": "1983"}],
                    }
                ],
            },
            {
                "type": "CONTACT",
                "contacts": [
                    {
                        "name": {"firstName": "Lucía", "formattedName": "Lucía Gómez"},
                        "phones": [{"phone": "+1 983", "type": "MOBILE", "waId": "1983"}],
                    }
                ],
            },
        ),
        (
            {"type": "button", "button": {"payload": "Unsubscribe", "text": "Unsubscribe"}},
            {"type": "BUTTON", "text": "Unsubscribe", "payload": "Unsubscribe"},
        ),
        (
            {
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": "cancel-button", "title": "Cancel"}},
            },
            {"type": "INTERACTIVE_BUTTON_REPLY", "id": "cancel-button", "title": "Cancel"},
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "list_reply",
                    "list_reply": {
                        "id": "priority_express",
                        "title": "Priority Mail Express",
                        "description": "Next Day to 2 Days",
                    },
                },
            },
            {
                "type": "INTERACTIVE_LIST_REPLY",
                "id": "priority_express",
                "title": "Priority Mail Express",
                "description": "Next Day to 2 Days",
            },
        ),
        ({"type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "+1"}}, {"type": "UNSUPPORTED"}),
    ],
)
def test_inbound_content(message: dict[str, Any], content: dict[str, Any]) -> None:
    assert inbound_content({"from": "16505551234", "id": "wamid.in", "timestamp": "1", **message}, MEDIA) == content


def test_inbound_report_is_infobips_shape() -> None:
    message = {
        "from": "385919998888",
        "id": "wamid.IN1",
        "timestamp": "1563535406",
        "type": "text",
        "text": {"body": "Support hello"},
    }
    value = _Value(contacts=[_Contact(_Profile("Frank"), "385919998888")])
    report = inbound_report(message, value, sender(base_url="https://graph.facebook.com"), now=0.0)
    assert report == {
        "results": [
            {
                "from": "385919998888",
                "to": "WhatsAppSender",
                "integrationType": "WHATSAPP",
                "receivedAt": "2019-07-19T11:23:26.000+0000",
                "messageId": "wamid.IN1",
                "pairedMessageId": None,
                "callbackData": None,
                "message": {"type": "TEXT", "text": "Support hello"},
                "contact": {"name": "Frank"},
            }
        ],
        "messageCount": 1,
        "pendingMessageCount": 0,
    }


# --- the routes, with an in-test store ------------------------------------------------------------------


class FakeStore:
    """Records what the routes store."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.webhooks: list[tuple[int, str, str, str, bytes]] = []

    async def record_receipts(self, receipts: list[Receipt], now: float) -> None:
        self.receipts += receipts

    async def push_webhooks(self, items: list[tuple[int, str, str, str, bytes]], now: float) -> None:
        self.webhooks += items

    async def account_by_username(self, username: str) -> Account | None:
        return Account(7, username, None, "secret", "config") if username == "Aladdin" else None


def notification(
    *,
    statuses: list[dict[str, Any]] | None = None,
    messages: list[dict[str, Any]] | None = None,
    phone_number_id: str = "106540352242922",
) -> bytes:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    }
    if statuses is not None:
        value["statuses"] = statuses
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}]
        value["messages"] = messages
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "419561257915477", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()


@pytest.fixture
async def client() -> Any:
    store = FakeStore()
    other = WhatsAppSenderConfig(
        sender="Other", phone_number_id="999", access_token="t", app_secret="other-secret", verify_token="v2"
    )
    routes = WhatsAppWebhookRoutes(
        WhatsAppConfig([sender(base_url="https://graph.facebook.com"), other]),
        [AccountConfig(username="Aladdin", password="x", inbound_url="http://127.0.0.1:1/inbound")],
        store,  # type: ignore[arg-type]
        Metrics(),
    )
    app = web.Application()
    routes.add_to(app)
    async with TestClient(TestServer(app)) as c:
        c.store = store
        yield c


async def post(client: Any, raw: bytes, signature: str | None = None, path: str = "WhatsAppSender") -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await client.post(f"/webhooks/whatsapp/{path}", data=raw, headers=headers)


async def test_verification_handshake(client: Any) -> None:
    ok = await client.get(
        "/webhooks/whatsapp/WhatsAppSender",
        params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"},
    )
    assert ok.status == 200 and await ok.text() == "1158201444" and ok.content_type == "text/plain"
    wrong = await client.get(
        "/webhooks/whatsapp/WhatsAppSender",
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
    )
    assert wrong.status == 403
    other = await client.get(
        "/webhooks/whatsapp/Other",  # the other sender's token is not this one's
        params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1"},
    )
    assert other.status == 403
    mode = await client.get(
        "/webhooks/whatsapp/WhatsAppSender",
        params={"hub.mode": "unsubscribe", "hub.verify_token": "verify-me", "hub.challenge": "1"},
    )
    assert mode.status == 403
    unknown = await client.get("/webhooks/whatsapp/Nobody", params={"hub.mode": "subscribe"})
    assert unknown.status == 404


async def test_signed_statuses_become_receipts(client: Any) -> None:
    raw = notification(
        statuses=[
            {"id": "wamid.1", "status": "sent", "timestamp": "1", "recipient_id": TO},
            {"id": "wamid.1", "status": "delivered", "timestamp": "2", "recipient_id": TO},
            {"id": "wamid.2", "status": "read", "timestamp": "3", "recipient_id": TO},
            {
                "id": "wamid.3",
                "status": "failed",
                "timestamp": "4",
                "recipient_id": TO,
                "errors": [
                    {
                        "code": 131026,
                        "title": "Message undeliverable",
                        "message": "Message undeliverable",
                        "error_data": {"details": "Message Undeliverable."},
                    }
                ],
            },
        ]
    )
    r = await post(client, raw, sign("app-secret", raw))
    assert r.status == 200, await r.text()
    assert [(x.provider_id, x.outcome, x.not_a_user) for x in client.store.receipts] == [
        ("wamid.1", "DELIVERED", False),
        ("wamid.2", "SEEN", False),
        ("wamid.3", "REJECTED", True),
    ]
    assert "131026" in (client.store.receipts[2].detail or "")


@pytest.mark.parametrize("signature", [None, "", "sha256=" + "0" * 64, "garbage"])
async def test_bad_or_missing_signature_is_refused_and_nothing_recorded(client: Any, signature: str | None) -> None:
    raw = notification(statuses=[{"id": "wamid.1", "status": "delivered", "timestamp": "2", "recipient_id": TO}])
    r = await post(client, raw, signature)
    assert r.status == 401
    assert (await r.json())["requestError"]["serviceException"]["messageId"] == "UNAUTHORIZED"
    assert client.store.receipts == [] and client.store.webhooks == []


async def test_signature_of_another_sender_is_refused(client: Any) -> None:
    raw = notification(statuses=[{"id": "wamid.1", "status": "delivered", "timestamp": "2", "recipient_id": TO}])
    assert (await post(client, raw, sign("other-secret", raw))).status == 401
    assert client.store.receipts == []


async def test_unknown_sender_and_bad_json(client: Any) -> None:
    raw = b'{"object":'
    assert (await post(client, raw, sign("app-secret", raw), path="Nobody")).status == 404
    r = await post(client, raw, sign("app-secret", raw))
    assert r.status == 400
    assert (await r.json())["requestError"]["serviceException"]["messageId"] == "BAD_REQUEST"
    wrong_shape = b'{"entry": "not a list"}'
    assert (await post(client, wrong_shape, sign("app-secret", wrong_shape))).status == 400


async def test_inbound_message_is_pushed_to_the_accounts_inbound_url(client: Any) -> None:
    raw = notification(
        messages=[
            {
                "from": "16505551234",
                "id": "wamid.IN",
                "timestamp": "1749416383",
                "type": "text",
                "text": {"body": "Does it come in another color?"},
            }
        ]
    )
    r = await post(client, raw, sign("app-secret", raw))
    assert r.status == 200
    ((account_id, report_id, url, content_type, pushed),) = client.store.webhooks
    assert (account_id, report_id, url, content_type) == (
        7,
        "inbound.wamid.IN",
        "http://127.0.0.1:1/inbound",
        "application/json",
    )
    result = json.loads(pushed)["results"][0]
    assert result["message"] == {"type": "TEXT", "text": "Does it come in another color?"}
    assert result["contact"] == {"name": "Sheena Nelson"} and result["to"] == "WhatsAppSender"


async def test_inbound_to_a_sender_without_account_is_dropped(client: Any) -> None:
    # the notification names the other number (one app's webhook carries all its numbers): it has no account
    raw = notification(
        phone_number_id="999",
        messages=[{"from": "1", "id": "wamid.X", "timestamp": "1", "type": "text", "text": {"body": "hi"}}],
    )
    r = await post(client, raw, sign("app-secret", raw))
    assert r.status == 200
    assert client.store.webhooks == []
