"""Sessions (``POST``/``DELETE /auth/1/session``, ``Authorization: IBSSO``) and OAuth2 client credentials
(``POST /auth/1/oauth2/token``, ``Authorization: Bearer``), as an Infobip client uses them; and hostile
``Authorization`` headers, which are a 401 like any other bad credentials."""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from .conftest import ALADDIN_CONFIG, ALADDIN_KEY, BOB_KEY, STORE, UNAUTHORIZED, Gateway, app_auth, basic_auth

pytestmark = pytest.mark.timeout(120)

SHORT = ALADDIN_CONFIG + """
[auth]
session_idle_minutes = 0.05   # 3 s
oauth_token_seconds = 2
"""


def login(gw: Gateway, username: str = "Aladdin", password: str = "open sesame") -> str:
    r = gw.post("/auth/1/session", {"username": username, "password": password}, auth=None)
    assert r.status == 200, r
    assert set(r.json) == {"token"}
    token: str = r.json["token"]
    return token


def oauth(gw: Gateway, client_id: str = "Aladdin", secret: str = "open sesame", **extra: str) -> Any:
    form = {"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials", **extra}
    return gw.post("/auth/1/oauth2/token", urllib.parse.urlencode(form), auth=None,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


def scenarios(gw: Gateway, auth: str) -> int:
    return gw.get("/omni/1/scenarios", auth=auth).status


# --- hostile Authorization headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    b"Basic \xff\xfe", b"App \xff" + ALADDIN_KEY.encode(), b"\xff", b"IBSSO \xc3\x28", b"Bearer \xe2\x82",
    "Basic Äladdin".encode(), b"Basic " + b"\xa0" * 40,
], ids=["basic", "app", "bare", "ibsso", "bearer", "non-ascii basic", "latin-1 basic"])
def test_authorization_header_that_is_not_utf8_is_a_401(gateway: Gateway, value: bytes) -> None:
    for method, path in (("GET", "/omni/1/scenarios"), ("DELETE", "/auth/1/session")):
        r = gateway.raw(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                        + b"Authorization: " + value + b"\r\n\r\n")
        assert r.status == 401, r
        assert r.json == UNAUTHORIZED
    assert "Traceback" not in gateway.output
    assert gateway.get("/omni/1/scenarios").status == 200  # the process is fine


# --- sessions ----------------------------------------------------------------------------------------------------


def test_session_token_authenticates_until_the_session_is_ended(gateway: Gateway) -> None:
    token = login(gateway, "bob", "bob's password")
    ibsso = f"IBSSO {token}"
    key = gateway.create_scenario(auth=ibsso)["key"]
    assert gateway.get(f"/omni/1/scenarios/{key}", auth=app_auth(BOB_KEY)).status == 200  # the same account
    assert gateway.get(f"/omni/1/scenarios/{key}", auth=app_auth(ALADDIN_KEY)).status == 404
    assert scenarios(gateway, f"Bearer {token}") == 401  # a session token is no OAuth token

    r = gateway.delete("/auth/1/session", auth=ibsso)
    assert r.status == 204, r
    r = gateway.get("/omni/1/scenarios", auth=ibsso)
    assert r.status == 401 and r.json == UNAUTHORIZED
    assert gateway.delete("/auth/1/session", auth=ibsso).status == 401


@pytest.mark.parametrize(("body", "field"), [
    ({"password": "open sesame"}, "username"),
    ({"username": "Aladdin"}, "password"),
    ({"username": 5, "password": "open sesame"}, "username"),
])
def test_session_request_missing_a_field_is_a_400_naming_it(gateway: Gateway, body: Any, field: str) -> None:
    r = gateway.post("/auth/1/session", body, auth=None)
    assert r.status == 400, r
    assert field in r.validation()


@pytest.mark.parametrize(("username", "password"), [
    ("Aladdin", "open sesame!"), ("Jafar", "open sesame"), ("nodefault", ""), ("Alad\u0000din", "x"),
])
def test_session_with_wrong_credentials_is_a_401(gateway: Gateway, username: str, password: str) -> None:
    r = gateway.post("/auth/1/session", {"username": username, "password": password}, auth=None)
    assert r.status == 401, r
    assert r.json == UNAUTHORIZED


