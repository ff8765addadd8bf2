"""SMS national language tables and transliteration on the wire: what the node-smpp SMSC receives."""

from __future__ import annotations

from typing import Any

from omnirelay.connectors.smpp.text import gsm7_decode
from omnirelay.domain.delivery import Submission
from omnirelay.domain.smscount import sms_parts
from tests.integration.test_smpp import connector, make_channel  # noqa: F401 - the fixture

TR = 1


def submission(i: int, sms: dict[str, Any]) -> Submission:
    return Submission(i, 0, 1, f"msg-{i}", "SMS", "InfoSMS", f"90532123456{i}", {"sms": sms}, 3600)


def udh_and_septets(pdu: dict[str, Any]) -> tuple[bytes, bytes]:
    octets = bytes.fromhex(pdu["short_message"])
    assert pdu["esm_class"] & 0x40, pdu
    return octets[: octets[0] + 1], octets[octets[0] + 1 :]


async def test_turkish_single_part_carries_the_single_shift_element(make_smsc: Any, make_channel: Any) -> None:  # noqa: F811
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc))
    text = "Artık Ulusal Dil Tanımlayıcısı ile Türkçe karakterli smslerinizi rahatlıkla iletebilirsiniz."
    sms = {"text": text, "language": {"languageCode": "TR"}}
    [result] = await channel.submit([submission(1, sms)])
    assert result.provider_id
    [pdu] = smsc.submits()  # one part, as Infobip counts it (UCS-2 would take two)
    assert sms_parts(sms) == 1
    assert pdu["data_coding"] == 0 and pdu["registered_delivery"] == 1
    udh, septets = udh_and_septets(pdu)
    assert udh == bytes((3, 0x24, 1, TR))
    assert gsm7_decode(septets, 0, TR) == text
    assert septets.count(0x1B) == text.count("ı") + text.count("ç")  # each one ESC + its code


async def test_turkish_concatenated_with_the_locking_shift_table(make_smsc: Any, make_channel: Any) -> None:  # noqa: F811
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc))
    text = "Şişli'de güzel bir gün, İstanbul ışıl ışıl. " * 12  # 528 characters, 108 of them Turkish letters
    sms = {"text": text, "language": {"languageCode": "TR"}}
    [result] = await channel.submit([submission(2, sms)])
    pdus = smsc.submits()
    assert len(pdus) == sms_parts(sms) == 4  # 149 septets a part (5 with the single shift table, 8 in UCS-2)
    refs = set()
    for seq, pdu in enumerate(pdus, 1):
        udh, septets = udh_and_septets(pdu)
        assert udh[:3] == bytes((8, 0x00, 3)) and udh[4:] == bytes((4, seq, 0x25, 1, TR))
        refs.add(udh[3])
        assert pdu["data_coding"] == 0
        assert len(septets) <= 149
        assert 0x1B not in septets  # every character is in the locking shift table
    assert len(refs) == 1
    assert "".join(gsm7_decode(udh_and_septets(p)[1], TR, 0) for p in pdus) == text
    assert result.provider_id == f"smsc:{pdus[-1]['message_id']}"


async def test_transliterated_text_goes_as_plain_gsm7(make_smsc: Any, make_channel: Any) -> None:  # noqa: F811
    smsc = make_smsc()
    channel, _ = await make_channel(connector(smsc))
    await channel.submit([submission(3, {"text": "Işık ğüzel", "transliteration": "TURKISH"})])
    [pdu] = smsc.submits()
    assert (pdu["data_coding"], pdu["esm_class"]) == (0, 0)
    assert gsm7_decode(bytes.fromhex(pdu["short_message"])) == "Isik güzel"
