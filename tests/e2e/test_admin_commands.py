"""The account and key commands, run the way the README shows them, beside a running gateway whose config file
declares accounts: whatever an operator runs, the declared credentials keep working (issue 13, item 10)."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import pytest

from .conftest import ALADDIN_BASIC, ALADDIN_KEY, BOB_KEY, NODEFAULT_KEY, Gateway, app_auth, basic_auth

DECLARED = {
    "Aladdin Basic": ALADDIN_BASIC,
    "Aladdin App": app_auth(ALADDIN_KEY),
    "bob Basic": basic_auth("bob", "bob's password"),
    "bob App": app_auth(BOB_KEY),
    "nodefault App": app_auth(NODEFAULT_KEY),
}
# the gateway remembers a header that checked out for 5 s (api/auth.py): waiting longer makes it ask the store
CACHE_SECONDS = 5.0


def admin(gw: Gateway, *args: str, config: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``omnirelay <args> --data-dir D`` (``--database URL`` on PostgreSQL), without ``--config`` unless asked:
    the README's way."""
    where = ["--data-dir", str(gw.data_dir)]
    if gw.database is not None:
        where += ["--database", gw.database]
    if config:
        assert gw.config_path is not None
        where += ["--config", str(gw.config_path)]
    return gw.cli(*args, *where, locate=False, check=check)


def credentials(gw: Gateway) -> list[tuple[Any, ...]]:
    """What the store holds of every account's credentials."""
    accounts = gw.query("SELECT username, password_hash, source FROM accounts ORDER BY username")
    keys = gw.query("SELECT k.id, a.username, k.key_hash, k.source FROM api_keys k"
                    " JOIN accounts a ON a.id = k.account_id ORDER BY k.id")
    return [*accounts, *keys]


def assert_declared_work(gw: Gateway, after: str) -> None:
    for name, header in DECLARED.items():
        r = gw.get("/omni/1/scenarios", auth=header)
        assert r.status == 200, f"{name} refused after {after}: {r}"


def assert_declared_keep_working(gw: Gateway, after: str) -> None:
    """Past the gateway's credential cache, every declared credential is still accepted."""
    time.sleep(CACHE_SECONDS + 0.5)
    assert_declared_work(gw, after)


@pytest.mark.parametrize("config", [False, True], ids=["without --config", "with --config"])
def test_listing_writes_nothing_and_locks_nobody_out(make_gateway: Any, config: bool) -> None:
    gw: Gateway = make_gateway()
    assert_declared_work(gw, "start")
    before = credentials(gw)

    listed = admin(gw, "accounts", "list", config=config).stdout
    assert {"Aladdin", "bob", "nodefault"} <= {line.split("\t")[0] for line in listed.splitlines()}, listed
    keys = admin(gw, "keys", "list", config=config).stdout
    assert {"Aladdin", "bob", "nodefault"} <= {line.split("\t")[1] for line in keys.splitlines()}, keys

    assert credentials(gw) == before
    assert_declared_keep_working(gw, "accounts list and keys list")


def test_every_admin_command_keeps_the_declared_credentials(make_gateway: Any) -> None:
    gw: Gateway = make_gateway()
    before = credentials(gw)

    made = admin(gw, "accounts", "add", "carol", "--password", "carol's pw", "--key").stdout
    carol_key = re.search(r"API key:\s*(\S+)", made)
    assert carol_key, made
    assert gw.get("/omni/1/scenarios", auth=basic_auth("carol", "carol's pw")).status == 200
    made = admin(gw, "keys", "create", "carol").stdout
    second = re.search(r"API key for carol[^:]*:\s*(\S+)", made)
    assert second, made
    assert gw.get("/omni/1/scenarios", auth=app_auth(second.group(1))).status == 200
    carols = [line.split("\t")[0] for line in admin(gw, "keys", "list").stdout.splitlines() if "\tcarol\t" in line]
    assert len(carols) == 2, carols
    admin(gw, "keys", "revoke", carols[0])
    hashed = gw.cli("accounts", "hash-password", "x", locate=False).stdout
    assert hashed.startswith("scrypt$")
    admin(gw, "accounts", "list")
    admin(gw, "accounts", "remove", "carol")

    assert credentials(gw) == before  # carol came and went; the declared accounts are as they were
    assert_declared_keep_working(gw, "accounts add/list/remove and keys create/list/revoke")
    assert gw.get("/omni/1/scenarios", auth=basic_auth("carol", "carol's pw")).status == 401
    # and a restart with its config still finds them as declared
    gw.restart()
    assert credentials(gw) == before
    assert_declared_work(gw, "a restart")


def test_a_process_without_the_accounts_in_its_config_removes_none(make_gateway: Any) -> None:
    """A second config (another machine's, a worker's, an old copy) that does not declare an account does not
    take that account's credentials away: only `accounts remove` removes an account."""
    gw: Gateway = make_gateway()
    before = credentials(gw)
    admin(gw, "migrate")
    gw.set_config('[[accounts]]\nusername = "Aladdin"\npassword = "open sesame"\n'
                  f'api_keys = ["{ALADDIN_KEY}"]\n')
    gw.restart()
    assert credentials(gw) == before
    assert_declared_work(gw, "a start with a config declaring only Aladdin")
    assert "bob" in gw.output and "accounts remove" in gw.output, gw.output  # the operator is told how

    removed = admin(gw, "accounts", "remove", "bob").stdout
    assert "removed" in removed and "declared in a config file" in removed, removed
    time.sleep(CACHE_SECONDS + 0.5)
    for header in (DECLARED["bob Basic"], DECLARED["bob App"]):
        assert gw.get("/omni/1/scenarios", auth=header).status == 401
    assert gw.get("/omni/1/scenarios", auth=ALADDIN_BASIC).status == 200


def test_read_only_commands_create_no_database(make_gateway: Any) -> None:
    gw: Gateway = make_gateway(start=False)
    if gw.database is not None:
        pytest.skip("a PostgreSQL database exists before the first start")
    for args in (("accounts", "list"), ("keys", "list")):
        done = admin(gw, *args, check=False)
        assert done.returncode != 0, done
        assert str(gw.data_dir) in done.stderr, done.stderr
        assert not gw.data_dir.exists()
