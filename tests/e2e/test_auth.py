"""Authentication and account isolation, as a user meets them: Basic and App headers, the first-start
credentials, API keys made and revoked with the CLI, and what is (not) written to disk."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import pytest

from .conftest import (
    ALADDIN_BASIC,
    ALADDIN_KEY,
    BOB_KEY,
    NODEFAULT_KEY,
    UNAUTHORIZED,
    Gateway,
    app_auth,
    basic_auth,
)

SEND = {"destinations": [{"to": {"phoneNumber": "41793026727"}}], "sms": {"text": "hi"}, "whatsApp": {"text": "hi"}}

BAD_HEADERS = {
    "no header": None,
    "empty header": "",
    "wrong password": basic_auth("Aladdin", "open sesame!"),
    "unknown user": basic_auth("Jafar", "open sesame"),
    "unknown key": app_auth("f" * 64),
    "App without key": "App",
    "App with spaces only": "App    ",
    "Bearer": "Bearer x",
    "IBSSO": "IBSSO some-token",
    "Basic not base64": "Basic !!!not-base64!!!",
    "Basic without colon": "Basic " + base64.b64encode(b"Aladdinopen sesame").decode(),
    "Basic without credentials": "Basic",
    "Basic of invalid utf-8": "Basic " + base64.b64encode(b"Aladdin:\xff\xfe").decode(),
    "key sent as Basic": "Basic " + ALADDIN_KEY,
    "password sent as App": "App open sesame",
    "unknown scheme": "Digest username=Aladdin",
}


def wait_for_status(gw: Gateway, path: str, auth: str, want: int, within: float) -> float:
    """Poll until ``GET path`` answers ``want``; returns the seconds it took, fails after ``within``."""
    start = time.monotonic()
    while True:
        r = gw.get(path, auth=auth)
        if r.status == want:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"still {r.status} after {within}s: {r}"
        time.sleep(0.25)


# --- rejected credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize("header", list(BAD_HEADERS.values()), ids=list(BAD_HEADERS))
@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/omni/1/scenarios", None),
    ("POST", "/omni/1/scenarios", {"flow": [{"channel": "SMS"}]}),
    ("POST", "/omni/1/advanced", SEND),
    ("POST", "/omni/1/text", {"destinations": [{"to": {"phoneNumber": "41793026727"}}], "text": "hi"}),
    ("DELETE", "/omni/1/scenarios/0123456789ABCDEF0123456789ABCDEF", None),
], ids=["list", "create", "advanced", "text", "delete"])
def test_bad_credentials_get_401_envelope(gateway: Gateway, header: str | None, method: str, path: str,
                                          body: Any) -> None:
    r = gateway.request(method, path, body, auth=header)
    assert r.status == 401, r
    assert r.headers["content-type"].startswith("application/json")
    assert r.json == UNAUTHORIZED


def test_rejected_credentials_change_nothing(gateway: Gateway) -> None:
    before = gateway.get("/omni/1/scenarios").json
    r = gateway.post("/omni/1/scenarios", {"flow": [{"channel": "SMS"}], "default": True}, auth="Bearer x")
    assert r.status == 401, r
    assert gateway.get("/omni/1/scenarios").json == before


def test_public_endpoints_need_no_credentials(gateway: Gateway) -> None:
    assert gateway.get("/health", auth=None).status == 200
    assert gateway.get("/openapi.json", auth=None).status == 200


# --- accepted credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    ALADDIN_BASIC,
    app_auth(ALADDIN_KEY),
    "basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",  # the scheme is case-insensitive (RFC 7235)
    "app " + ALADDIN_KEY,
], ids=["Basic", "App", "basic lower-case", "app lower-case"])
def test_basic_and_app_both_authenticate_the_same_account(gateway: Gateway, header: str) -> None:
    scenario = gateway.create_scenario([{"channel": "SMS"}], name="mine")
    r = gateway.get(f"/omni/1/scenarios/{scenario['key']}", auth=header)
    assert r.status == 200, r
    assert r.json == scenario
    r = gateway.post("/omni/1/advanced", {**SEND, "scenarioKey": scenario["key"]}, auth=header)
    assert r.status == 200, r


def test_password_with_colon_and_unicode(make_gateway: Any) -> None:
    gw = make_gateway('[[accounts]]\nusername = "zoë"\npassword = "pa:ss wörd"\n', default_auth=None)
    assert gw.get("/omni/1/scenarios", auth=basic_auth("zoë", "pa:ss wörd")).status == 200
    assert gw.get("/omni/1/scenarios", auth=basic_auth("zoë", "pa")).status == 401


# --- isolation between accounts -------------------------------------------------------------------------


def test_account_b_cannot_read_change_or_delete_a_scenario(gateway: Gateway) -> None:
    mine = gateway.create_scenario(name="Aladdin's", default=False)
    key = mine["key"]
    bob = app_auth(BOB_KEY)
    r = gateway.get(f"/omni/1/scenarios/{key}", auth=bob)
    assert r.status == 404, r
    assert r.error()["messageId"] == "NOT_FOUND"
    r = gateway.put(f"/omni/1/scenarios/{key}", {"name": "stolen", "flow": [{"channel": "SMS"}]}, auth=bob)
    assert r.status == 404, r
    assert r.error()["messageId"] == "NOT_FOUND"
    r = gateway.delete(f"/omni/1/scenarios/{key}", auth=bob)
    assert r.status == 404, r
    assert r.error()["messageId"] == "NOT_FOUND"
    # and A's scenario is untouched
    r = gateway.get(f"/omni/1/scenarios/{key}")
    assert r.status == 200, r
    assert r.json == mine


def test_account_b_cannot_send_with_a_scenario(gateway: Gateway) -> None:
    mine = gateway.create_scenario(name="Aladdin's")
    r = gateway.post("/omni/1/advanced", {**SEND, "scenarioKey": mine["key"]}, auth=app_auth(BOB_KEY))
    assert r.status == 400, r
    assert r.error()["messageId"] == "BAD_REQUEST"
    assert "scenarioKey" in r.validation()
    r = gateway.post("/omni/1/text", {"destinations": [{"to": {"phoneNumber": "41793026727"}}], "text": "hi",
                                      "scenarioKey": mine["key"]}, auth=app_auth(BOB_KEY))
    assert r.status == 400, r
    assert "scenarioKey" in r.validation()


def test_account_b_listing_does_not_show_a_scenarios(gateway: Gateway) -> None:
    mine = gateway.create_scenario(name="Aladdin's", default=True)
    bobs = gateway.create_scenario([{"channel": "SMS"}], name="bob's", default=True, auth=app_auth(BOB_KEY))
    listed = gateway.get("/omni/1/scenarios", auth=app_auth(BOB_KEY)).json["scenarios"]
    keys = {s["key"] for s in listed}
    assert bobs["key"] in keys
    assert mine["key"] not in keys
    assert all(s["name"] != "Aladdin's" for s in listed)
    # each account's default is its own: bob's new default did not unset Aladdin's
    defaults = gateway.get("/omni/1/scenarios?isDefault=true").json["scenarios"]
    assert [s["key"] for s in defaults] == [mine["key"]]
    assert gateway.get(f"/omni/1/scenarios/{mine['key']}").json["default"] is True


def test_a_default_scenario_is_not_used_for_another_account(gateway: Gateway) -> None:
    gateway.create_scenario(name="Aladdin's default", default=True)
    r = gateway.post("/omni/1/advanced", SEND, auth=app_auth(NODEFAULT_KEY))
    assert r.status == 400, r
    assert "scenarioKey" in r.validation()


def test_message_ids_are_per_account(gateway: Gateway) -> None:
    """A client messageId used by one account does not collide with (or leak) another's."""
    a = gateway.create_scenario(name="a")
    b = gateway.create_scenario([{"channel": "SMS"}], name="b", auth=app_auth(BOB_KEY))
    mid = f"shared-id-{time.time_ns()}"
    ra = gateway.post("/omni/1/advanced", {"scenarioKey": a["key"], "sms": {"text": "from A"},
                                           "destinations": [{"messageId": mid, "to": {"phoneNumber": "41793026727"}}]})
    rb = gateway.post("/omni/1/advanced", {"scenarioKey": b["key"], "sms": {"text": "from B"},
                                           "destinations": [{"messageId": mid, "to": {"phoneNumber": "41790000000"}}]},
                      auth=app_auth(BOB_KEY))
    assert ra.status == 200, ra
    assert rb.status == 200, rb
    assert rb.json["messages"][0]["to"] == {"phoneNumber": "41790000000"}


