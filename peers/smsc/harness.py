"""Start and read the node-smpp SMSC (``smsc.js`` beside this file) for the SMPP tests and benches.

:class:`Smsc` runs ``node smsc.js`` on a free port with its settings as environment variables, records
every PDU it received into a JSON-lines file, and can be killed and started again on the same port (the
log goes on). The node modules come from ``scripts/install-test-peers``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SYSTEM_ID = "omni"
PASSWORD = "secret"


class SmscMissing(RuntimeError):
    """node or the SMSC's node modules are not installed."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_installed() -> str:
    """The node binary; raises :class:`SmscMissing` telling what to run when something is missing."""
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "smpp" / "package.json").exists():
        raise SmscMissing("the test SMSC is not installed: run scripts/install-test-peers (needs node and npm)")
    return node


class Smsc:
    """One node-smpp SMSC process (restartable on the same port) and its PDU log."""

    def __init__(self, log_path: Path | None, port: int | None = None, **settings: str | int) -> None:
        self.node = check_installed()
        self.port = port or free_port()
        self.log_path = log_path
        self.env = {**os.environ, "SMSC_SYSTEM_ID": SYSTEM_ID, "SMSC_PASSWORD": PASSWORD}
        if log_path is not None:
            self.env["SMSC_LOG"] = str(log_path)
        self.env.update({f"SMSC_{k.upper()}": str(v) for k, v in settings.items()})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0, **settings: str | int) -> Smsc:
        """Start (again) and wait until the port accepts connections; ``settings`` change env for this run."""
        self.env.update({f"SMSC_{k.upper()}": str(v) for k, v in settings.items()})
        self.proc = subprocess.Popen(
            [self.node, str(HERE / "smsc.js"), str(self.port)],
            env=self.env,
            stdin=subprocess.PIPE,  # mobile-originated messages are commanded on stdin (send_mo)
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"the SMSC exited with {self.proc.returncode}: {out}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the SMSC did not listen on port {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: connections drop with whatever was in flight."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)
            for pipe in (self.proc.stdout, self.proc.stdin):
                if pipe is not None:
                    pipe.close()
        self.proc = None

    def stop(self) -> dict[str, int]:
        """SIGTERM; returns the counts the SMSC printed (submit_sm, accepted, throttled, dlr, deliver_sm_resp)."""
        counts: dict[str, int] = {}
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                out, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate(timeout=10)
            for line in out.decode(errors="replace").splitlines():
                if line.startswith("counts "):
                    counts = json.loads(line[len("counts ") :])
        self.proc = None
        return counts

    # --- the log -------------------------------------------------------------------------------------

    def records(self, command: str | None = None) -> list[dict[str, Any]]:
        """Every recorded entry (optionally of one command), in order."""
        if self.log_path is None or not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written right now
            if command is None or entry.get("command") == command:
                out.append(entry)
        return out

    def submits(self, status: int | None = 0) -> list[dict[str, Any]]:
        """submit_sm PDUs received (with ``status`` answered; None = any); held ones (``answer_first``) too."""
        return [r for r in self.records("submit_sm") if status is None or r.get("status") == status]

    def answered(self) -> list[dict[str, Any]]:
        """submit_sm PDUs taken and answered (not held by ``answer_first``)."""
        return [r for r in self.submits() if not r.get("held")]

    def held(self) -> list[dict[str, Any]]:
        """submit_sm PDUs taken but never answered (beyond ``answer_first``)."""
        return [r for r in self.submits() if r.get("held")]

    def wait_for(self, check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    # --- mobile-originated messages ---------------------------------------------------------------------

    def _command(self, command: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None, "the SMSC is not running"
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()

    def send_mo(
        self,
        mo_id: str,
        source: str,
        destination: str,
        short_message: bytes,
        data_coding: int = 0,
        esm_class: int = 0,
        tlvs: dict[str, int | bytes] | None = None,
    ) -> None:
        """Make the SMSC deliver a mobile-originated deliver_sm (sent again until it is acknowledged)."""
        wire = {k: v.hex() if isinstance(v, bytes) else v for k, v in (tlvs or {}).items()}
        self._command(
            {
                "op": "mo",
                "id": mo_id,
                "source": source,
                "destination": destination,
                "short_message": short_message.hex(),
                "data_coding": data_coding,
                "esm_class": esm_class,
                "tlvs": wire,
            }
        )

    def resend_mo(self, mo_id: str) -> None:
        """Deliver MO ``mo_id`` again, although it was acknowledged (an SMSC that lost the deliver_sm_resp)."""
        self._command({"op": "resend", "id": mo_id})

    def mo_resps(self, mo_id: str | None = None, status: int | None = 0) -> list[dict[str, Any]]:
        """deliver_sm_resp answers the SMSC got for MOs (of ``mo_id``; with ``status``, None = any)."""
        return [
            r
            for r in self.records("mo_resp")
            if (mo_id is None or r["id"] == mo_id) and (status is None or r["status"] == status)
        ]


#: GSM 03.38 default alphabet positions that differ from ASCII, and the extension table (after ESC), for the
#: texts the tests send; written out here rather than taken from omnirelay, so the tests do not encode with the
#: code they check.
_GSM7_SPECIAL = {"@": 0x00, "£": 0x01, "$": 0x02, "¥": 0x03, "è": 0x04, "é": 0x05, "ù": 0x06, "ì": 0x07,
                 "ò": 0x08, "Ç": 0x09, "Ø": 0x0B, "ø": 0x0C, "Å": 0x0E, "å": 0x0F, "_": 0x11, "Æ": 0x1C,
                 "æ": 0x1D, "ß": 0x1E, "É": 0x1F, "¤": 0x24, "¡": 0x40, "Ä": 0x5B, "Ö": 0x5C, "Ñ": 0x5D,
                 "Ü": 0x5E, "§": 0x5F, "¿": 0x60, "ä": 0x7B, "ö": 0x7C, "ñ": 0x7D, "ü": 0x7E, "à": 0x7F}
_GSM7_EXTENSION = {"€": 0x65, "[": 0x3C, "]": 0x3E, "{": 0x28, "}": 0x29, "\\": 0x2F, "~": 0x3D, "^": 0x14,
                   "|": 0x40}


def gsm7(text: str) -> bytes:
    """``text`` as unpacked GSM 03.38 septets (one a octet, extension characters as ESC and their code)."""
    out = bytearray()
    for char in text:
        if char in _GSM7_SPECIAL:
            out.append(_GSM7_SPECIAL[char])
        elif char in _GSM7_EXTENSION:
            out += bytes((0x1B, _GSM7_EXTENSION[char]))
        else:
            assert char.isascii() and char not in "`" and (char.isalnum() or char in " !\"#%&'()*+,-./:;<=>?\n\r")
            out.append(ord(char))
    return bytes(out)


def udh8(reference: int, total: int, seq: int) -> bytes:
    """A user data header with the 8-bit concatenation element (IEI 0x00)."""
    return bytes((5, 0x00, 3, reference, total, seq))


def udh16(reference: int, total: int, seq: int) -> bytes:
    """A user data header with the 16-bit concatenation element (IEI 0x08)."""
    return bytes((6, 0x08, 4, reference >> 8, reference & 0xFF, total, seq))
