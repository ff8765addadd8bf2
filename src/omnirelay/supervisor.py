"""``omnirelay serve`` on SQLite as two processes on one file: the API and the engine, each a child of a small
supervisor, so that one command uses two cores.

The supervisor starts both children, says once that the gateway listens when both have started, restarts a
child that dies (with backoff), and on SIGTERM or SIGINT stops the API first (no new accepts), then the engine
(it flushes what it holds). A child that cannot start at all sends its one-line reason up a pipe; the
supervisor shows the first such line once and exits with status 2.

Each child is this interpreter run again (``python -c``), given its part by a pickle on its stdin: the parent's
``sys.path``, then a :class:`ChildPlan`. A child dies with its supervisor (``PR_SET_PDEATHSIG``), so a
supervisor killed with SIGKILL leaves no process holding the file's role locks.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import pickle
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("omnirelay")

_CHILD_CODE = (
    "import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    "from omnirelay.cli import run_child; sys.exit(run_child(pickle.load(sys.stdin.buffer)))"
)
FIRST_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 30.0
STEADY_SECONDS = 30.0
"""A child that ran this long before it died is restarted after the first backoff again."""
STOP_SECONDS = 30.0
"""How long a child may take to stop after SIGTERM before it is killed."""
_PR_SET_PDEATHSIG = 1


@dataclass
class ChildPlan:
    """What a child process is to do: its role, the settings, and the descriptors it inherits."""

    role: str
    """``api`` or ``worker``."""
    settings: Any
    parent_pid: int
    report_fd: int
    """Where the child writes ``ready`` once it serves, or ``fail <line>`` when it cannot start."""
    metrics_fd: int | None = None
    """The worker: the listening loopback socket on which it serves its operations routes."""
    metrics_url: str | None = None
    """The API: where the worker's metrics are read, to be merged into the API's ``/metrics``."""


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when its supervisor ends, however that ends (SIGKILL included)."""
    libc_name = ctypes.util.find_library("c")
    done = False
    if sys.platform.startswith("linux") and libc_name:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        done = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if os.getppid() != parent_pid:  # the supervisor died before the line above
        os._exit(1)
    if not done:  # no prctl: watch the parent instead

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def report(plan: ChildPlan, line: str) -> None:
    """Tell the supervisor ``ready`` or ``fail <reason>`` (once; later calls do nothing)."""
    if plan.report_fd < 0:
        return
    with contextlib.suppress(OSError):
        os.write(plan.report_fd, line.encode("utf-8", "replace") + b"\n")
        os.close(plan.report_fd)
    plan.report_fd = -1


@dataclass
class _Child:
    name: str
    """For humans: "API" or "engine"."""
    make_plan: Callable[[int], ChildPlan]
    """The plan for a start, given the write end of its report pipe."""
    inherit: tuple[int, ...]
    proc: subprocess.Popen[bytes] | None = None
    report_r: int = -1
    report_text: bytes = b""
    ready: bool = False
    ever_ready: bool = False
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    failed_line: str | None = field(default=None)


class Supervisor:
    """Runs children until SIGTERM or SIGINT; see the module's docstring."""

    def __init__(self, announce: Callable[[], None]) -> None:
        self._announce = announce
        self._children: list[_Child] = []
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    def add(self, name: str, make_plan: Callable[[int], ChildPlan], inherit: tuple[int, ...] = ()) -> None:
        """A child to run; children stop in the order they were added."""
        self._children.append(_Child(name, make_plan, inherit))

    def run(self) -> int:
        """Start the children, supervise them, and return the exit status."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            for child in self._children:
                self._start(child)
            announced = False
            while not self._stopping:
                self._wait()
                for child in self._children:
                    self._check(child)
                    if child.failed_line is not None and not child.ever_ready:
                        print(child.failed_line, file=sys.stderr, flush=True)  # the reason, shown once
                        self._stop_all()
                        return 2
                if not announced and all(c.ready for c in self._children):
                    announced = True
                    self._announce()
                now = time.monotonic()
                for child in self._children:
                    if child.proc is None and child.restart_at is not None and now >= child.restart_at:
                        self._start(child)
            return self._stop_all()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum != signal.SIGCHLD:
            self._stopping = True

    def _start(self, child: _Child) -> None:
        report_r, report_w = os.pipe()
        plan = child.make_plan(report_w)
        payload = pickle.dumps(sys.path) + pickle.dumps(plan)
        child.restart_at = None
        child.failed_line = None
        child.ready = False
        child.report_text = b""
        child.started_at = time.monotonic()
        try:
            child.proc = subprocess.Popen(
                # the last argument only names the child in ps and top
                [sys.executable, "-c", _CHILD_CODE, f"omnirelay-serve-{plan.role}"],
                stdin=subprocess.PIPE,
                pass_fds=(report_w, *child.inherit),
            )
        finally:
            os.close(report_w)
        assert child.proc.stdin is not None
        try:
            child.proc.stdin.write(payload)
            child.proc.stdin.close()
        except BrokenPipeError:  # it died at once: its exit is seen below
            pass
        child.report_r = report_r
        os.set_blocking(report_r, False)
        self._selector.register(report_r, selectors.EVENT_READ)

    def _wait(self) -> None:
        due = [c.restart_at for c in self._children if c.proc is None and c.restart_at is not None]
        timeout = max(0.0, min(due) - time.monotonic()) if due else 5.0
        for key, _events in self._selector.select(timeout):
            fd = int(key.fd)
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 512):
                        pass
                continue
            for child in self._children:
                if child.report_r == fd:
                    self._read_report(child)

    def _read_report(self, child: _Child) -> None:
        try:
            chunk = os.read(child.report_r, 4096)
        except BlockingIOError:
            return
        if chunk:
            child.report_text += chunk
            if not child.report_text.endswith(b"\n"):
                return
        self._selector.unregister(child.report_r)
        os.close(child.report_r)
        child.report_r = -1
        text = child.report_text.decode("utf-8", "replace").strip()
        if text == "ready":
            child.ready = True
            child.ever_ready = True
            if child.failures:
                log.info("the %s process is running again", child.name)
        elif text.startswith("fail "):
            child.failed_line = text[len("fail ") :]

    def _check(self, child: _Child) -> None:
        """Notice a child that ended, and plan its restart."""
        if child.proc is None or child.proc.poll() is None:
            return
        code = child.proc.returncode
        child.proc = None
        if child.report_r >= 0:
            self._read_report(child)
            if child.report_r >= 0:
                self._selector.unregister(child.report_r)
                os.close(child.report_r)
                child.report_r = -1
        if child.failed_line is None and not child.ready and not child.ever_ready:
            child.failed_line = f"omnirelay: the {child.name} process exited with status {code} before it started"
        if not child.ever_ready:
            return  # the supervisor gives up: it never started
        child.ready = False
        if time.monotonic() - child.started_at >= STEADY_SECONDS:
            child.failures = 0
        delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2**child.failures)
        child.failures += 1
        how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        why = f": {child.failed_line}" if child.failed_line else ""
        log.warning("the %s process ended (%s)%s; starting it again in %.2g s", child.name, how, why, delay)
        child.restart_at = time.monotonic() + delay

    def _stop_all(self) -> int:
        """Stop the children in order, each after the one before has ended; 0 when all stopped cleanly."""
        status = 0
        for child in self._children:
            proc = child.proc
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("the %s process did not stop within %g s: killed", child.name, STOP_SECONDS)
                proc.kill()
                code = proc.wait()
            if code not in (0, -signal.SIGTERM):  # -SIGTERM: stopped before it had set up its stop
                status = 1
            child.proc = None
        return status
