"""``sms.language`` and ``sms.transliteration`` as a client sees them: the parts its reports count."""

from __future__ import annotations

from .conftest import Gateway
from .test_bulk_rejections import SMS_FLOW, number
from .test_failover import uid, wait_reports


def test_infobips_turkish_example_is_reported_as_one_sms(gateway: Gateway) -> None:
    """The ``sms`` object of Infobip's example (transliteration TURKISH, language TR): one part, not two."""
    key = gateway.create_scenario(SMS_FLOW, name="sms only")["key"]
    text = "Artık Ulusal Dil Tanımlayıcısı ile Türkçe karakterli smslerinizi rahatlıkla iletebilirsiniz."
    counts = {}
    for label, sms in {
        "as in the example": {"text": text, "transliteration": "TURKISH", "language": {"languageCode": "TR"}},
        "language only": {"text": text, "language": {"languageCode": "TR"}},
        "neither": {"text": text},
    }.items():
        mid = uid("tr")
        r = gateway.post("/omni/1/advanced", {"scenarioKey": key, "sms": sms,
                                              "destinations": [{"messageId": mid, "to": {"phoneNumber": number(7)}}]})
        assert r.status == 200, r
        (report,) = wait_reports(gateway, 1, messageId=mid)
        counts[label] = report["messageCount"]
    assert counts == {"as in the example": 1, "language only": 1, "neither": 2}
