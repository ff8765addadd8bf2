"""The embedded store's data dir on a real file system that is read-only or full (a tmpfs of a few MB, mounted
for the test): ``serve`` refuses to start with one line saying why, and a running gateway's ``/readyz`` says
not ready while its disk is full, and ready again once there is room."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ALADDIN_CONFIG, Gateway, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mounts a tmpfs of the given size (MB) and returns its folder; skips when this machine cannot mount."""
    mounted: list[Path] = []

    def mount(size_mb: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
    with open(filler, "ab", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0")
    return filler


def _sqlite_gateway(make_gateway: Callable[..., Gateway], data_dir: Path, config: str = ALADDIN_CONFIG) -> Gateway:
    gw = make_gateway(config, start=False)
    gw.drop_database()  # the data dir is what is tested, whichever store the suite runs on
    gw.data_dir = data_dir / "data"
    return gw


def _refused_start(gw: Gateway) -> str:
    done = gw.cli("serve", "--host", gw.host, "--port", str(free_port()), check=False, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("omnirelay: "), output
    return lines[0]


def test_serve_refuses_a_read_only_data_dir(make_gateway: Callable[..., Gateway],
                                            small_disk: Callable[[int], Path]) -> None:
    disk = small_disk(64)
    gw = _sqlite_gateway(make_gateway, disk)
    gw.start()
    assert gw.post("/omni/1/scenarios", {"flow": [{"from": "InfoSMS", "channel": "SMS"}]}).status == 200
    gw.stop()
    _remount(disk, "ro")
    line = _refused_start(gw)
    assert "Read-only file system" in line or "readonly" in line, line
    assert str(disk) in line, line


def test_serve_refuses_a_fresh_data_dir_on_a_read_only_disk(make_gateway: Callable[..., Gateway],
                                                            small_disk: Callable[[int], Path]) -> None:
    disk = small_disk(8)
    _remount(disk, "ro")
    gw = _sqlite_gateway(make_gateway, disk)
    line = _refused_start(gw)
    assert "Read-only file system" in line, line


def test_serve_refuses_a_full_data_dir(make_gateway: Callable[..., Gateway],
                                       small_disk: Callable[[int], Path]) -> None:
    disk = small_disk(16)
    gw = _sqlite_gateway(make_gateway, disk, ALADDIN_CONFIG + "\n[limits]\nmin_free_disk_mb = 1\n")
    gw.start()
    gw.stop()
    _fill(disk)
    line = _refused_start(gw)
    assert "MB free" in line or "full" in line, line


def test_readyz_is_not_ready_while_the_disk_is_full(make_gateway: Callable[..., Gateway],
                                                    small_disk: Callable[[int], Path]) -> None:
    disk = small_disk(48)
    gw = _sqlite_gateway(make_gateway, disk, ALADDIN_CONFIG + "\n[limits]\nmin_free_disk_mb = 2\n")
    gw.start()
    gw.create_scenario(default=True)
    assert gw.get("/readyz", auth=None).status == 200
    filler = _fill(disk)
    r = gw.get("/readyz", auth=None)
    assert r.status == 503, r
    assert "MB free" in r.json["reason"] or "full" in r.json["reason"], r
    send = gw.post("/omni/1/advanced", {"destinations": [{"to": {"phoneNumber": "41793026726"}}],
                                        "sms": {"text": "hi"}})
    assert send.status in (200, 503), send  # never a 500
    filler.unlink()
    assert gw.get("/readyz", auth=None).status == 200
    send = gw.post("/omni/1/advanced", {"destinations": [{"to": {"phoneNumber": "41793026726"}}],
                                        "sms": {"text": "hi"}})
    assert send.status == 200, send
    assert "Traceback" not in gw.output, gw.output[-3000:]


@pytest.mark.parametrize("database", ["postgresql://postgres@127.0.0.1:1/omnirelay", "missing-database"])
def test_serve_refuses_a_database_it_cannot_reach(make_gateway: Callable[..., Gateway], database: str) -> None:
    gw = make_gateway(start=False)
    gw.drop_database()
    if database == "missing-database":
        from tests.pg import ADMIN_URL

        database = ADMIN_URL.rpartition("/")[0] + "/omnirelay_no_such_database"
    done = gw.cli("serve", "--port", str(free_port()), "--database", database, check=False, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    assert output.startswith("omnirelay: cannot open the database postgresql://"), output
