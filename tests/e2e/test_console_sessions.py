"""Console sessions as a browser holds them, driven with plain HTTP (issue 13, item 11): logging out ends the session
on the server (a copied cookie stops working), every form that changes something needs its form token, and a
session is known to every API process on the database."""

from __future__ import annotations

import html
import http.client
import os
import re
import signal
import subprocess
import time
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest

from .conftest import ALADDIN_CONFIG, ALADDIN_KEY, Gateway, Response, app_auth, free_port, omnirelay_command

COOKIE = "omnirelay_console"


def _form_token(page: str) -> str | None:
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


class Browser:
    """What a browser keeps for one gateway process: its cookies; requests as its pages send them."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None) -> None:
        self.port = port
        self.cookies: dict[str, str] = dict(cookies or {})

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, fields: dict[str, str] | None = None,
                origin: str | None = None) -> Response:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if origin is not None:
            headers["Origin"] = origin
        body = None
        if fields is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(fields)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie":
                    cookie = SimpleCookie(value)
                    for key, morsel in cookie.items():
                        if morsel.value and morsel["max-age"] != "0":
                            self.cookies[key] = morsel.value
                        else:
                            self.cookies.pop(key, None)
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str], origin: str | None = None) -> Response:
        return self.request("POST", path, fields, origin)

    def login(self, username: str = "Aladdin", password: str = "open sesame") -> str:
        """Log in through the login form; returns the form token of the pages after it."""
        page = self.get("/console/login")
        fields = {"username": username, "password": password}
        token = _form_token(page.text)
        if token is not None:
            fields["csrf"] = token
        r = self.post("/console/login", fields)
        assert r.status == 303 and COOKIE in self.cookies, r
        after = self.get("/console/scenarios")
        assert after.status == 200, after
        return _form_token(after.text) or ""

    def logged_in(self) -> bool:
        r = self.get("/console/api/overview")
        assert r.status in (200, 401), r
        return r.status == 200


def _scenario_names(gw: Gateway) -> list[str]:
    r = gw.get("/omni/1/scenarios", auth=app_auth(ALADDIN_KEY))
    assert r.status == 200, r
    return [s["name"] for s in r.json["scenarios"]]


def test_logout_ends_the_session_for_a_copied_cookie(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    browser = Browser(gw.port)
    token = browser.login()
    copied = dict(browser.cookies)
    assert browser.logged_in()

    r = browser.post("/console/logout", {"csrf": token})
    assert r.status == 303 and r.headers["location"] == "/console/login", r
    assert COOKIE not in browser.cookies

    thief = Browser(gw.port, copied)
    assert not thief.logged_in()
    r = thief.get("/console/messages")
    assert r.status == 303 and r.headers["location"].startswith("/console/login"), r
    # nor does the old cookie change anything
    r = thief.post("/console/scenarios", {"csrf": token, "name": "after logout", "channel_0": "SMS"})
    assert r.status == 303 and r.headers["location"].startswith("/console/login"), r
    assert "after logout" not in _scenario_names(gw)
    # logging in again works, with a new cookie
    browser.login()
    assert browser.logged_in() and browser.cookies[COOKIE] != copied[COOKIE]


def test_a_form_without_its_token_is_refused(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    browser = Browser(gw.port)
    token = browser.login()
    form = {"name": "forged", "channel_0": "SMS"}

    for refused, origin in [({}, None), ({"csrf": "0" * 64}, None), ({"csrf": token}, "http://evil.example"),
                            ({"csrf": token}, "null")]:
        r = browser.post("/console/scenarios", {**form, **refused}, origin=origin)
        assert r.status == 403, (refused, origin, r)
        assert "refused" in r.text and "reload" in r.text, r
    assert "forged" not in _scenario_names(gw)

    r = browser.post("/console/scenarios", {"name": "mine", "channel_0": "SMS", "csrf": token})
    assert r.status == 303, r
    key = r.headers["location"].rsplit("/", 1)[1]
    assert "mine" in _scenario_names(gw)
    # the other forms too: make default, try, log out
    for path, fields in [(f"/console/scenarios/{key}/default", {}),
                         (f"/console/scenarios/{key}/try", {"to": "41793026727", "text": "hi"}),
                         (f"/console/scenarios/{key}", {"name": "renamed", "channel_0": "SMS"}),
                         ("/console/logout", {})]:
        r = browser.post(path, fields)
        assert r.status == 403, (path, r)
    assert browser.logged_in()
    assert gw.get(f"/omni/1/scenarios/{key}", auth=app_auth(ALADDIN_KEY)).json["default"] is False
    r = browser.post(f"/console/scenarios/{key}/default", {"csrf": token}, origin=browser.origin)
    assert r.status == 303, r
    assert gw.get(f"/omni/1/scenarios/{key}", auth=app_auth(ALADDIN_KEY)).json["default"] is True


def test_a_login_posted_from_elsewhere_is_refused(make_gateway: Any) -> None:
    """Without the login form's pair (a page of another site posting its own credentials), nobody is logged in."""
    gw: Gateway = make_gateway()
    browser = Browser(gw.port)
    r = browser.post("/console/login", {"username": "Aladdin", "password": "open sesame"})
    assert r.status == 403 and COOKIE not in browser.cookies, r
    assert "log in again" in r.text
    assert _form_token(r.text) is not None  # the page it shows is a working form
    browser.get("/console/login")
    r = browser.post("/console/login", {"username": "Aladdin", "password": "open sesame", "csrf": "x" * 43})
    assert r.status == 403 and COOKIE not in browser.cookies, r


def test_a_session_survives_a_restart_but_not_a_new_password(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    browser = Browser(gw.port)
    browser.login()
    gw.restart()
    assert browser.logged_in()
    gw.set_config(ALADDIN_CONFIG.replace('password = "open sesame"', 'password = "a new one"'))
    gw.restart()
    assert not browser.logged_in()


def test_a_removed_account_is_logged_out(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    gw.cli("accounts", "add", "eve", "--password", "eve's pw")
    browser = Browser(gw.port)
    browser.login("eve", "eve's pw")
    gw.cli("accounts", "remove", "eve")
    assert not browser.logged_in()


@pytest.mark.skipif(os.environ.get("OMNIRELAY_TEST_STORE") != "postgres",
                    reason="several API processes share a PostgreSQL database (SQLite takes one)")
def test_sessions_are_shared_by_every_api_process(make_gateway: Any) -> None:
    """Two ``omnirelay api`` processes without a common ``console_secret``: a login on one is known to the other,
    and a logout on the other ends it on the first."""
    gw: Gateway = make_gateway(start=False)
    assert gw.database is not None and gw.config_path is not None
    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port(), free_port()]
    try:
        for port in ports:
            procs.append(subprocess.Popen(
                [*omnirelay_command(), "api", "--config", str(gw.config_path), "--database", gw.database,
                 "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, env={k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY_")}))
        for port in ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if Browser(port).get("/health").status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "omnirelay api did not start"
                time.sleep(0.1)
        first = Browser(ports[0])
        token = first.login()
        second = Browser(ports[1], first.cookies)
        assert second.logged_in()
        r = second.post("/console/logout", {"csrf": token})
        assert r.status == 303, r
        assert not first.logged_in()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
