"""Tests for the send and scenario rules (omnirelay.domain.validation): pure, no server."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnirelay.domain.channels import Channel
from omnirelay.domain.dates import format_ts
from omnirelay.domain.model import AdvancedRequest, ChannelData, ScenarioIn, Step, TimeUnit, To
from omnirelay.domain.validation import (
    Accepted,
    Limits,
    address_for,
    prepare_send,
    validate_scenario,
    validity_seconds,
)

NOW = 1_700_000_000.0
PHONE = "41793026727"
MAX = 48 * 3600.0
VIBER_MAX = 14 * 86400.0

WA_SMS = [Step(channel="WHATSAPP", from_="447860099299"), Step(channel="SMS", from_="InfoSMS")]
SMS = [Step(channel="SMS")]
VIBER = [Step(channel="VIBER", from_="Brand")]


def request(**fields: Any) -> AdvancedRequest:
    body: dict[str, Any] = {"destinations": [{"to": {"phoneNumber": PHONE}}], **fields}
    return msgspec.convert(body, AdvancedRequest)


def accepted(req: AdvancedRequest, flow: list[Step], limits: Limits | None = None, now: float = NOW) -> Accepted:
    result = prepare_send(req, flow, now, limits or Limits())
    assert isinstance(result, Accepted), result
    return result


def errors_of(req: AdvancedRequest, flow: list[Step], limits: Limits | None = None) -> dict[str, list[str]]:
    result = prepare_send(req, flow, NOW, limits or Limits())
    assert isinstance(result, dict), f"expected validation errors, got {result!r}"
    return result


def validity(channel: str, period: int | None, unit: str | None = None, limits: Limits | None = None) -> float:
    data: dict[str, Any] = {"text": "hi"}
    if period is not None:
        data["validityPeriod"] = period
    if unit is not None:
        data["validityPeriodTimeUnit"] = unit
    flow = {"SMS": SMS, "VIBER": VIBER, "WHATSAPP": WA_SMS[:1]}[channel]
    field_name = {"SMS": "sms", "VIBER": "viber", "WHATSAPP": "whatsApp"}[channel]
    plan = accepted(request(**{field_name: data}), flow, limits)
    return plan.steps[0].validity_s


# --- validity -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "unit", "expected"),
    [
        (None, None, MAX),  # no period: the longest the channel supports
        (10, "SECONDS", 30.0),  # under 30 s: raised to the floor
        (0, None, 30.0),
        (29, "SECONDS", 30.0),
        (30, "SECONDS", 30.0),
        (31, "SECONDS", 31.0),
        (3, None, 180.0),  # minutes are the default unit
        (3, "MINUTES", 180.0),
        (2, "HOURS", 7200.0),
        (1, "DAYS", 86400.0),
        (90_000, "MILLISECONDS", 90.0),
        (48, "HOURS", MAX),
        (49, "HOURS", MAX),  # over 48 h: cut to 48 h
        (3000, None, MAX),
        (10, "DAYS", MAX),
    ],
)
def test_sms_validity_is_clamped(period: int | None, unit: str | None, expected: float) -> None:
    assert validity("SMS", period, unit) == expected


def test_whatsapp_validity_is_clamped_like_sms() -> None:
    assert validity("WHATSAPP", 5, "SECONDS") == 30.0
    assert validity("WHATSAPP", 3, "DAYS") == MAX


@pytest.mark.parametrize(
    ("period", "unit", "expected"),
    [
        (10, "DAYS", 10 * 86400.0),  # Viber may wait up to 14 days
        (14, "DAYS", VIBER_MAX),
        (15, "DAYS", VIBER_MAX),
        (72, "HOURS", 72 * 3600.0),
        (10, "SECONDS", 35.0),  # Viber's floor is 35 s
        (40, "SECONDS", 40.0),
    ],
)
def test_viber_validity_is_clamped(period: int, unit: str, expected: float) -> None:
    assert validity("VIBER", period, unit) == expected


def test_viber_without_period_waits_48_hours() -> None:
    assert validity("VIBER", None) == MAX


def test_floor_is_configurable() -> None:
    limits = Limits(min_validity_seconds=1)
    assert validity("SMS", 5, "SECONDS", limits) == 5.0
    assert validity("SMS", 500, "MILLISECONDS", limits) == 1.0
    assert validity("SMS", 0, None, limits) == 1.0
    assert validity("VIBER", 5, "SECONDS", limits) == 5.0
    assert validity("SMS", 49, "HOURS", limits) == MAX  # the ceiling stays


def test_validity_seconds_direct() -> None:
    limits = Limits()
    assert validity_seconds(Channel.SMS, None, limits) == MAX
    assert validity_seconds(Channel.SMS, ChannelData(text="x"), limits) == MAX
    data = ChannelData(text="x", validityPeriod=90, validityPeriodTimeUnit=TimeUnit.SECONDS)
    assert validity_seconds(Channel.SMS, data, limits) == 90.0
    assert validity_seconds(Channel.EMAIL, ChannelData(validityPeriod=120), limits) == 7200.0


def test_each_step_gets_its_own_validity() -> None:
    req = request(
        whatsApp={"text": "hi", "validityPeriod": 1},
        sms={"text": "hi", "validityPeriod": 90, "validityPeriodTimeUnit": "SECONDS"},
    )
    plan = accepted(req, WA_SMS)
    assert [(s.channel, s.sender, s.validity_s) for s in plan.steps] == [
        ("WHATSAPP", "447860099299", 60.0),
        ("SMS", "InfoSMS", 90.0),
    ]


# --- destinations and addresses -------------------------------------------------------------------


def test_accepts_plain_request() -> None:
    plan = accepted(request(sms={"text": "hello"}, bulkId="b1"), SMS)
    assert plan.bulk_id == "b1"
    assert len(plan.destinations) == 1
    assert plan.destinations[0].to.phoneNumber == PHONE
    assert plan.content == {"sms": {"text": "hello"}}
    assert plan.send_at is None


def test_destinations_required() -> None:
    req = msgspec.convert({"sms": {"text": "x"}}, AdvancedRequest)
    assert "destinations" in errors_of(req, SMS)
    req = msgspec.convert({"destinations": [], "sms": {"text": "x"}}, AdvancedRequest)
    assert "destinations" in errors_of(req, SMS)


def test_too_many_destinations() -> None:
    req = request(sms={"text": "x"})
    req = msgspec.structs.replace(req, destinations=(req.destinations or []) * 3)
    assert "destinations" in errors_of(req, SMS, Limits(max_destinations=2))


def rejections(req: AdvancedRequest, flow: list[Step]) -> dict[int, tuple[str, str]]:
    """The refused destinations of a valid request: index -> (status, reason)."""
    plan = accepted(req, flow)
    return {i: (d.rejected.status, d.rejected.reason) for i, d in enumerate(plan.destinations) if d.rejected}


def test_destination_without_to_is_missing_to() -> None:
    req = msgspec.convert({"destinations": [{"messageId": "m1"}], "sms": {"text": "x"}}, AdvancedRequest)
    assert rejections(req, SMS) == {0: ("MISSING_TO", "destinations[0].to is required")}


def test_destination_needs_address_for_a_channel_with_content() -> None:
    req = msgspec.convert(
        {"destinations": [{"to": {"emailAddress": "jane@example.com"}}], "sms": {"text": "x"}}, AdvancedRequest
    )
    status, reason = rejections(req, SMS)[0]
    assert status == "MISSING_TO"
    assert reason.startswith("destinations[0].to ") and "phoneNumber" in reason


def test_one_usable_channel_is_enough() -> None:
    flow = [Step(channel="WHATSAPP", from_="447860099299"), Step(channel="EMAIL", from_="a@example.com")]
    req = msgspec.convert(
        {
            "destinations": [{"to": {"emailAddress": "jane@example.com"}}],
            "whatsApp": {"text": "x"},
            "email": {"text": "x", "subject": "s"},
        },
        AdvancedRequest,
    )
    assert rejections(req, flow) == {}


def test_address_must_be_for_a_channel_that_has_content() -> None:
    """An e-mail address does not help when only the WhatsApp step has content."""
    flow = [Step(channel="WHATSAPP", from_="447860099299"), Step(channel="EMAIL", from_="a@example.com")]
    req = msgspec.convert(
        {"destinations": [{"to": {"emailAddress": "jane@example.com"}}], "whatsApp": {"text": "x"}},
        AdvancedRequest,
    )
    assert rejections(req, flow)[0][0] == "MISSING_TO"


def test_whatsapp_user_id_addresses_whatsapp() -> None:
    req = msgspec.convert(
        {"destinations": [{"to": {"whatsAppUserId": "wa-user-1"}}], "whatsApp": {"text": "x"}}, AdvancedRequest
    )
    assert rejections(req, WA_SMS[:1]) == {}


@pytest.mark.parametrize("phone", ["abc", "12", "+41 79 302 67 27", "4179302672712345678901"])
def test_bad_phone_number_is_rejected_destination(phone: str) -> None:
    req = msgspec.convert({"destinations": [{"to": {"phoneNumber": phone}}], "sms": {"text": "x"}}, AdvancedRequest)
    status, reason = rejections(req, SMS)[0]
    assert status == "REJECTED_DESTINATION"
    assert reason.startswith("destinations[0].to.phoneNumber ")


@pytest.mark.parametrize("phone", ["0793026727", "+0793026727", "0041793026727"])
def test_national_number_is_prefix_missing(phone: str) -> None:
    req = msgspec.convert({"destinations": [{"to": {"phoneNumber": phone}}], "sms": {"text": "x"}}, AdvancedRequest)
    assert rejections(req, SMS)[0][0] == "REJECTED_PREFIX_MISSING"


@pytest.mark.parametrize("phone", ["41793026727", "+41793026727", "385"])
def test_good_phone_number(phone: str) -> None:
    req = msgspec.convert({"destinations": [{"to": {"phoneNumber": phone}}], "sms": {"text": "x"}}, AdvancedRequest)
    assert rejections(req, SMS) == {}


@pytest.mark.parametrize("address", ["jane", "jane@", "jane@example", "ja ne@example.com"])
def test_bad_email_address(address: str) -> None:
    req = msgspec.convert(
        {"destinations": [{"to": {"emailAddress": address}}], "email": {"text": "x"}}, AdvancedRequest
    )
    status, reason = rejections(req, [Step(channel="EMAIL", from_="a@example.com")])[0]
    assert status == "REJECTED_DESTINATION"
    assert reason.startswith("destinations[0].to.emailAddress ")


def test_one_bad_destination_does_not_sink_the_request() -> None:
    good = [{"to": {"phoneNumber": f"4179302672{i}"}} for i in range(5)]
    req = msgspec.convert(
        {"destinations": [*good[:2], {"to": {"phoneNumber": "nope"}}, *good[2:]], "sms": {"text": "x"}},
        AdvancedRequest,
    )
    plan = accepted(req, SMS)
    assert [d.rejected is not None for d in plan.destinations] == [False, False, True, False, False, False]
    assert plan.rejected == 1
    assert plan.fresh == 6  # the refused one is stored too, under an id of its own
    assert [d.to.phoneNumber for d in plan.destinations] == ["41793026720", "41793026721", "nope",
                                                             "41793026722", "41793026723", "41793026724"]


def test_every_destination_rejected_is_still_a_plan() -> None:
    req = msgspec.convert(
        {"destinations": [{"to": {"phoneNumber": "x"}}, {"to": {}}], "sms": {"text": "x"}}, AdvancedRequest
    )
    assert [s for s, _ in rejections(req, SMS).values()] == ["REJECTED_DESTINATION", "MISSING_TO"]


def test_duplicate_message_id_rejects_the_later_destination_only() -> None:
    req = msgspec.convert(
        {
            "destinations": [
                {"to": {"phoneNumber": PHONE}, "messageId": "m1"},
                {"to": {"phoneNumber": "41793026728"}, "messageId": "m1"},
                {"to": {"phoneNumber": "41793026729"}, "messageId": "m2"},
            ],
            "sms": {"text": "x"},
        },
        AdvancedRequest,
    )
    plan = accepted(req, SMS)
    assert [(d.duplicate, d.rejected.status if d.rejected else None) for d in plan.destinations] == [
        (False, None),
        (True, "REJECTED_DUPLICATE_MESSAGE_ID"),
        (False, None),
    ]
    assert plan.fresh == 0


def test_request_errors_still_fail_the_whole_request() -> None:
    req = msgspec.convert(
        {"destinations": [{"to": {"phoneNumber": "x"}}], "sms": {"text": "x"}, "notifyUrl": "nope"}, AdvancedRequest
    )
    assert set(errors_of(req, SMS)) == {"notifyUrl"}


def test_address_for_prefers_fields_in_order() -> None:
    to = To(phoneNumber=PHONE, whatsAppUserId="wa-1", emailAddress="jane@example.com")
    assert address_for(Channel.WHATSAPP, to) == PHONE
    assert address_for(Channel.WHATSAPP, To(whatsAppUserId="wa-1")) == "wa-1"
    assert address_for(Channel.EMAIL, to) == "jane@example.com"
    assert address_for(Channel.SMS, To(emailAddress="jane@example.com")) is None


# --- content --------------------------------------------------------------------------------------


def test_scenario_channels_need_content() -> None:
    errors = errors_of(request(email={"text": "x"}), SMS)
    assert "sms" in errors


def test_empty_text_is_rejected() -> None:
    assert "sms.text" in errors_of(request(sms={"text": ""}), SMS)


def test_whatsapp_needs_some_content() -> None:
    assert "whatsApp" in errors_of(request(whatsApp={"previewUrl": True}), WA_SMS[:1])


def test_whatsapp_template_needs_a_name_and_a_language_only() -> None:
    errors = errors_of(request(whatsApp={"templateName": "welcome"}), WA_SMS[:1])
    assert set(errors) == {"whatsApp.language"}, errors
    accepted(request(whatsApp={"templateName": "welcome", "language": "en"}), WA_SMS[:1])


def test_whatsapp_template_data_alone_needs_a_name_and_a_language() -> None:
    errors = errors_of(request(whatsApp={"templateData": ["a"]}), WA_SMS[:1])
    assert {"whatsApp.templateName", "whatsApp.language"} <= set(errors), errors
    assert "whatsApp.templateNamespace" not in errors


def test_whatsapp_template_without_namespace_is_accepted() -> None:
    template = {"templateName": "welcome", "templateData": ["Jane"], "language": "en"}
    plan = accepted(request(whatsApp=template), WA_SMS[:1])
    assert plan.content["whatsApp"]["templateName"] == "welcome"


def test_whatsapp_media_template_without_template_data_is_accepted() -> None:
    template = {"templateName": "media", "language": "en",
                "mediaTemplateData": {"header": {"imageUrl": "https://e.com/i.png"}, "body": {"placeholders": []}}}
    accepted(request(whatsApp=template), WA_SMS[:1])


def test_whatsapp_media_template_needs_its_body_placeholders() -> None:
    base = {"templateName": "media", "language": "en"}
    no_body = {**base, "mediaTemplateData": {"header": {"imageUrl": "https://e.com/i.png"}}}
    assert set(errors_of(request(whatsApp=no_body), WA_SMS[:1])) == {"whatsApp.mediaTemplateData.body"}
    no_list = {**base, "mediaTemplateData": {"body": {}}}
    assert set(errors_of(request(whatsApp=no_list), WA_SMS[:1])) == {"whatsApp.mediaTemplateData.body.placeholders"}
    empty_value = {**base, "mediaTemplateData": {"body": {"placeholders": ["a", ""]}}}
    assert "whatsApp.mediaTemplateData.body.placeholders" in errors_of(request(whatsApp=empty_value), WA_SMS[:1])


def test_whatsapp_location_needs_both_coordinates() -> None:
    assert "whatsApp.longitude" in errors_of(request(whatsApp={"latitude": 45.0}), WA_SMS[:1])
    accepted(request(whatsApp={"latitude": 45.0, "longitude": 15.0}), WA_SMS[:1])


def test_whatsapp_media_url_must_be_http() -> None:
    assert "whatsApp.imageUrl" in errors_of(request(whatsApp={"imageUrl": "ftp://x/y.png"}), WA_SMS[:1])


def test_whatsapp_text_length() -> None:
    assert "whatsApp.text" in errors_of(request(whatsApp={"text": "x" * 4097}), WA_SMS[:1])
    accepted(request(whatsApp={"text": "x" * 4096}), WA_SMS[:1])


def test_viber_rules() -> None:
    assert "viber.fileType" in errors_of(request(viber={"text": "x", "fileType": "exe"}), VIBER)
    assert "viber.buttonURL" in errors_of(request(viber={"text": "x", "buttonText": "Go"}), VIBER)
    accepted(request(viber={"text": "x", "buttonText": "Go", "buttonURL": "https://example.com"}), VIBER)


# --- options --------------------------------------------------------------------------------------


def test_notify_url_and_content_type() -> None:
    assert "notifyUrl" in errors_of(request(sms={"text": "x"}, notifyUrl="not a url"), SMS)
    assert "notifyContentType" in errors_of(request(sms={"text": "x"}, notifyContentType="text/plain"), SMS)
    plan = accepted(
        request(sms={"text": "x"}, notifyUrl="https://example.com/hook", notifyContentType="application/json"),
        SMS,
    )
    assert plan.options == {"notifyUrl": "https://example.com/hook", "notifyContentType": "application/json"}


def test_send_at_in_future_is_kept() -> None:
    plan = accepted(request(sms={"text": "x"}, sendAt=format_ts(NOW + 3600)), SMS)
    assert plan.send_at == pytest.approx(NOW + 3600)


def test_send_at_in_past_means_now() -> None:
    plan = accepted(request(sms={"text": "x"}, sendAt=format_ts(NOW - 3600)), SMS)
    assert plan.send_at is None


def test_send_at_too_far_or_garbage() -> None:
    assert "sendAt" in errors_of(request(sms={"text": "x"}, sendAt=format_ts(NOW + 181 * 86400)), SMS)
    assert "sendAt" in errors_of(request(sms={"text": "x"}, sendAt="tomorrow"), SMS)


# --- idempotency hash -----------------------------------------------------------------------------


def _with_ids(req: AdvancedRequest) -> AdvancedRequest:
    """The request with a client message id on every destination (only those are fingerprinted)."""
    dests = [msgspec.structs.replace(d, messageId=f"m{i}") for i, d in enumerate(req.destinations or [])]
    return msgspec.structs.replace(req, destinations=dests)


def _hash(req: AdvancedRequest, flow: list[Step] = SMS) -> bytes:
    return accepted(_with_ids(req), flow).destinations[0].content_hash


def test_no_fingerprint_without_client_message_id() -> None:
    assert accepted(request(sms={"text": "hello"}), SMS).destinations[0].content_hash == b""


def test_content_hash_equal_for_identical_requests() -> None:
    a = request(sms={"text": "hello"}, callbackData="cb")
    b = request(sms={"text": "hello"}, callbackData="cb")
    assert _hash(a) == _hash(b)
    assert len(_hash(a)) == 16


def test_content_hash_differs_for_different_content() -> None:
    base = _hash(request(sms={"text": "hello"}))
    assert _hash(request(sms={"text": "hello!"})) != base
    assert _hash(request(sms={"text": "hello", "validityPeriod": 5})) != base
    assert _hash(request(sms={"text": "hello"}, callbackData="cb")) != base
    assert _hash(request(sms={"text": "hello"}, notifyUrl="https://example.com/h")) != base
    assert _hash(request(sms={"text": "hello"}, sendAt=format_ts(NOW + 60))) != base
    assert _hash(request(sms={"text": "hello"}), [Step(channel="SMS", from_="Other")]) != base


def test_content_hash_differs_per_destination() -> None:
    req = msgspec.convert(
        {
            "destinations": [{"to": {"phoneNumber": PHONE}}, {"to": {"phoneNumber": "41793026728"}}],
            "sms": {"text": "hello"},
        },
        AdvancedRequest,
    )
    plan = accepted(_with_ids(req), SMS)
    assert plan.destinations[0].content_hash != plan.destinations[1].content_hash
    alone = _hash(
        msgspec.convert(
            {"destinations": [{"to": {"phoneNumber": "41793026728"}}], "sms": {"text": "hello"}}, AdvancedRequest
        )
    )
    assert plan.destinations[1].content_hash == alone


def test_content_hash_ignores_time_of_request() -> None:
    req = request(sms={"text": "hello"})
    assert (
        accepted(_with_ids(req), SMS, now=NOW).destinations[0].content_hash
        == accepted(_with_ids(req), SMS, now=NOW + 10).destinations[0].content_hash
    )


# --- scenarios ------------------------------------------------------------------------------------


def scenario(**body: Any) -> ScenarioIn:
    return msgspec.convert(body, ScenarioIn)


def test_valid_scenario() -> None:
    errors, flow = validate_scenario(
        scenario(name="wa-sms", flow=[{"channel": "WHATSAPP", "from": " 447860099299 "}, {"channel": "SMS"}])
    )
    assert errors == {}
    assert flow == [Step(channel="WHATSAPP", from_="447860099299"), Step(channel="SMS", from_=None)]


def test_scenario_needs_a_step() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"length >= 1 - at `\$.flow`"):
        scenario(flow=[])


def test_scenario_channel_once() -> None:
    errors, _ = validate_scenario(scenario(flow=[{"channel": "SMS"}, {"channel": "SMS"}]))
    assert "flow[1].channel" in errors
    assert "flow[0].channel" not in errors


def test_scenario_alias_resolves_and_counts_as_same_channel() -> None:
    errors, flow = validate_scenario(scenario(flow=[{"channel": "VK"}]))
    assert errors == {}
    assert flow[0].channel == "VKONTAKTE"
    errors, _ = validate_scenario(scenario(flow=[{"channel": "VK"}, {"channel": "VKONTAKTE"}]))
    assert "flow[1].channel" in errors


@pytest.mark.parametrize("channel", ["WHATSAPP", "VIBER", "EMAIL", "PUSH", "KAKAO_ALIM", "KAKAO_CHINGU"])
def test_scenario_sender_required(channel: str) -> None:
    errors, _ = validate_scenario(scenario(flow=[{"channel": channel}]))
    assert "flow[0].from" in errors
    errors, _ = validate_scenario(scenario(flow=[{"channel": channel, "from": "   "}]))
    assert "flow[0].from" in errors


@pytest.mark.parametrize("channel", ["SMS", "VOICE"])
def test_scenario_sender_optional(channel: str) -> None:
    errors, _ = validate_scenario(scenario(flow=[{"channel": channel}]))
    assert errors == {}


def test_scenario_email_sender_must_be_address() -> None:
    errors, _ = validate_scenario(scenario(flow=[{"channel": "EMAIL", "from": "Jane"}]))
    assert "flow[0].from" in errors
    errors, _ = validate_scenario(scenario(flow=[{"channel": "EMAIL", "from": "jane@example.com"}]))
    assert errors == {}


def test_scenario_name_length() -> None:
    errors, _ = validate_scenario(scenario(name="n" * 201, flow=[{"channel": "SMS"}]))
    assert "name" in errors
    errors, _ = validate_scenario(scenario(name="n" * 200, flow=[{"channel": "SMS"}]))
    assert errors == {}


def test_scenario_unknown_channel_is_a_type_error() -> None:
    with pytest.raises(msgspec.ValidationError):
        scenario(flow=[{"channel": "PIGEON"}])


@given(
    st.lists(
        st.tuples(st.sampled_from([PHONE, "41793026728", "+41793026729", "nope", "12", "0791234567", None]),
                  st.sampled_from([None, "a", "b", "c"])),
        min_size=1,
        max_size=30,
    )
)
def test_every_destination_is_answered_in_place(rows: list[tuple[str | None, str | None]]) -> None:
    destinations = [
        {**({"to": {"phoneNumber": p}} if p is not None else {}), **({"messageId": m} if m else {})} for p, m in rows
    ]
    req = msgspec.convert({"destinations": destinations, "sms": {"text": "x"}}, AdvancedRequest)
    plan = accepted(req, SMS)
    assert len(plan.destinations) == len(rows)
    seen: set[str] = set()
    for (phone, mid), d in zip(rows, plan.destinations, strict=True):
        duplicate = mid is not None and mid in seen
        seen |= {mid} if mid else set()
        good = phone is not None and phone not in ("nope", "12", "0791234567")
        assert d.duplicate == duplicate
        assert (d.rejected is None) == (good and not duplicate)
        assert d.message_id == mid
    assert plan.rejected == sum(d.rejected is not None for d in plan.destinations)
    assert plan.fresh == sum(mid is None for _, mid in rows)
