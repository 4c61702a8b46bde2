#!/usr/bin/env bash
# A statistical timing test of the verify path (dudect-style Welch t-test), in process:
# `keyhaven_service::verify::verify` on a temp SQLite store, and core's parse + MAC +
# constant-time compare. Compares a known key id with the first vs the last secret
# character wrong, a stored MAC differing in its first vs last byte, and a known id with
# a wrong secret vs an unknown id (warm and cold cache), with an A/A control per level.
# Prints per comparison the class means (ns), sample counts, |t| and a verdict (|t| < 4.5:
# no evidence of a leak at this sample size; > 10: a difference). The method and what
# each figure means are in the header of crates/server/benches/verify_timing.rs.
#
#   bench/timing.sh                      # about 60 s of measurement, after the build
#   DURATION=20s bench/timing.sh         # shorter (seconds, split among the comparisons)
#   SAMPLES=2000000 bench/timing.sh      # also stop each comparison at 2,000,000 samples
#
# The same as `cargo bench -p keyhaven-server --bench verify_timing`, but built first and
# then run under a time limit, so a rebuild never counts against it. Runs under `nice`
# (NICE, default 10) so as not to starve other work on the machine: the classes are
# interleaved at random, so other load slows both alike, and the crops drop preempted
# measurements. Exits non-zero if the bench fails (e.g. an answer other than NOT_FOUND).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-60s}"
SAMPLES="${SAMPLES:-}"
NICE="${NICE:-10}"
seconds="${DURATION%s}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "error: DURATION must be whole seconds (60 or 60s)" >&2; exit 1; }
[[ -z "$SAMPLES" || "$SAMPLES" =~ ^[0-9]+$ ]] || { echo "error: SAMPLES must be a number" >&2; exit 1; }

BIN="$(nice -n "$NICE" cargo bench -q -p keyhaven-server --bench verify_timing --no-run \
  --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "verify_timing" and m.get("executable"):
        print(m["executable"])')"
[ -x "$BIN" ] || { echo "error: the verify_timing bench did not build" >&2; exit 1; }

export VERIFY_TIMING_SECONDS="$seconds"
if [[ -n "$SAMPLES" ]]; then export VERIFY_TIMING_SAMPLES="$SAMPLES"; fi
# The measurement stops itself after DURATION; setup and warm-up take a few seconds.
timeout "$((seconds * 2 + 60))" nice -n "$NICE" "$BIN" --bench
