"""The XML mapping of the OMNI wire types (omnirelay.domain.xml)."""

from __future__ import annotations

from xml.etree import ElementTree

import msgspec
import pytest

from omnirelay.domain.model import AdvancedRequest, ScenarioIn
from omnirelay.domain.xml import XmlError, from_xml, to_xml


def read(body: str, type_: type) -> object:
    return msgspec.convert(from_xml(body.encode(), type_), type_, strict=False)


def test_wrapped_lists_typed_scalars_and_renamed_fields() -> None:
    scenario = read("<scenario><name>n</name><flow><step><from>InfoSMS</from><channel>SMS</channel></step>"
                    "<step><channel>EMAIL</channel></step></flow><default>true</default></scenario>", ScenarioIn)
    assert isinstance(scenario, ScenarioIn)
    assert [(s.from_, s.channel.value) for s in scenario.flow] == [("InfoSMS", "SMS"), (None, "EMAIL")]
    assert scenario.default is True


def test_doubled_and_unwrapped_list_elements_are_both_read() -> None:
    doubled = ("<OmniAdvancedRequest><destinations><destinations><to><phoneNumber>41793026700</phoneNumber></to>"
               "</destinations><destinations><messageId>m</messageId><to><phoneNumber>41793026701</phoneNumber></to>"
               "</destinations></destinations><whatsApp><templateData><templateData>a</templateData>"
               "<templateData>b</templateData></templateData></whatsApp></OmniAdvancedRequest>")
    unwrapped = ("<OmniAdvancedRequest><destinations><to><phoneNumber>41793026700</phoneNumber></to></destinations>"
                 "<destinations><messageId>m</messageId><to><phoneNumber>41793026701</phoneNumber></to>"
                 "</destinations><whatsApp><templateData>a</templateData><templateData>b</templateData></whatsApp>"
                 "</OmniAdvancedRequest>")
    for body in (doubled, unwrapped):
        request = read(body, AdvancedRequest)
        assert isinstance(request, AdvancedRequest)
        assert [(d.messageId, d.to.phoneNumber if d.to else None) for d in request.destinations or []] == [
            (None, "41793026700"), ("m", "41793026701")]
        assert request.whatsApp is not None and request.whatsApp.templateData == ["a", "b"]


def test_free_objects_keep_their_children_and_unknown_elements_are_ignored() -> None:
    request = read("<r xmlns='urn:x'><push><customPayload><deepLink>app://x</deepLink><n><a>1</a></n></customPayload>"
                   "<personSubscriptions><personSubscriptions>s</personSubscriptions></personSubscriptions>"
                   "<shoeSize>44</shoeSize></push><sms><validityPeriod> 90 </validityPeriod><text> keep </text>"
                   "</sms></r>", AdvancedRequest)
    assert isinstance(request, AdvancedRequest) and request.push is not None and request.sms is not None
    assert request.push.customPayload == {"deepLink": "app://x", "n": {"a": "1"}}
    assert request.push.personSubscriptions == ["s"]
    assert request.sms.validityPeriod == 90 and request.sms.text == " keep "


def test_wrong_types_fail_like_json_naming_the_field() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.sms\.validityPeriod"):
        read("<r><sms><validityPeriod>soon</validityPeriod></sms></r>", AdvancedRequest)


@pytest.mark.parametrize("body", [
    "<scenario><name>unclosed</scenario>",
    '<!DOCTYPE s [<!ENTITY e "x">]><scenario><name>&e;</name></scenario>',
    '<!DOCTYPE s SYSTEM "http://127.0.0.1:9/dtd"><scenario/>',
    "",
])
def test_malformed_or_entity_declaring_documents_are_refused(body: str) -> None:
    with pytest.raises(XmlError):
        from_xml(body.encode(), ScenarioIn)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep = "<r><push><customPayload>" + "<a>" * 5000 + "x" + "</a>" * 5000 + "</customPayload></push></r>"
    with pytest.raises(XmlError, match="nested too deeply"):
        from_xml(deep.encode(), AdvancedRequest)


def test_answers_use_infobips_element_names() -> None:
    body = to_xml({"bulkId": "b", "messages": [{"to": {"phoneNumber": "1"}, "status": {"id": 7}, "ok": True,
                                                "none": None}]}, "omniResponse")
    root = ElementTree.fromstring(body)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><omniResponse>')
    assert [c.tag for c in root] == ["bulkId", "messages"]
    (message,) = root.find("messages") or []
    assert message.tag == "message" and [c.tag for c in message] == ["to", "status", "ok"]
    assert message.findtext("ok") == "true" and message.findtext("status/id") == "7"


def test_validation_errors_and_text_are_escaped() -> None:
    body = to_xml({"requestError": {"serviceException": {"messageId": "BAD_REQUEST", "text": "a <b> & 'c'",
                                                         "validationErrors": {"destinations[0].to": ["x", "y"]}}}},
                  "ApiException")
    details = ElementTree.fromstring(body).find("requestError/serviceException")
    assert details is not None and details.findtext("text") == "a <b> & 'c'"
    (field,) = details.findall("validationErrors/field")
    assert field.get("name") == "destinations[0].to" and [m.text for m in field] == ["x", "y"]
