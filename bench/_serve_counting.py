"""Run ``omnirelay serve`` exactly as the console script does, and also publish the writer's commit count.

Used by ``bench/accept.py`` (unless ``--plain``): a daemon thread writes ``Writer.transactions`` of every
writer the process starts to a file five times a second, so the benchmark can report how many group
transactions the load took (and so the mean batch size). Nothing in ``src/`` is changed; the serve code
path is ``omnirelay.cli.main``, the console script's entry point.

With ``BENCH_PAUSE_ENGINE=1`` in the environment (``accept.py --pause-engine``, a diagnostic) the engine's
loop is replaced by one that only sleeps, so the accept path can be measured without the engine sharing
the writer thread and the GIL. That is not how the product runs: figures for the goals come without it.
Likewise ``BENCH_SWITCH_INTERVAL=SECONDS`` (``accept.py --switch-interval``) sets ``sys.setswitchinterval``
to see how much the GIL hand-over between the event loop and the writer thread costs.

Usage: python3 -m bench._serve_counting COUNT_FILE serve --config ... --data-dir ... --port ...
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from omnirelay.cli import main

_writers: list[Any] = []

try:  # the writer's internals may move: then the benchmark simply reports no count
    from omnirelay.store import writer as writer_module

    _original_start = writer_module.Writer.start

    def _start(self: Any) -> None:
        _writers.append(self)
        _original_start(self)

    writer_module.Writer.start = _start  # type: ignore[method-assign]
except (ImportError, AttributeError) as exc:
    print(f"bench: cannot count writer transactions ({exc})", file=sys.stderr)


def _publish(path: str) -> None:
    tmp = path + ".tmp"
    while True:
        total = sum(getattr(w, "transactions", 0) for w in _writers)
        with open(tmp, "w") as f:
            f.write(str(total))
        os.replace(tmp, path)
        time.sleep(0.2)


def _pause_engine() -> None:
    import asyncio

    try:
        from omnirelay.engine.worker import Engine
    except ImportError as exc:
        print(f"bench: cannot pause the engine ({exc})", file=sys.stderr)
        return

    async def idle(_self: object) -> None:
        await asyncio.Event().wait()

    Engine.run = idle  # type: ignore[method-assign,assignment]
    print("bench: engine paused (diagnostic run)", file=sys.stderr)


if __name__ == "__main__":
    count_file = sys.argv[1]
    if os.environ.get("BENCH_PAUSE_ENGINE") == "1":
        _pause_engine()
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
        print(f"bench: sys.setswitchinterval({sys.getswitchinterval()}) (diagnostic run)", file=sys.stderr)
    threading.Thread(target=_publish, args=(count_file,), name="bench-txn-count", daemon=True).start()
    sys.exit(main(sys.argv[2:]))
