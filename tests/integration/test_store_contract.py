"""The store contract, run against every store: a real SQLite file and a fresh PostgreSQL database.

What the API and the engine rely on: accounts and keys, one default scenario per account, idempotent accepts,
engine transactions that take each due job once, reports taken exactly once even by concurrent pollers,
webhook deliveries leased to one notifier at a time, and account isolation everywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import msgspec
import pytest

from omnirelay.domain.delivery import Receipt
from omnirelay.domain.inbound import InboundMessage, InboundPart, result_body
from omnirelay.domain.model import Step
from omnirelay.store.base import Change, LogQuery, NewMessage, ScenarioRecord, Store, Work
from omnirelay.store.inbound import InboundCounts
from omnirelay.store.postgres import PostgresStore
from omnirelay.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(120)


def message(message_id: str, content: bytes = b"c", supplied: bool = True, phone: str = "41793026727") -> NewMessage:
    return NewMessage(
        message_id=message_id,
        to_json=f'{{"phoneNumber":"{phone}"}}'.encode(),
        content_hash=hashlib.blake2b(content, digest_size=16).digest(),
        state=b'{"phase":"WAITING"}',
        supplied=supplied,
        address=phone,
    )


async def accept(store: Store, account: int, *messages: NewMessage, bulk: str | None = None) -> list[str]:
    now = time.time()
    stored = await store.accept(account, b'{"steps":[]}', bulk, list(messages), now, now)
    return [s.message_id for s in stored]


async def test_accounts_and_keys(store: Store) -> None:
    alice = await store.create_account("alice", "hash", "secret", "cli")
    assert (await store.account_by_username("alice")) == alice
    await store.add_key(alice.id, "k1", "h1", "cli")
    assert (await store.account_by_key_hash("h1")) == alice
    assert [k.id for k in await store.keys()] == ["k1"]
    assert await store.revoke_key("k1")
    assert await store.account_by_key_hash("h1") is None
    assert not await store.revoke_key("k1")
    assert await store.remove_account("alice")
    assert await store.account_by_username("alice") is None


async def test_accounts_listed_and_passwords_set(store: Store) -> None:
    a = await store.create_account("a", "h1", "s", "cli")
    b = await store.create_account("b", None, "s", "config")
    await store.set_password_hash(a.id, None)
    await store.set_password_hash(b.id, "h2")
    assert [(x.username, x.password_hash, x.source) for x in await store.accounts()] == [
        ("a", None, "cli"),
        ("b", "h2", "config"),
    ]
    await store.add_key(a.id, "k1", "h", "cli")
    await store.add_key(b.id, "k2", "h", "cli")  # a key hash stored already is left as it is
    assert [(k.id, k.username) for k in await store.keys()] == [("k1", "a")]


async def test_config_keys_are_made_exactly_the_declared_ones(store: Store) -> None:
    a = await store.create_account("a", None, "s", "config")
    b = await store.create_account("b", None, "s", "config")
    await store.add_key(a.id, "cli-key", "hc", "cli")  # a key made with the CLI is not the config file's to drop
    await store.set_config_keys(a.id, {"h1": "k1", "h2": "k2"})
    assert sorted((k.id, k.username, k.source) for k in await store.keys()) == [
        ("cli-key", "a", "cli"),
        ("k1", "a", "config"),
        ("k2", "a", "config"),
    ]
    await store.set_config_keys(a.id, {"h2": "k2"})  # k1 no longer declared
    assert await store.account_by_key_hash("h1") is None
    await store.set_config_keys(b.id, {"h2": "k2"})  # declared for b now: taken from a
    assert (await store.account_by_key_hash("h2")) == b
    assert (await store.account_by_key_hash("hc")) == a


async def test_auth_tokens_live_until_they_expire_or_end(store: Store) -> None:
    a = await store.create_account("a", None, "s", "cli")
    b = await store.create_account("b", None, "s", "cli")
    assert await store.add_auth_token(a.id, "old", "session", 1000.0, 1100.0, None, only_one=False)
    assert await store.add_auth_token(a.id, "t1", "oauth", 1000.0, 2000.0, 600.0, only_one=True)
    assert not await store.add_auth_token(a.id, "t2", "oauth", 1000.0, 2000.0, None, only_one=True)
    assert await store.add_auth_token(b.id, "t3", "oauth", 1000.0, 2000.0, None, only_one=True)
    found = await store.auth_token("t1", 1500.0)
    assert found is not None and (found.account, found.kind, found.expires_at, found.idle_seconds) == (
        a,
        "oauth",
        2000.0,
        600.0,
    )
    assert await store.auth_token("t2", 1500.0) is None
    assert await store.auth_token("t1", 2000.0) is None  # expired
    await store.extend_auth_token("t1", 1800.0, 1500.0)  # never earlier
    await store.extend_auth_token("t1", 2500.0, 1500.0)
    assert (await store.auth_token("t1", 2200.0)) is not None
    await store.extend_auth_token("old", 9000.0, 1500.0)  # an expired token stays expired
    assert await store.auth_token("old", 1500.0) is None
    assert await store.add_auth_token(a.id, "s1", "session", 1200.0, 3000.0, None, only_one=False)
    assert await store.remove_auth_tokens(a.id, "session", "nope") == 0
    assert await store.remove_auth_tokens(a.id, "session", "s1") == 1
    assert await store.remove_auth_tokens(a.id, "oauth") == 1
    assert await store.auth_token("t1", 1500.0) is None
    assert await store.auth_token("t3", 1500.0) is not None  # another account's token is untouched


async def test_queue_health(store: Store) -> None:
    now = time.time()
    await store.check_writable(now)
    await store.check_writable(now + 1)  # the same row, again
    assert await store.queue_stats(now) == (0, None)
    assert await store.next_due() is None
    account = (await store.create_account("a", None, "s", "cli")).id
    await accept(store, account, message("m1"), message("m2"))
    depth, oldest = await store.queue_stats(time.time() + 1)
    assert depth == 2 and oldest is not None and oldest <= time.time()
    assert await store.next_due() == pytest.approx(oldest)


async def test_one_default_scenario_per_account(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    b = (await store.create_account("b", None, "s", "cli")).id
    flow = [Step(channel="SMS", from_="Info")]
    await store.create_scenario(a, ScenarioRecord("K1", "one", flow, True))
    await store.create_scenario(b, ScenarioRecord("K2", "other account", flow, True))
    await store.create_scenario(a, ScenarioRecord("K3", "two", flow, True))
    assert [s.key for s in await store.scenarios(a, True, 100, 0)] == ["K3"]
    assert (await store.default_scenario(b)) is not None
    assert await store.scenario(b, "K1") is None  # another account's key is not found
    assert not await store.update_scenario(b, ScenarioRecord("K1", "x", flow, False))
    assert await store.update_scenario(a, ScenarioRecord("K1", "one", flow, True))
    assert [s.key for s in await store.scenarios(a, True, 100, 0)] == ["K1"]
    assert [s.key for s in await store.scenarios(a, None, 1, 1)] == ["K3"]
    assert not await store.delete_scenario(b, "K1")
    assert (await store.scenario(a, "K1")) is not None
    assert await store.delete_scenario(a, "K1")
    assert await store.scenario(a, "K1") is None  # not kept in a cache past its deletion
    assert [s.key for s in await store.scenarios(a, False, 100, 0)] == ["K3"]


async def test_accept_is_idempotent_per_client_message_id(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    b = (await store.create_account("b", None, "s", "cli")).id
    assert await accept(store, a, message("m1"), message("m2")) == ["m1", "m2"]
    assert await accept(store, a, message("m1"), message("m3")) == ["m1", "m3"]
    now = time.time()
    answer = await store.accept(a, b"{}", None, [message("m4"), message("m2", content=b"other")], now, now)
    assert [(s.message_id, s.duplicate) for s in answer] == [("m4", False), ("m2", True)]
    assert await accept(store, b, message("m1", content=b"b's own")) == ["m1"]  # ids are per account
    logs = await store.logs(a, LogQuery(since=0, limit=100))
    assert sorted(v.message_id for v in logs) == ["m1", "m2", "m3", "m4"]  # m4 is stored, the other m2 is not
    assert [v.payload for v in logs if v.message_id == "m2"] == [b'{"steps":[]}']  # the first m2 is untouched


async def test_rejected_destinations_are_stored_finished_without_a_job(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    refused = message("bad", phone="nope")
    rejected = NewMessage(
        refused.message_id,
        refused.to_json,
        refused.content_hash,
        b'{"phase":"DONE","status":"REJECTED_DESTINATION"}',
        True,
        refused.address,
        rejected=True,
    )
    assert await accept(store, a, message("good-1"), rejected, message("good-2")) == ["good-1", "bad", "good-2"]
    seen: list[Work] = []
    await store.engine_step(time.time() + 1, 100, [], _finisher(seen))  # type: ignore[arg-type]
    assert sorted(w.message_id for w in seen) == ["good-1", "good-2"]  # no job for the refused one
    refused_logs = await store.logs(a, LogQuery(since=0, status_group=5, limit=100))
    assert [(v.message_id, v.state) for v in refused_logs] == [("bad", rejected.state)]
    reports = await store.take_reports(a, None, None, None, 100)
    assert sorted(msgspec.json.decode(r)["messageId"] for r in reports) == ["good-1", "good-2"]
    # a replay of the same request stores nothing again and answers the same ids
    assert await accept(store, a, message("good-1"), rejected, message("good-2")) == ["good-1", "bad", "good-2"]
    assert len(await store.logs(a, LogQuery(since=0, limit=100))) == 3
    # finished at once, so purged with the other finished messages
    assert await store.purge(time.time() + 1, 100) == 3


async def test_concurrent_accepts_all_committed(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    results = await asyncio.gather(*(accept(store, a, message(f"c{i}"), message(f"d{i}")) for i in range(200)))
    assert len({m for r in results for m in r}) == 400
    assert len(await store.logs(a, LogQuery(since=0, limit=1000))) == 400


def _finisher(seen: list[Work]) -> object:
    """An engine decision that records the work and finishes every message with a report."""

    def handle(work: list[Work]) -> tuple[list[Change], int]:
        seen.extend(work)
        changes = [
            Change(
                message=w.message,
                account_id=w.account_id,
                state=b'{"phase":"DONE","status":"DELIVERED_TO_HANDSET"}',
                status_group=3,
                channel="SMS",
                done_at=time.time(),
                report=(w.message_id, w.bulk_id, "SMS", f'{{"messageId":"{w.message_id}"}}'.encode()),
                submitted=[(0, "SMS", f"p-{w.message_id}")],
            )
            for w in work
        ]
        return changes, len(work)

    return handle


async def test_engine_takes_each_due_job_once_and_reports_once(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    await accept(store, a, *(message(f"e{i}") for i in range(300)))
    seen: list[Work] = []
    handle = _finisher(seen)
    results = await asyncio.gather(*(store.engine_step(time.time(), 40, [], handle) for _ in range(10)))  # type: ignore[arg-type]
    claimed = sum(r[1] for r in results)
    while claimed < 300:
        _, more = await store.engine_step(time.time(), 100, [], handle)  # type: ignore[arg-type]
        assert more > 0
        claimed += more
    assert len(seen) == 300 and len({w.message for w in seen}) == 300
    assert (await store.engine_step(time.time(), 100, [], handle))[1] == 0  # type: ignore[arg-type]

    async def poll() -> list[bytes]:
        got: list[bytes] = []
        while batch := await store.take_reports(a, None, None, None, 7):
            got.extend(batch)
        return got

    first, second = await asyncio.gather(poll(), poll())
    assert len(first) + len(second) == 300
    assert len(set(first) | set(second)) == 300
    assert await store.take_reports(a, None, None, None, 50) == []
    done = await store.logs(a, LogQuery(since=0, status_group=3, channel="SMS", limit=1000))
    assert len(done) == 300


async def test_reports_and_logs_by_their_filters(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    b = (await store.create_account("b", None, "s", "cli")).id
    await accept(store, a, message("r1"), message("r2", phone="41790000002"), bulk="bulk-1")
    await accept(store, a, message("r3"))
    await accept(store, b, message("r4"), bulk="bulk-1")
    seen: list[Work] = []
    handle = _finisher(seen)
    assert (await store.engine_step(time.time(), 100, [], handle))[1] == 4  # type: ignore[arg-type]

    def ids(bodies: list[bytes]) -> list[str]:
        return [msgspec.json.decode(body)["messageId"] for body in bodies]

    assert ids(await store.take_reports(a, "bulk-1", "r2", None, 10)) == ["r2"]
    assert await store.take_reports(a, None, None, "WHATSAPP", 10) == []
    assert ids(await store.take_reports(a, "bulk-1", None, "SMS", 10)) == ["r1"]
    assert ids(await store.take_reports(a, None, None, None, 10)) == ["r3"]
    assert ids(await store.take_reports(b, None, "r4", None, 10)) == ["r4"]

    async def logged(**filters: object) -> set[str]:
        return {v.message_id for v in await store.logs(a, LogQuery(since=0, limit=100, **filters))}  # type: ignore[arg-type]

    assert await logged(bulk_ids=("bulk-1", "bulk-2")) == {"r1", "r2"}
    assert await logged(message_ids=("r1", "r3", "r4")) == {"r1", "r3"}
    assert await logged(to="41790000002") == {"r2"}
    assert await logged(until=0.0) == set()
    assert await logged(message_ids=("r3",), bulk_ids=("bulk-1",)) == set()
    view = await store.message(a, "r2")
    assert view is not None and view.bulk_id == "bulk-1" and b"41790000002" in view.to_json
    assert await store.message(b, "r2") is None


async def test_future_jobs_wait_and_events_apply(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    now = time.time()
    await store.accept(a, b"{}", None, [message("later")], now + 3600, now)
    await store.accept(a, b"{}", None, [message("now")], now, now)
    seen: list[Work] = []

    def record(work: list[Work]) -> tuple[list[Change], int]:
        seen.extend(work)
        return [], len(work)

    assert (await store.engine_step(time.time(), 10, [], record))[1] == 1
    assert [w.message_id for w in seen] == ["now"]
    assert await store.next_due() == pytest.approx(now + 3600)
    # an event is decided at once, whatever the message's jobs
    recorded, claimed = await store.engine_step(
        time.time(), 10, [(seen[0].message, b'{"type":"expire","step":0}')], record
    )
    assert (recorded, claimed) == (1, 0)
    assert seen[-1].event == b'{"type":"expire","step":0}'


async def test_deliveries_are_leased(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    await accept(store, a, message("w1"))
    seen: list[Work] = []

    def handle(work: list[Work]) -> tuple[list[Change], int]:
        seen.extend(work)
        return [
            Change(
                w.message,
                w.account_id,
                w.state,
                3,
                "SMS",
                time.time(),
                webhooks=[(f"r-{w.message_id}", "http://127.0.0.1:9/x", "application/json", b"{}")],
            )
            for w in work
        ], len(work)

    await store.engine_step(time.time(), 10, [], handle)
    now = time.time()
    first = await store.claim_deliveries(now, 10, 30)
    assert [d.report_id for d in first] == ["r-w1"]
    assert await store.claim_deliveries(now, 10, 30) == []  # leased
    await store.settle_deliveries([], [(first[0].id, now - 1, "HTTP 500")])
    again = await store.claim_deliveries(time.time(), 10, 30)
    assert [d.attempts for d in again] == [1]
    await store.settle_deliveries([again[0].id], [])
    assert await store.claim_deliveries(time.time() + 3600, 10, 30) == []


async def test_purge_removes_finished_messages_and_what_is_only_theirs(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    await accept(store, a, message("old-1"), message("old-2"))
    await accept(store, a, message("pending"))
    seen: list[Work] = []

    def finish_old(work: list[Work]) -> tuple[list[Change], int]:
        handle = _finisher(seen)
        changes, n = handle([w for w in work if w.message_id.startswith("old")])  # type: ignore[operator]
        return changes, n

    await store.engine_step(time.time(), 100, [], finish_old)
    assert await store.purge(time.time() - 3600, 100) == 0  # finished just now: kept
    assert await store.purge(time.time() + 1, 100) == 2
    assert await store.message(a, "old-1") is None and await store.message(a, "old-2") is None
    assert await store.message(a, "pending") is not None  # not finished: never purged
    assert await store.take_reports(a, None, None, None, 100) == []
    assert [v.message_id for v in await store.logs(a, LogQuery(since=0, limit=100))] == ["pending"]
    assert await store.purge(time.time() + 1, 100) == 0
    # the request of the two finished messages went with them; the pending message's request stays
    assert await _count(store, "requests") == 1
    assert await _count(store, "submissions") == 0


async def _count(store: Store, table: str) -> int:
    if isinstance(store, PostgresStore):
        return int(await store.pool.fetchval(f"SELECT count(*) FROM {table}"))
    assert isinstance(store, SqliteStore)
    return int(store._one(f"SELECT count(*) FROM {table}")[0])


async def test_receipts_find_their_step_early_or_late(store: Store) -> None:
    """A receipt whose submission is stored becomes a report job for its step; one that came before the provider id
    was stored (a fast SMSC) is held and becomes the job in the transaction that stores the id."""
    a = (await store.create_account("a", None, "s", "cli")).id
    await accept(store, a, message("r1"), message("r2"))
    started: list[Work] = []

    def submit(work: list[Work]) -> tuple[list[Change], int]:
        started.extend(work)
        return [Change(w.message, w.account_id, w.state, 1, "SMS", None) for w in work], len(work)

    await store.engine_step(time.time(), 10, [], submit)
    m1, m2 = sorted(w.message for w in started)

    def stored_id(message: int, step: int, provider_id: str) -> Callable[[list[Work]], tuple[list[Change], int]]:
        def fn(work: list[Work]) -> tuple[list[Change], int]:
            return [
                Change(w.message, w.account_id, w.state, 1, "SMS", None, submitted=[(step, "SMS", provider_id)])
                for w in work
                if w.message == message
            ], len(work)

        return fn

    await store.engine_step(time.time(), 0, [(m1, b'{"type":"submitted","step":1}')], stored_id(m1, 1, "smsc:7"))
    early = Receipt("SMS", "smsc:8", "UNDELIVERABLE", "EC_ABSENT_SUBSCRIBER_SM", detail="err:001")
    retry = Receipt("SMS", "smsc:7", "RETRY", after_s=3600)
    await store.record_receipts([Receipt("SMS", "smsc:7", "DELIVERED"), early, retry], time.time())

    seen: list[Work] = []

    def record(work: list[Work]) -> tuple[list[Change], int]:
        seen.extend(work)
        return [], len(work)

    await store.engine_step(time.time(), 10, [], record)
    assert [(w.message, msgspec.json.decode(w.event)) for w in seen] == [
        (m1, {"type": "report", "step": 1, "outcome": "DELIVERED", "error": None, "not_a_user": False, "detail": None})
    ]
    assert await store.next_due() == pytest.approx(time.time() + 3600, abs=5)  # the retry waits its time

    # the early receipt's provider id is stored now: the same transaction makes its report due
    seen.clear()
    await store.engine_step(time.time(), 0, [(m2, b'{"type":"submitted","step":0}')], stored_id(m2, 0, "smsc:8"))
    await store.engine_step(time.time(), 10, [], record)
    assert [(w.message, msgspec.json.decode(w.event)["outcome"]) for w in seen] == [(m2, "UNDELIVERABLE")]
    assert msgspec.json.decode(seen[0].event)["detail"] == "err:001"
    # an id of another channel does not match
    await store.record_receipts([Receipt("WHATSAPP", "smsc:7", "DELIVERED")], time.time())
    seen.clear()
    await store.engine_step(time.time(), 10, [], record)
    assert seen == []


async def test_pushed_webhooks_are_queued_once(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    item = (a, "inbound.wamid.1", "http://127.0.0.1:9/in", "application/json", b'{"results":[]}')
    await store.push_webhooks([item], time.time())
    await store.push_webhooks([item], time.time())
    claimed = await store.claim_deliveries(time.time(), 10, 30)
    assert [(d.report_id, d.url, d.body) for d in claimed] == [("inbound.wamid.1", item[2], item[4])]


async def test_token_bucket_is_shared_and_refills(store: Store) -> None:
    now = time.time()
    grants = await asyncio.gather(*(store.take_tokens("smpp:main", 30, 100.0, 100.0, now) for _ in range(5)))
    assert sum(grants) == 100 and all(0 <= g <= 30 for g in grants)
    assert await store.take_tokens("smpp:main", 30, 100.0, 100.0, now) == 0
    assert await store.take_tokens("smpp:main", 30, 100.0, 100.0, now + 0.1) == 10  # 0.1 s at 100/s
    assert await store.take_tokens("smpp:other", 5, 1.0, 2.0, now) == 2  # each key its own bucket


# --- inbound SMS ---------------------------------------------------------------------------------------

INBOUND_URL = "http://127.0.0.1:9/inbound"


def mo(text: str, seq: int = 1, total: int = 1, reference: str = "", account: int = 1, url: str | None = None,
       source: str = "4917612345678", destination: str = "4915790000001") -> InboundPart:
    return InboundPart("smsc", source, destination, reference, total, seq, text, account, url)


def build_inbound(message: InboundMessage) -> tuple[str, bytes]:
    message_id = f"mo-{message.source}-{message.text}-{message.parts}"
    return message_id, result_body(message_id, message, ["STOP"], 0.0, "EUR")


async def take_texts(store: Store, account: int, limit: int = 50) -> tuple[list[tuple[str, int]], int]:
    bodies, pending = await store.take_inbound(account, limit, time.time() - 3600)
    results = [msgspec.json.decode(b) for b in bodies]
    return [(r["text"], r["smsCount"]) for r in results], pending


async def test_inbound_sms_resend_within_the_window_is_stored_once(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    now = time.time()
    first = await store.record_inbound([mo("Hello", account=a, url=INBOUND_URL)], now, 600, build_inbound)
    assert first == InboundCounts(stored=1, duplicates=0, completed=1)
    # the SMSC sends it again (it missed our deliver_sm_resp), in the same batch and later
    again = await store.record_inbound(
        [mo("Hello", account=a, url=INBOUND_URL), mo("Hello", account=a, url=INBOUND_URL)], now + 5, 600, build_inbound
    )
    assert again == InboundCounts(stored=0, duplicates=2, completed=0)
    # the same text with another handset reference is another message; so is the same one after the window
    other = await store.record_inbound([mo("Hello", reference="umr:7", account=a)], now + 6, 600, build_inbound)
    later = await store.record_inbound([mo("Hello", account=a)], now + 700, 600, build_inbound)
    assert other.completed == later.completed == 1
    claimed = await store.claim_deliveries(now + 800, 10, 30)
    assert len(claimed) == 1 and claimed[0].url == INBOUND_URL  # only the message with an inbound URL is pushed
    pushed = msgspec.json.decode(claimed[0].body)
    assert claimed[0].report_id == "inbound-sms." + pushed["results"][0]["messageId"]
    assert (pushed["messageCount"], pushed["pendingMessageCount"]) == (1, 0)
    assert pushed["results"][0]["from"] == "4917612345678" and pushed["results"][0]["to"] == "4915790000001"
    # every message is pulled once: two now, one left, then none
    assert await take_texts(store, a, limit=2) == ([("Hello", 1), ("Hello", 1)], 1)
    assert await take_texts(store, a) == ([("Hello", 1)], 0)
    assert await take_texts(store, a) == ([], 0)


async def test_inbound_sms_parts_make_one_message_whatever_their_order(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    b = (await store.create_account("b", None, "s", "cli")).id
    now = time.time()
    parts = [mo(text, seq, 3, "8:42", a) for seq, text in ((1, "one "), (2, "two "), (3, "three"))]
    assert (await store.record_inbound([parts[2], parts[0]], now, 600, build_inbound)).completed == 0
    assert await take_texts(store, a) == ([], 0)  # incomplete: nothing to pull yet
    assert await store.record_inbound([parts[0]], now + 1, 600, build_inbound) == InboundCounts(0, 1, 0)
    assert (await store.record_inbound([parts[1]], now + 2, 600, build_inbound)).completed == 1
    assert await take_texts(store, b) == ([], 0)  # another account sees none of it
    assert await take_texts(store, a) == ([("one two three", 3)], 0)
    # a resend of a part after the message was complete does not start a new one
    assert await store.record_inbound([parts[1]], now + 3, 600, build_inbound) == InboundCounts(0, 1, 0)
    assert await store.sweep_inbound(now + 10_000, 600, 600, build_inbound) == 0
    assert await take_texts(store, a) == ([], 0)


async def test_inbound_sms_missing_parts_are_delivered_as_they_are_after_the_timeout(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    now = time.time()
    await store.record_inbound(
        [mo("first ", 1, 3, "16:300", a, INBOUND_URL), mo("third", 3, 3, "16:300", a, INBOUND_URL)],
        now,
        600,
        build_inbound,
    )
    assert await store.sweep_inbound(now + 599, 600, 600, build_inbound) == 0  # still waiting
    assert await store.sweep_inbound(now + 601, 600, 600, build_inbound) == 1
    assert await take_texts(store, a) == ([("first third", 2)], 0)
    (pushed,) = await store.claim_deliveries(now + 700, 10, 30)
    assert msgspec.json.decode(pushed.body)["results"][0]["smsCount"] == 2
    # the sweep also forgets keys older than the window: the same part is then new again
    assert await store.sweep_inbound(now + 1300, 600, 600, build_inbound) == 0
    assert (await store.record_inbound([mo("x", account=a)], now + 1300, 600, build_inbound)).completed == 1


async def test_inbound_sms_concurrent_batches_complete_a_message_once(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    now = time.time()
    # two workers' binds get the two parts of one message, and both get the same resend, at the same moment
    batches = [
        [mo("left ", 1, 2, "sar:9", a), mo("dup", account=a)],
        [mo("right", 2, 2, "sar:9", a), mo("dup", account=a)],
    ]
    counts = await asyncio.gather(*(store.record_inbound(b, now, 600, build_inbound) for b in batches))
    assert sum(c.completed for c in counts) == 2 and sum(c.duplicates for c in counts) == 1
    texts, _ = await take_texts(store, a)
    assert sorted(texts) == [("dup", 1), ("left right", 2)]
    # the same resends in opposite orders, at once: each stored once, and neither batch fails
    for round_ in range(5):
        x, y = mo(f"x{round_}", account=a), mo(f"y{round_}", account=a)
        counts = await asyncio.gather(*(store.record_inbound(b, now, 600, build_inbound) for b in ([x, y], [y, x])))
        assert sum(c.completed for c in counts) == 2 and sum(c.duplicates for c in counts) == 2


async def test_inbound_sms_keyword_and_result_shape(store: Store) -> None:
    a = (await store.create_account("a", None, "s", "cli")).id
    await store.record_inbound([mo("stop  all of it", account=a)], 1_700_000_000.25, 600, build_inbound)
    bodies, _ = await store.take_inbound(a, 10, 0)
    (result,) = [msgspec.json.decode(b) for b in bodies]
    assert result == {
        "messageId": "mo-4917612345678-stop  all of it-1",
        "from": "4917612345678",
        "to": "4915790000001",
        "text": "stop  all of it",
        "cleanText": "all of it",
        "keyword": "STOP",
        "receivedAt": "2023-11-14T22:13:20.250+0000",
        "smsCount": 1,
        "price": {"pricePerMessage": 0.0, "currency": "EUR"},
    }