# --- first start ----------------------------------------------------------------------------------------


def _printed_credentials(output: str) -> tuple[str, str, str]:
    user = re.search(r"username:\s*(\S+)", output)
    password = re.search(r"password:\s*(\S+)", output)
    key = re.search(r"API key:\s*(\S+)", output)
    assert user and password and key, output
    return user.group(1), password.group(1), key.group(1)


@pytest.mark.parametrize("config", [None, ""], ids=["no config file", "empty config file"])
def test_first_start_prints_working_credentials_once(make_gateway: Any, config: str | None) -> None:
    gw: Gateway = make_gateway(config, default_auth=None)
    username, password, key = _printed_credentials(gw.output)
    assert username == "admin"
    assert gw.get("/omni/1/scenarios", auth=basic_auth(username, password)).status == 200
    assert gw.get("/omni/1/scenarios", auth=app_auth(key)).status == 200
    assert gw.get("/omni/1/scenarios", auth=basic_auth(username, password + "x")).status == 401

    gw.restart()
    assert "omnirelay listening on" in gw.output
    assert password not in gw.output and key not in gw.output, gw.output
    assert not re.search(r"password:|API key:", gw.output), gw.output
    # the credentials printed the first time still work
    assert gw.get("/omni/1/scenarios", auth=basic_auth(username, password)).status == 200
    assert gw.get("/omni/1/scenarios", auth=app_auth(key)).status == 200

    gw.restart(kill=True)
    assert password not in gw.output and key not in gw.output, gw.output


