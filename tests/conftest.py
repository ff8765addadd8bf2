"""Fixtures shared by the test tiers: real protocol peers the tests start on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from peers.smsc.harness import Smsc, SmscMissing, check_installed


@pytest.fixture
def make_smsc(tmp_path: Path) -> Iterator[Callable[..., Smsc]]:
    """Start node-smpp SMSCs (``make_smsc(tps=5, ...)`` sets ``SMSC_TPS`` ...); all stopped at the end."""
    try:
        check_installed()
    except SmscMissing as exc:
        pytest.fail(str(exc))
    started: list[Smsc] = []

    def make(**settings: str | int) -> Smsc:
        smsc = Smsc(tmp_path / f"smsc-{len(started)}.jsonl", **settings)
        started.append(smsc)
        return smsc.start()

    yield make
    for smsc in started:
        smsc.stop()
