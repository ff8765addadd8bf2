#!/usr/bin/env python3
"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) recorded with ``--threads``.

For each thread: how many samples it has, and where they went:

* ``own code``: each sample is charged to its deepest frame in ``omnirelay/`` (so time spent in
  libraries or C calls that our function made — sqlite3, msgspec, hashlib — counts for that function);
  samples with no omnirelay frame are charged to their deepest library frame, prefixed ``[lib]``;
* ``self``: the leaf Python frame (C code is charged to the Python frame that called it);
* ``inclusive``: every function on the stack.

Percentages are of the thread's samples; ``--combined`` also ranks all threads together (% of all samples).

    python3 -m bench.pyspy_top /tmp/profile.txt --top 25
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+):(?P<line>\d+)\)$")
OURS = "omnirelay/"


def name(frame: str, with_line: bool = False) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m["file"]
    for marker in (OURS, "site-packages/", "lib/python3.11/"):
        if marker in file:
            file = (marker if marker == OURS else "") + file.split(marker, 1)[1]
    return f"{file}:{m['func']}" + (f":{m['line']}" if with_line else "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=20)
    p.add_argument(
        "--combined",
        action="store_true",
        help="also rank all threads together (with --gil profiles: share of the GIL-held time)",
    )
    p.add_argument("--lines", action="store_true", help="keep line numbers (finer: which statement)")
    args = p.parse_args()

    threads: Counter[str] = Counter()
    own: dict[str, Counter[str]] = defaultdict(Counter)
    leaf: dict[str, Counter[str]] = defaultdict(Counter)
    incl: dict[str, Counter[str]] = defaultdict(Counter)
    for raw in args.profile.read_text().splitlines():
        stack, _, count_s = raw.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        frames = stack.split(";")
        thread = frames[0]
        if thread.startswith("thread ("):
            thread = thread.split(": ", 1)[-1]
            frames = frames[1:]
        threads[thread] += count
        if not frames:
            leaf[thread]["(no Python frame)"] += count
            own[thread]["(no Python frame)"] += count
            continue
        names = [name(f, args.lines) for f in frames]
        leaf[thread][names[-1]] += count
        for n in set(names):
            incl[thread][n] += count
        ours = [
            n for n in names if n.startswith(OURS) and "_serve_counting" not in n and not n.startswith(OURS + "cli.py")
        ]
        own[thread][ours[-1] if ours else "[lib] " + names[-1]] += count

    total = sum(threads.values())
    print(f"{total} samples")
    for thread, n in threads.most_common():
        print(f"\n=== thread {thread}: {n} samples ({100 * n / total:.1f}% of all)")
        for title, table in (
            ("own code (deepest omnirelay frame)", own),
            ("self (leaf frame)", leaf),
            ("inclusive", incl),
        ):
            print(f"  -- {title}")
            for fn, c in table[thread].most_common(args.top):
                print(f"  {100 * c / n:5.1f}%  {fn}")
    if args.combined:
        merged: Counter[str] = Counter()
        for thread, table in own.items():
            for fn, c in table.items():
                merged[f"{fn}   [{thread}]"] += c
        print(f"\n=== all threads together, own code (deepest omnirelay frame), % of all {total} samples")
        for fn, c in merged.most_common(args.top):
            print(f"  {100 * c / total:5.1f}%  {fn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
