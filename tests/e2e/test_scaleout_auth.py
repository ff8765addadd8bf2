"""Sessions, OAuth2 tokens and rate limits across two ``omnirelay api`` processes on one PostgreSQL database: a token
made through one works at once on the other, and both spend one rate budget per account and endpoint."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import create_database_sync, drop_database_sync

from .cluster import Cluster
from .conftest import STORE, WHATSAPP_SMS_FLOW

pytestmark = [
    pytest.mark.timeout(300),
    # these start their own PostgreSQL database: they run once, in the main pass of the suite
    pytest.mark.skipif(STORE == "postgres", reason="PostgreSQL-only tests run in the main pass"),
]

CONFIG = """
[[accounts]]
username = "alice"
password = "alice password"
api_keys = ["alice-key"]

[[accounts]]
username = "carol"
password = "carol password"
api_keys = ["carol-key"]

[rate_limits]
"POST /omni/1/scenarios" = "4/10m"
"""


def call(url: str, method: str, path: str, body: Any = None, auth: str | None = None,
         form: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": auth} if auth else {}
    data = None
    if form is not None:
        data, headers["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            raw = r.read()
            return r.status, dict(r.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, dict(e.headers), json.loads(raw) if raw else None


@pytest.fixture
def two_apis(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two ``omnirelay api`` processes, each on its own port, on one fresh PostgreSQL database."""
    url = create_database_sync("omnirelay_auth")
    clusters = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            cluster = Cluster(tmp_path / name, url)
            cluster.config.write_text(CONFIG)
            clusters.append(cluster)
            cluster.start_api(processes=1)
        yield clusters[0].url, clusters[1].url
    finally:
        for cluster in clusters:
            cluster.stop()
        drop_database_sync(url)


def test_tokens_made_on_one_api_process_work_at_once_on_the_other(two_apis: tuple[str, str]) -> None:
    a, b = two_apis
    status, _, body = call(a, "POST", "/auth/1/session", {"username": "alice", "password": "alice password"})
    assert status == 200, body
    ibsso = f"IBSSO {body['token']}"
    assert call(b, "GET", "/omni/1/scenarios", auth=ibsso)[0] == 200
    status, _, body = call(b, "POST", "/auth/1/session", {"username": "alice", "password": "alice password"})
    assert status == 400, "one session per user, also through another process"

    status, _, body = call(b, "POST", "/auth/1/oauth2/token", form={
        "client_id": "carol", "client_secret": "carol password", "grant_type": "client_credentials"})
    assert status == 200, body
    bearer = f"Bearer {body['access_token']}"
    assert call(a, "GET", "/omni/1/scenarios", auth=bearer)[0] == 200

    assert call(a, "GET", "/omni/1/scenarios", auth=ibsso)[0] == 200  # process a has it cached now
    assert call(b, "DELETE", "/auth/1/session", auth=ibsso)[0] == 204
    assert call(b, "GET", "/omni/1/scenarios", auth=ibsso)[0] == 401
    deadline = time.monotonic() + 10
    while call(a, "GET", "/omni/1/scenarios", auth=ibsso)[0] != 401:
        assert time.monotonic() < deadline, "the ended session still works on the other process"
        time.sleep(0.25)


def test_two_api_processes_share_one_rate_budget_per_account(two_apis: tuple[str, str]) -> None:
    a, b = two_apis
    alice, carol = "App alice-key", "App carol-key"
    scenario = {"flow": WHATSAPP_SMS_FLOW}
    for url in (a, b, a, b):
        assert call(url, "POST", "/omni/1/scenarios", scenario, auth=alice)[0] == 200
    for url in (a, b):
        status, headers, body = call(url, "POST", "/omni/1/scenarios", scenario, auth=alice)
        assert status == 429, body
        assert body["requestError"]["serviceException"]["messageId"] == "TOO_MANY_REQUESTS"
        assert headers["Retry-After"] == "150"
    for url in (b, a, b, a):  # another account has its own budget
        assert call(url, "POST", "/omni/1/scenarios", scenario, auth=carol)[0] == 200
    assert call(b, "POST", "/omni/1/scenarios", scenario, auth=carol)[0] == 429
