"""The checks on request bodies that run before anything is stored: where text no database keeps is, and where
JSON nests too deep, named as a client would write the field."""

from __future__ import annotations

import msgspec
import pytest

from omnirelay.api.params import MAX_DEPTH, _deep_path, bad_text, too_deep
from omnirelay.domain.model import AdvancedRequest

_advanced = msgspec.json.Decoder(AdvancedRequest)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"destinations":[{"to":{}},{"messageId":"a\\u0000"}]}', "destinations[1].messageId"),
        (b'{"destinations":[{"messageId":"a\\ud800"}]}', "destinations[0].messageId"),
        (b'{"destinations":[{"messageId":"a\xff"}]}', "destinations[0].messageId"),
        (b'{"sms":{"text":"\\udfff\\ud800"}}', "sms.text"),
        (b'"\\u0000"', ""),
    ],
)
def test_bad_text_is_found_by_its_path(body: bytes, path: str) -> None:
    found = bad_text(body)
    assert found is not None and found[0] == path, found


def test_a_bad_key_names_its_object() -> None:
    found = bad_text(b'{"sms":{"regional":{"a\\u0000":1}}}')
    assert found is not None and found[0] == "sms.regional" and "key" in found[1]


@pytest.mark.parametrize("body", [b'{"a":"fine \\u00e9 \\ud83d\\ude00"}', b'{"a":"\\\\u0000 is escaped"}', b"{oops"])
def test_good_or_unparsable_bodies_have_no_bad_text(body: bytes) -> None:
    assert bad_text(body) is None


def _with_regional(levels: int) -> bytes:
    head = b'{"destinations":[{"to":{"phoneNumber":"1"}}],"sms":{"regional":{"x":'
    return head + b"[" * levels + b"]" * levels + b"}}}"


def test_depth_is_counted_from_the_body() -> None:
    # body, sms, regional: 3 levels before the arrays
    assert too_deep(_advanced.decode(_with_regional(MAX_DEPTH - 3))) is None
    assert too_deep(_advanced.decode(_with_regional(MAX_DEPTH - 2))) == "sms.regional.x[0]"


def test_typed_parts_are_not_walked() -> None:
    body = b'{"destinations":[' + b",".join([b'{"to":{"phoneNumber":"1"}}'] * 5000) + b'],"sms":{"text":"x"}}'
    assert too_deep(_advanced.decode(body)) is None


def test_the_path_of_json_too_deep_to_decode() -> None:
    assert _deep_path(_with_regional(5000)) == "sms.regional.x[0]"
    assert _deep_path(b'{"a":"[[[[","b":[1,{"c":' + b"[" * 100 + b"]" * 100 + b"}]}") == "b[1].c[0]"
