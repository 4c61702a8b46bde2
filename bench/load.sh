#!/usr/bin/env bash
# Load benchmark for the verify API, with /healthz from the same server in the same run
# as the yardstick. Bounded in time, 127.0.0.1 only.
#
#   bench/load.sh                    # 10 s per endpoint, 50 connections, 2 wrk threads
#   DURATION=30s CONNECTIONS=50 THREADS=2 bench/load.sh
#
# On a 2-core machine wrk shares the cores with the server, so absolute figures are
# bound by scheduling: read the ratio verify/healthz, measured back to back.
set -euo pipefail
cd "$(dirname "$0")/.."


source bench/common.sh

KS="$(api /v1/keyspaces '{"name":"Bench","prefix":"bench_live"}' | field id)"
KEY="$(api /v1/keys "{\"keyspace_id\":\"$KS\"}" | field key)"
api /v1/keys/verify "{\"key\":\"$KEY\"}" | grep -q '"code":"VALID"' || { echo "verify is not VALID" >&2; exit 1; }

post_script "$WORK/verify.lua" "{\"key\":\"$KEY\"}"
run healthz "$BASE/healthz"
run verify "$BASE/v1/keys/verify" "$WORK/verify.lua"
# Control: the verify request's exact bytes sent to /healthz, which answers 405 without
# reading the body. Shows what the request's size and shape alone cost the generator
# and the HTTP stack on this machine.
run post_control "$BASE/healthz" "$WORK/verify.lua"

# The server answered VALID throughout (not just fast errors).
VALID_COUNT="$(curl -s "$BASE/metrics" | awk '/^keyhaven_verifications_total\{code="VALID"\}/ {print $2}')"

python3 - "$WORK/healthz.txt" "$WORK/verify.txt" "${VALID_COUNT:-0}" "$CONNECTIONS" "$DURATION" "$WORK/post_control.txt" <<'PY'
import re, sys

def ms(value):
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n

def parse(path):
    text = open(path).read()
    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "99"):
        out["p" + pct] = ms(re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M).group(1))
    out["errors"] = re.findall(r"(Socket errors:.*|Non-2xx or 3xx responses:.*)", text)
    out["requests"] = int(re.search(r"(\d+) requests in", text).group(1))
    return out

h, v, c = parse(sys.argv[1]), parse(sys.argv[2]), parse(sys.argv[6])
valid, conns, duration = int(float(sys.argv[3])), sys.argv[4], sys.argv[5]
print(f"\n== summary ({conns} connections, {duration} each, same server, back to back)")
print(f"{'endpoint':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
for name, r in (("GET /healthz", h), ("POST /v1/keys/verify", v)):
    print(f"{name:<22}{r['rps']:>10.0f}{r['p50']:>10.3f}{r['p99']:>10.3f}")
print(f"{'control: same POST to /healthz (405, body unread)':<22}\n{'':<22}{c['rps']:>10.0f}{c['p50']:>10.3f}{c['p99']:>10.3f}")
print(f"verify / healthz rate: {100 * v['rps'] / h['rps']:.1f}%  (target >= 70%)")
print(f"verify / control rate: {100 * v['rps'] / c['rps']:.1f}%  (share left after the request's own size and shape)")
print(f"verify p99: {v['p99']:.3f} ms  (target <= 2 ms; healthz p99 {h['p99']:.3f} ms in the same run)")
print(f"VALID answers counted by the server: {valid} (wrk sent {v['requests']} in the timed run, plus warm-up)")
bad = h["errors"] + v["errors"]
if bad:
    print("errors:", *bad, sep="\n  ")
    sys.exit(1)
if valid < v["requests"]:
    print("error: fewer VALID answers than verify requests")
    sys.exit(1)
PY