def test_one_session_at_a_time_and_basic_credentials_end_a_lost_one(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    first = login(gw)
    r = gw.post("/auth/1/session", {"username": "Aladdin", "password": "open sesame"}, auth=None)
    assert r.status == 400, r
    assert "DELETE /auth/1/session" in r.error()["text"]
    assert scenarios(gw, f"IBSSO {first}") == 200  # the open session is untouched

    # the client lost its token: its password ends the session
    assert gw.delete("/auth/1/session", auth=basic_auth("Aladdin", "open sesame")).status == 204
    second = login(gw)
    assert second != first
    assert scenarios(gw, f"IBSSO {second}") == 200
    time.sleep(5.5)  # past the credential cache: the ended session is refused by every process
    assert scenarios(gw, f"IBSSO {first}") == 401


def test_session_ends_after_its_idle_time_and_each_use_moves_that_on(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(SHORT)
    used = login(gw)
    idle = login(gw, "bob", "bob's password")
    for _ in range(3):  # 6 s of use, every 2 s, of a session that ends after 3 s idle
        time.sleep(2)
        assert scenarios(gw, f"IBSSO {used}") == 200
    assert scenarios(gw, f"IBSSO {idle}") == 401
    time.sleep(3.5)
    r = gw.get("/omni/1/scenarios", auth=f"IBSSO {used}")
    assert r.status == 401 and r.json == UNAUTHORIZED
    login(gw)  # an expired session is no obstacle to a new one


def test_session_survives_a_restart_and_only_its_hash_is_stored(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    token = login(gw)
    access = oauth(gw).json["access_token"]
    gw.restart(kill=True)
    assert scenarios(gw, f"IBSSO {token}") == 200
    assert scenarios(gw, f"Bearer {access}") == 200
    stored = {row[0] for row in gw.query("SELECT token_hash FROM auth_tokens")}
    assert stored == {hashlib.sha256(t.encode()).hexdigest() for t in (token, access)}
    if STORE == "sqlite":
        gw.stop()
        blob = b"".join(p.read_bytes() for p in Path(gw.data_dir).rglob("*") if p.is_file())
        assert token.encode() not in blob and access.encode() not in blob


# --- OAuth2 client credentials -----------------------------------------------------------------------------


def test_oauth_token_authenticates_as_bearer(gateway: Gateway) -> None:
    r = oauth(gateway)
    assert r.status == 200, r
    assert r.json["token_type"] == "Bearer" and r.json["expires_in"] == 3600
    assert r.headers["cache-control"] == "no-store"
    bearer = f"Bearer {r.json['access_token']}"
    key = gateway.create_scenario(auth=bearer)["key"]
    assert gateway.get(f"/omni/1/scenarios/{key}", auth=app_auth(ALADDIN_KEY)).status == 200
    assert scenarios(gateway, f"IBSSO {r.json['access_token']}") == 401  # an OAuth token is no session
    second = oauth(gateway).json["access_token"]  # several tokens may live at once
    assert scenarios(gateway, bearer) == 200 and scenarios(gateway, f"Bearer {second}") == 200


def test_oauth_client_may_authenticate_with_basic_or_an_api_key(gateway: Gateway) -> None:
    r = gateway.post("/auth/1/oauth2/token", "grant_type=client_credentials", auth=basic_auth("bob", "bob's password"),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200, r
    assert gateway.get("/omni/1/scenarios", auth=f"Bearer {r.json['access_token']}").status == 200
    assert oauth(gateway, "bob", BOB_KEY).status == 200
    assert oauth(gateway, "Aladdin", BOB_KEY).status == 401  # bob's key is not Aladdin's secret


@pytest.mark.parametrize(("client_id", "secret"), [("Aladdin", "wrong"), ("Jafar", "open sesame")])
def test_oauth_with_wrong_credentials_is_a_401(gateway: Gateway, client_id: str, secret: str) -> None:
    r = oauth(gateway, client_id, secret)
    assert r.status == 401 and r.json == UNAUTHORIZED


@pytest.mark.parametrize(("form", "field"), [
    ("client_id=Aladdin&client_secret=open+sesame", "grant_type"),
    ("client_id=Aladdin&client_secret=open+sesame&grant_type=password", "grant_type"),
    ("client_secret=open+sesame&grant_type=client_credentials", "client_id"),
    ("client_id=Aladdin&grant_type=client_credentials", "client_secret"),
])
def test_oauth_request_with_a_bad_field_is_a_400_naming_it(gateway: Gateway, form: str, field: str) -> None:
    r = gateway.post("/auth/1/oauth2/token", form, auth=None,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400, r
    assert field in r.validation()


def test_oauth_token_expires(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(SHORT)
    r = oauth(gw)
    assert r.json["expires_in"] == 2
    bearer = f"Bearer {r.json['access_token']}"
    assert scenarios(gw, bearer) == 200
    time.sleep(2.5)
    r = gw.get("/omni/1/scenarios", auth=bearer)
    assert r.status == 401 and r.json == UNAUTHORIZED


def test_a_new_password_ends_the_sessions_and_tokens_of_its_account(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    aladdin, access = login(gw), oauth(gw).json["access_token"]
    bob = login(gw, "bob", "bob's password")
    gw.set_config(ALADDIN_CONFIG.replace('password = "open sesame"', 'password = "new sesame"'))
    gw.restart()
    for auth in (f"IBSSO {aladdin}", f"Bearer {access}"):
        r = gw.get("/omni/1/scenarios", auth=auth)
        assert r.status == 401 and r.json == UNAUTHORIZED
    assert scenarios(gw, f"IBSSO {bob}") == 200, "other accounts keep theirs"
    assert scenarios(gw, f"IBSSO {login(gw, 'Aladdin', 'new sesame')}") == 200
