#!/usr/bin/env bash
# The runs behind BENCHMARKS.md ("Accept path"): each ~20 s, results as JSON in ${OUT:-/tmp/omnirelay-bench-results}.
# Every run first waits (up to 2 minutes) for the machine to be idle, since other work skews the figures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/omnirelay-bench-results}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
mkdir -p "$OUT"
run() {
  local name=$1; shift
  echo "=== $name: python3 -m bench.accept --seconds $SECONDS_PER_RUN $*"
  python3 -m bench.accept --wait-quiet 120 --seconds "$SECONDS_PER_RUN" --json "$OUT/$name.json" "$@" \
    > "$OUT/$name.log" 2>&1
  local rc=$?
  if grep -q '^destinations/request' "$OUT/$name.log"; then
    sed -n '/^destinations\/request/,$p' "$OUT/$name.log"
  else
    tail -5 "$OUT/$name.log"
  fi
  [ "$rc" -eq 0 ] || echo "exit status $rc (1: durability mismatch; see $OUT/$name.log)"
}
run d1-full      --destinations 1
run d1-normal    --destinations 1 --synchronous NORMAL
run d1000-full   --destinations 1000
run d1000-normal --destinations 1000 --synchronous NORMAL
run d1000-full-c8 --destinations 1000 --connections 8
run d1-full-paused    --destinations 1 --pause-engine
run d1000-full-paused --destinations 1000 --pause-engine