def test_no_first_start_account_when_the_config_declares_one(gateway: Gateway) -> None:
    assert "username: admin" not in gateway.output
    assert "password:" not in gateway.output


# --- keys and accounts on the command line ---------------------------------------------------------------


def test_cli_key_works_and_stops_working_once_revoked(gateway: Gateway) -> None:
    made = gateway.cli("keys", "create", "Aladdin")
    match = re.search(r"API key for Aladdin[^:]*:\s*(\S+)", made.stdout)
    assert match, made.stdout
    key = match.group(1)
    auth = app_auth(key)
    r = gateway.get("/omni/1/scenarios", auth=auth)
    assert r.status == 200, r
    # it is Aladdin's key: it sees Aladdin's scenarios
    mine = gateway.create_scenario(name="seen through the new key")
    assert gateway.get(f"/omni/1/scenarios/{mine['key']}", auth=auth).status == 200

    listed = gateway.cli("keys", "list").stdout
    ids = [line.split("\t")[0] for line in listed.splitlines() if "\tAladdin\t" in line]
    assert len(ids) >= 2, listed  # the config's key and the new one
    ids_before = set(ids)

    # find the new key's id: revoke ids one by one is not an option; the id is not printed at creation,
    # so take the id that appeared with it
    made2 = gateway.cli("keys", "create", "Aladdin")
    key2 = re.search(r"API key for Aladdin[^:]*:\s*(\S+)", made2.stdout).group(1)  # type: ignore[union-attr]
    ids_after = {line.split("\t")[0] for line in gateway.cli("keys", "list").stdout.splitlines()
                 if "\tAladdin\t" in line}
    (new_id,) = ids_after - ids_before
    assert gateway.get("/omni/1/scenarios", auth=app_auth(key2)).status == 200  # now cached by the server

    revoked = gateway.cli("keys", "revoke", new_id)
    assert new_id in revoked.stdout
    took = wait_for_status(gateway, "/omni/1/scenarios", app_auth(key2), 401, within=8.0)
    assert took <= 6.5, took  # the documented cache is at most 5 s
    time.sleep(0.5)
    r = gateway.get("/omni/1/scenarios", auth=app_auth(key2))
    assert r.status == 401 and r.json == UNAUTHORIZED, r
    # the other keys are unaffected
    assert gateway.get("/omni/1/scenarios", auth=auth).status == 200
    assert gateway.get("/omni/1/scenarios", auth=app_auth(ALADDIN_KEY)).status == 200
    # and the revoked key stays revoked across a restart
    gateway.restart()
    assert gateway.get("/omni/1/scenarios", auth=app_auth(key2)).status == 401


def test_keys_revoke_unknown_id_fails(gateway: Gateway) -> None:
    done = gateway.cli("keys", "revoke", "0000000000000000", check=False)
    assert done.returncode != 0
    assert "0000000000000000" in done.stderr


def test_keys_create_for_unknown_account_fails(gateway: Gateway) -> None:
    done = gateway.cli("keys", "create", "nobody-here", check=False)
    assert done.returncode != 0


def test_accounts_add_list_remove(gateway: Gateway) -> None:
    name = f"user{time.time_ns()}"
    made = gateway.cli("accounts", "add", name, "--password", "s3cret pass", "--key")
    key = re.search(r"API key:\s*(\S+)", made.stdout)
    assert key, made.stdout
    assert gateway.get("/omni/1/scenarios", auth=basic_auth(name, "s3cret pass")).status == 200
    assert gateway.get("/omni/1/scenarios", auth=app_auth(key.group(1))).status == 200
    assert name in gateway.cli("accounts", "list").stdout
    again = gateway.cli("accounts", "add", name, check=False)
    assert again.returncode != 0
    gateway.cli("accounts", "remove", name)
    assert name not in gateway.cli("accounts", "list").stdout
    wait_for_status(gateway, "/omni/1/scenarios", app_auth(key.group(1)), 401, within=8.0)
    wait_for_status(gateway, "/omni/1/scenarios", basic_auth(name, "s3cret pass"), 401, within=8.0)


