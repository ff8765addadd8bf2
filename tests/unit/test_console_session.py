"""The console's session and form tokens."""

from __future__ import annotations

from omnirelay.console.session import Session, csrf_token, new_token, same, token_hash


def test_tokens_are_random_and_stored_only_as_a_hash() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) >= 43  # 256 bits
    assert token not in token_hash(token)
    assert token_hash(token) == token_hash(token)


def test_the_form_token_is_neither_the_cookie_nor_what_the_store_keeps() -> None:
    token = new_token()
    session = Session(7, "Aladdin", token)
    assert session.csrf == csrf_token(token)
    assert session.csrf not in (token, token_hash(token))
    assert csrf_token(new_token()) != session.csrf


def test_same() -> None:
    assert same("abc", "abc")
    assert not same("abd", "abc")
    assert not same("", "abc")
    assert not same(None, "abc")
