"""PostgreSQL for benchmarks: throw-away databases on a server (:func:`fresh_database`, :func:`drop_database`), and
:class:`Pair`, a primary and its synchronous streaming standby made on this machine with Debian's cluster tools
(``pg_createcluster`` on free ports, ``pg_basebackup``, ``pg_ctlcluster ... promote``) for the failover benchmark
(``bench/pg_failover.py``) and the failover test (``tests/e2e/test_postgres_ha.py``)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg

from bench.lib.machine import free_port


async def fresh_database(admin: str) -> str:
    """A new empty database on the server ``admin`` points at; returns its URL."""
    name = f"omnirelay_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.rpartition("/")[0] + "/" + name


async def drop_database(admin: str, url: str) -> None:
    """Drop a database made by :func:`fresh_database`."""
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}"')
    finally:
        await conn.close()


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _version() -> str:
    """The newest PostgreSQL major version installed (the one ``pg_createcluster`` makes clusters of)."""
    return sorted(Path("/etc/postgresql").iterdir(), key=lambda p: int(p.name))[-1].name


async def _fetchval(port: int, sql: str, database: str = "postgres") -> object:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database}", timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


class Cluster:
    """A cluster of its own on a free port, with PostgreSQL's default settings (the machine's main cluster may be
    set up for tests: this one's has autovacuum off) but ``settings``. :meth:`drop` removes it."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        if shutil.which("pg_createcluster") is None:
            raise RuntimeError("pg_createcluster is missing: install Debian's postgresql package")
        self.version = _version()
        self.name = f"omnirelay_bench_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.settings = settings or {}

    @property
    def admin(self) -> str:
        """The URL of its ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create(self) -> Cluster:
        _run("pg_createcluster", self.version, self.name, "--port", str(self.port), "--", "--auth=trust")
        for key, value in self.settings.items():
            _run("pg_conftool", self.version, self.name, "set", key, value)
        _run("pg_ctlcluster", self.version, self.name, "start")
        return self

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", self.version, self.name, "--stop"], capture_output=True, timeout=60,
                       check=False)


class Pair:
    """Two clusters: ``primary`` (its commits wait for the standby: ``synchronous_standby_names = '*'``) and
    ``standby`` (a ``pg_basebackup`` of it, streaming). :meth:`drop` removes both whatever state they are in."""

    def __init__(self) -> None:
        if shutil.which("pg_createcluster") is None:
            raise RuntimeError("pg_createcluster is missing: install Debian's postgresql package")
        self.version = _version()
        tag = uuid.uuid4().hex[:8]
        self.names = (f"omnirelay_ha_{tag}_a", f"omnirelay_ha_{tag}_b")
        self.ports = (free_port(), free_port())
        self.created: list[str] = []

    @property
    def dsn_hosts(self) -> str:
        """Both servers, the primary first, as a libpq multi-host ``host:port`` list."""
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def dsn(self, database: str) -> str:
        """A URL that finds whichever server is the read-write one now."""
        return f"postgresql://postgres@{self.dsn_hosts}/{database}?target_session_attrs=read-write"

    def create(self) -> Pair:
        primary, standby = self.names
        self._cluster(primary, self.ports[0])
        _run("pg_conftool", self.version, primary, "set", "synchronous_standby_names", "*")
        _run("pg_conftool", self.version, primary, "set", "synchronous_commit", "on")
        _run("pg_ctlcluster", self.version, primary, "start")
        self._cluster(standby, self.ports[1])
        data = Path(f"/var/lib/postgresql/{self.version}/{standby}")
        shutil.rmtree(data)
        _run("install", "-d", "-o", "postgres", "-g", "postgres", "-m", "700", str(data))
        _run("runuser", "-u", "postgres", "--", "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.ports[0]),
             "-D", str(data), "-R", "-X", "stream")
        _run("pg_ctlcluster", self.version, standby, "start")
        deadline = time.monotonic() + 30
        sync = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
        while asyncio.run(_fetchval(self.ports[0], sync)) != 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not become synchronous within 30 s")
            time.sleep(0.2)
        return self

    def _cluster(self, name: str, port: int) -> None:
        _run("pg_createcluster", self.version, name, "--port", str(port), "--", "--auth=trust")
        self.created.append(name)

    def create_database(self, name: str) -> None:
        asyncio.run(_fetchval(self.ports[0], f'CREATE DATABASE "{name}"'))

    def kill_primary(self) -> None:
        """The primary dies at once (``stop -m immediate``: no shutdown checkpoint, connections dropped)."""
        _run("pg_ctlcluster", self.version, self.names[0], "stop", "-m", "immediate")

    def promote_standby(self) -> None:
        _run("pg_ctlcluster", self.version, self.names[1], "promote")

    def fetch(self, database: str, sql: str) -> list[tuple[object, ...]]:
        """Rows of ``sql`` on the standby (the primary after :meth:`promote_standby`)."""

        async def go() -> list[tuple[object, ...]]:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.ports[1]}/{database}", timeout=5)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(go())

    def drop(self) -> None:
        for name in reversed(self.created):
            subprocess.run(["pg_dropcluster", self.version, name, "--stop"], capture_output=True, timeout=60,
                           check=False)
        self.created.clear()
