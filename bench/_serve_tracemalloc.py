"""Run ``omnirelay serve`` (the console script's ``omnirelay.cli.main``) under tracemalloc, for ``bench/memory.py
--tracemalloc``: finds what keeps memory as messages pass through.

A daemon thread watches FOLDER: for each ``NAME.request`` file that appears it writes
``NAME.snapshot`` (``tracemalloc.Snapshot.dump``, 25 frames per allocation), which ``bench/memory.py``
compares. Tracing makes the server several times slower; the figures of such a run are not throughput figures.

Usage: python3 -m bench._serve_tracemalloc FOLDER serve --config ... --data-dir ... --port ...
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
from pathlib import Path

from omnirelay.cli import main


def _watch(folder: Path) -> None:
    done: set[str] = set()
    while True:
        for request in folder.glob("*.request"):
            name = request.stem
            if name in done:
                continue
            done.add(name)
            gc.collect()
            snapshot = tracemalloc.take_snapshot()
            tmp = folder / f"{name}.snapshot.tmp"
            snapshot.dump(str(tmp))
            tmp.rename(folder / f"{name}.snapshot")
        time.sleep(0.2)


if __name__ == "__main__":
    tracemalloc.start(25)
    watched = Path(sys.argv[1])
    threading.Thread(target=_watch, args=(watched,), name="bench-tracemalloc", daemon=True).start()
    sys.exit(main(sys.argv[2:]))