def test_accounts_add_generates_a_password(gateway: Gateway) -> None:
    name = f"gen{time.time_ns()}"
    made = gateway.cli("accounts", "add", name)
    password = re.search(r"password:\s*(\S+)", made.stdout)
    assert password, made.stdout
    assert gateway.get("/omni/1/scenarios", auth=basic_auth(name, password.group(1))).status == 200


def test_hash_password_output_works_in_the_config(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(None, start=False, default_auth=None)
    hashed = gw.cli("accounts", "hash-password", "hashed pw", locate=False).stdout.strip()
    assert hashed.startswith("scrypt$") and "hashed pw" not in hashed
    gw.set_config(f'[[accounts]]\nusername = "h"\npassword_hash = "{hashed}"\n')
    gw.start()
    assert gw.get("/omni/1/scenarios", auth=basic_auth("h", "hashed pw")).status == 200
    assert gw.get("/omni/1/scenarios", auth=basic_auth("h", "hashed pwx")).status == 401
    assert "username: admin" not in gw.output


# --- nothing secret on disk -----------------------------------------------------------------------------


def _stored_bytes(gw: Gateway) -> bytes:
    """What the store holds: every file of the data dir (database, WAL, shared memory) concatenated, or on
    PostgreSQL every row of the tables holding credentials."""
    if gw.database is not None:
        rows = [r for table in ("accounts", "api_keys") for r in gw.query(f"SELECT * FROM {table}")]
        return repr(rows).encode()
    return b"".join(p.read_bytes() for p in sorted(gw.data_dir.rglob("*")) if p.is_file())


def test_database_holds_no_plaintext_password_or_key(make_gateway: Any) -> None:
    secret_pw = "Plaintext-Password-4711"
    secret_key = "0123456789abcdef" * 4
    gw: Gateway = make_gateway(f'[[accounts]]\nusername = "Aladdin"\npassword = "{secret_pw}"\n'
                               f'api_keys = ["{secret_key}"]\n', default_auth=None)
    made = gw.cli("keys", "create", "Aladdin").stdout
    cli_key = re.search(r":\s*(\S+)\s*$", made.strip()).group(1)  # type: ignore[union-attr]
    added = gw.cli("accounts", "add", "other", "--password", "Other-Plain-Pass-0815", "--key").stdout
    other_key = re.search(r"API key:\s*(\S+)", added).group(1)  # type: ignore[union-attr]
    for auth in (basic_auth("Aladdin", secret_pw), app_auth(secret_key), app_auth(cli_key),
                 basic_auth("other", "Other-Plain-Pass-0815"), app_auth(other_key)):
        assert gw.get("/omni/1/scenarios", auth=auth).status == 200

    secrets = [secret_pw, secret_key, cli_key, "Other-Plain-Pass-0815", other_key]
    for when in ("running", "stopped"):
        if when == "stopped":
            gw.stop()
        blob = _stored_bytes(gw)
        assert blob, "no database files found"
        for s in secrets:
            for form in {s.encode(), s.encode("utf-16-le"), base64.b64encode(s.encode())}:
                assert form not in blob, f"{s!r} found on disk ({when})"
        # nor the Basic header as sent
        assert basic_auth("Aladdin", secret_pw).split()[1].encode() not in blob


def test_first_start_secrets_are_not_on_disk(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(None, default_auth=None)
    _user, password, key = _printed_credentials(gw.output)
    blob = _stored_bytes(gw)
    assert password.encode() not in blob
    assert key.encode() not in blob


# --- the config file is the source of truth for what it declares ---------------------------------------------


def test_password_changed_in_the_config_takes_effect_on_restart(make_gateway: Any) -> None:
    gw: Gateway = make_gateway('[[accounts]]\nusername = "ops"\npassword = "old password"\n', default_auth=None)
    assert gw.get("/omni/1/scenarios", auth=basic_auth("ops", "old password")).status == 200
    gw.set_config('[[accounts]]\nusername = "ops"\npassword = "new password"\n')
    gw.restart()
    assert gw.get("/omni/1/scenarios", auth=basic_auth("ops", "new password")).status == 200
    assert gw.get("/omni/1/scenarios", auth=basic_auth("ops", "old password")).status == 401


def test_key_removed_from_the_config_stops_working_after_restart(make_gateway: Any) -> None:
    """An operator drops a leaked key from the config file and restarts: the key must no longer work."""
    leaked, kept = "1eaked00" * 8, "6ood0000" * 8
    gw: Gateway = make_gateway(f'[[accounts]]\nusername = "ops"\napi_keys = ["{leaked}", "{kept}"]\n',
                               default_auth=None)
    assert gw.get("/omni/1/scenarios", auth=app_auth(leaked)).status == 200
    gw.set_config(f'[[accounts]]\nusername = "ops"\napi_keys = ["{kept}"]\n')
    gw.restart()
    assert gw.get("/omni/1/scenarios", auth=app_auth(kept)).status == 200
    assert gw.get("/omni/1/scenarios", auth=app_auth(leaked)).status == 401


def test_password_removed_from_the_config_disables_basic_after_restart(make_gateway: Any) -> None:
    key = "0a0a0a0a" * 8
    gw: Gateway = make_gateway(f'[[accounts]]\nusername = "ops"\npassword = "pw"\napi_keys = ["{key}"]\n',
                               default_auth=None)
    assert gw.get("/omni/1/scenarios", auth=basic_auth("ops", "pw")).status == 200
    gw.set_config(f'[[accounts]]\nusername = "ops"\napi_keys = ["{key}"]\n')
    gw.restart()
    assert gw.get("/omni/1/scenarios", auth=app_auth(key)).status == 200
    assert gw.get("/omni/1/scenarios", auth=basic_auth("ops", "pw")).status == 401


def test_key_moved_to_another_account_in_the_config(make_gateway: Any) -> None:
    key = "0b0b0b0b" * 8
    gw: Gateway = make_gateway(f'[[accounts]]\nusername = "first"\napi_keys = ["{key}"]\n'
                               '[[accounts]]\nusername = "second"\npassword = "pw2"\n', default_auth=None)
    mine = gw.create_scenario([{"channel": "SMS"}], name="first's", auth=app_auth(key))
    gw.set_config('[[accounts]]\nusername = "first"\npassword = "pw1"\n'
                  f'[[accounts]]\nusername = "second"\napi_keys = ["{key}"]\n')
    gw.restart()
    # the key now speaks for "second": it must not reach "first"'s scenario
    assert gw.get(f"/omni/1/scenarios/{mine['key']}", auth=app_auth(key)).status == 404


# --- a removed account leaves nothing behind -------------------------------------------------------------------


def test_a_new_account_does_not_inherit_a_removed_accounts_messages(make_gateway: Any) -> None:
    """``accounts remove`` removes "the account with everything it owns". An account created afterwards must
    not see or collide with the removed account's messages (ids of accounts must not be reused with old data)."""
    gw: Gateway = make_gateway(default_auth=None)
    gw.cli("accounts", "add", "eve", "--password", "eve's pw")
    eve = basic_auth("eve", "eve's pw")
    gw.create_scenario([{"channel": "SMS"}], default=True, auth=eve)
    sent = gw.post("/omni/1/advanced", {"destinations": [{"messageId": "eve-private-1",
                                                          "to": {"phoneNumber": "41793026727"}}],
                                        "sms": {"text": "eve's private text"}}, auth=eve)
    assert sent.status == 200, sent

    gw.cli("accounts", "remove", "eve")
    gw.cli("accounts", "add", "mallory", "--password", "mallory's pw")
    mallory = basic_auth("mallory", "mallory's pw")
    wait_for_status(gw, "/omni/1/scenarios", mallory, 200, within=8.0)

    # no scenario of eve's shows up for mallory
    assert gw.get("/omni/1/scenarios", auth=mallory).json == {"scenarios": []}
    # mallory's own message with the same client id is a new message, not eve's (nor a conflict with it)
    gw.create_scenario([{"channel": "SMS"}], default=True, auth=mallory)
    r = gw.post("/omni/1/advanced", {"destinations": [{"messageId": "eve-private-1",
                                                       "to": {"phoneNumber": "41790000000"}}],
                                     "sms": {"text": "mallory's text"}}, auth=mallory)
    assert r.status == 200, r
    assert r.json["messages"][0]["to"] == {"phoneNumber": "41790000000"}
    # and eve's history is not readable by mallory
    logs = gw.get("/omni/1/logs", auth=mallory)
    assert logs.status == 200, logs
    assert "eve's private text" not in logs.text, logs
    assert "41793026727" not in logs.text, logs
