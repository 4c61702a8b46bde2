#!/usr/bin/env bash
# Verify throughput with two named rate limits on the key, against the same server's
# verify of a key without limits, in one run (single node, in-memory limits). The two
# are measured alternately (plain, limited, plain, limited, ...) so drift on a busy
# machine hits both alike. Bounded in time, 127.0.0.1 only.
#
#   bench/limits.sh                  # 3 rounds of 10 s per key, 50 connections
#   ROUNDS=5 DURATION=20s bench/limits.sh
#
# The limits are far above what the machine can send, so every answer is VALID and the
# figure is the cost of deciding them, not of refusing.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"

source bench/common.sh

KS="$(api /v1/keyspaces '{"name":"Bench","prefix":"bench_live"}' | field id)"
PLAIN="$(api /v1/keys "{\"keyspace_id\":\"$KS\"}" | field key)"
LIMITED="$(api /v1/keys "{\"keyspace_id\":\"$KS\",\"ratelimits\":[
  {\"name\":\"requests\",\"limit\":1000000000,\"duration_ms\":60000},
  {\"name\":\"burst\",\"limit\":1000000000,\"duration_ms\":1000}]}" | field key)"
for key in "$PLAIN" "$LIMITED"; do
  api /v1/keys/verify "{\"key\":\"$key\"}" | grep -q '"code":"VALID"' || { echo "verify is not VALID" >&2; exit 1; }
done
api /v1/keys/verify "{\"key\":\"$LIMITED\"}" | grep -q '"name":"burst"' || { echo "limits not applied" >&2; exit 1; }

post_script "$WORK/plain.lua" "{\"key\":\"$PLAIN\"}"
post_script "$WORK/limited.lua" "{\"key\":\"$LIMITED\"}"
for round in $(seq 1 "$ROUNDS"); do
  run "plain_$round" "$BASE/v1/keys/verify" "$WORK/plain.lua"
  run "limited_$round" "$BASE/v1/keys/verify" "$WORK/limited.lua"
done

VALID_COUNT="$(curl -s "$BASE/metrics" | awk '/^keyhaven_verifications_total\{code="VALID"\}/ {print $2}')"
OTHER_COUNT="$(curl -s "$BASE/metrics" | awk '/^keyhaven_verifications_total\{/ && !/VALID"/ {s += $2} END {print s + 0}')"

python3 - "$WORK" "$ROUNDS" "${VALID_COUNT:-0}" "$OTHER_COUNT" <<'PY'
import re, sys
work, rounds, valid, other = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def rps(name):
    text = open(f"{work}/{name}.txt").read()
    if re.search(r"Socket errors|Non-2xx", text):
        sys.exit(f"error in {name}:\n{text}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
plain = [rps(f"plain_{r}") for r in range(1, rounds + 1)]
limited = [rps(f"limited_{r}") for r in range(1, rounds + 1)]
print("\n== summary: POST /v1/keys/verify, same server, alternating")
print(f"{'round':<8}{'no limits req/s':>18}{'two limits req/s':>18}{'ratio':>8}")
for r, (p, l) in enumerate(zip(plain, limited), 1):
    print(f"{r:<8}{p:>18.0f}{l:>18.0f}{100 * l / p:>7.1f}%")
mp, ml = sum(plain) / rounds, sum(limited) / rounds
print(f"{'mean':<8}{mp:>18.0f}{ml:>18.0f}{100 * ml / mp:>7.1f}%  (target >= 90%)")
print(f"answers other than VALID: {other:.0f} (must be 0); VALID: {valid:.0f}")
if other:
    sys.exit(1)
PY
