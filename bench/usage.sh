#!/usr/bin/env bash
# Verify throughput with a warm cache, usage tracking and anomaly judging on (the default,
# flushing every second so flushes and the judge run several times per round) against
# the same build with usage tracking off. Two SQLite nodes, same script, same run, rounds
# alternating between them (first node swapped each round). /healthz of both in the same
# run as the yardstick. Target: on at >= 95% of off. Bounded in time, 127.0.0.1 only.
#
#   bench/usage.sh                            # 5 rounds of 8 s each per node
#   ROUNDS=3 DURATION=10s bench/usage.sh
#
# wrk cycles through KEYS keys (100 by default), so the usage recorder counts many keys.
# Every round checks, from each node's /metrics, that every verification it answered was
# VALID and that it answered at least what wrk counted. wrk shares the 2 cores with the
# servers: compare the ratio, not the absolute figures.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-8s}"
ROUNDS="${ROUNDS:-5}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
KEYS="${KEYS:-100}"
command -v wrk >/dev/null || { echo "error: wrk is required (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p keyhaven
BIN=target/release/keyhaven
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; } || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME VAR=VALUE...: a SQLite node with its own data dir and the given settings,
# KEYS keys in one keyspace, each verified VALID once, and a wrk script cycling through
# them; sets BASE_<NAME>, ROOT_<NAME>, KS_<NAME>.
start() {
  local name=$1 port base root
  shift
  port="$(free_port)"
  base="http://127.0.0.1:$port"
  env "$@" KEYHAVEN_LOG=warn "$BIN" serve --data-dir "$WORK/$name" \
    --listen "127.0.0.1:$port" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf -m 2 "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  root="$(cat "$WORK/$name/initial-root-key" 2>/dev/null || true)"
  [ -n "$root" ] || { cat "$WORK/$name.err" >&2; echo "$name did not start" >&2; exit 1; }
  local api=(-sf -m 10 -H "Authorization: Bearer $root" -H 'Content-Type: application/json')
  local ks key id i
  ks="$(curl "${api[@]}" "$base/v1/keyspaces" -d '{"name":"Bench","prefix":"bench_live"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  : >"$WORK/$name.keys"; : >"$WORK/$name.ids"
  for i in $(seq 1 "$KEYS"); do
    read -r key id < <(curl "${api[@]}" "$base/v1/keys" -d "{\"keyspace_id\":\"$ks\",\"name\":\"bench $i\"}" |
      python3 -c 'import json,sys; k = json.load(sys.stdin); print(k["key"], k["key_id"])')
    echo "$id" >>"$WORK/$name.ids"
    curl "${api[@]}" "$base/v1/keys/verify" -d "{\"key\":\"$key\"}" | grep -q '"code":"VALID"' || { echo "$name: verify is not VALID" >&2; exit 1; }
    echo "$key" >>"$WORK/$name.keys"
  done
  {
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    echo "wrk.headers[\"Authorization\"] = \"Bearer $root\""
    echo 'local keys = {'
    sed 's/.*/  "&",/' "$WORK/$name.keys"
    echo '}'
    cat <<'LUA'
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
local requests, i = {}, 0
function init(args)
  for n, key in ipairs(keys) do requests[n] = wrk.format(nil, nil, nil, '{"key":"' .. key .. '"}') end
  i = ((tid or 0) * 37) % #requests -- threads start at different keys
end
function request()
  i = i % #requests + 1
  return requests[i]
end
LUA
  } >"$WORK/$name.lua"
  printf -v "BASE_$name" '%s' "$base"
  printf -v "ROOT_$name" '%s' "$root"
  printf -v "KS_$name" '%s' "$ks"
}

# counts NAME: "VALID OTHER" verifications the node has answered so far.
counts() {
  local base_var="BASE_$1"
  curl -sf -m 10 "${!base_var}/metrics" | awk '
    /^keyhaven_verifications_total\{/ { if ($1 ~ /code="VALID"/) v += $2; else o += $2 }
    END { printf "%d %d\n", v, o }'
}

start on KEYHAVEN_USAGE_TRACKING=true KEYHAVEN_USAGE_FLUSH_INTERVAL_MS=1000
start off KEYHAVEN_USAGE_TRACKING=false

# rate NAME ROUND: one timed verify run; prints req/s after checking the answers.
rate() {
  local name=$1 base_var="BASE_$1" out="$WORK/$1-$2.txt" before after sent
  before="$(counts "$name")"
  timeout 300 wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency -s "$WORK/$name.lua" \
    "${!base_var}/v1/keys/verify" >"$out"
  after="$(counts "$name")"
  grep -Eq 'Non-2xx|Socket errors' "$out" && { cat "$out" >&2; echo "$name: errors" >&2; exit 1; }
  sent="$(awk '/requests in/ {print $1}' "$out")"
  set -- $before $after
  [ "$4" -eq "$2" ] || { echo "$name round: $(($4 - $2)) answers other than VALID" >&2; exit 1; }
  [ $(($3 - $1)) -ge "$sent" ] || { echo "$name round: $(($3 - $1)) VALID < $sent sent" >&2; exit 1; }
  awk '/Requests\/sec/ {print $2}' "$out"
}
for name in on off; do # warm-up (and the caches: every key is read in the first pass)
  base_var="BASE_$name"
  timeout 60 wrk -t "$THREADS" -c "$CONNECTIONS" -d 2s -s "$WORK/$name.lua" "${!base_var}/v1/keys/verify" >/dev/null
done
results=()
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then a="$(rate on "$round")"; b="$(rate off "$round")"
  else b="$(rate off "$round")"; a="$(rate on "$round")"; fi
  printf 'round %d: on %8.0f req/s   off %8.0f req/s   on/off %5.1f%%\n' "$round" "$a" "$b" "$(echo "100 * $a / $b" | bc -l)"
  results+=("$a $b")
done

# Yardstick: /healthz of both nodes, same run, same wrk settings.
healthz=()
for name in on off; do
  base_var="BASE_$name"
  timeout 300 wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" "${!base_var}/healthz" >"$WORK/$name-healthz.txt"
  grep -Eq 'Non-2xx|Socket errors' "$WORK/$name-healthz.txt" && { cat "$WORK/$name-healthz.txt" >&2; echo "$name healthz: errors" >&2; exit 1; }
  healthz+=("$(awk '/Requests\/sec/ {print $2}' "$WORK/$name-healthz.txt")")
done

# The on node recorded every verification (flushed by now: the healthz runs took longer
# than a flush interval); the off node recorded none.
usage_total() {
  local base_var="BASE_$1" root_var="ROOT_$1" ks_var="KS_$1"
  curl -sf -m 10 -H "Authorization: Bearer ${!root_var}" "${!base_var}/v1/keyspaces/${!ks_var}/usage?granularity=minute" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}
# How many of the keys (the first 100: the totals API's limit) the on node counted.
keys_used() {
  local base_var="BASE_$1" root_var="ROOT_$1" ids
  ids="$(head -100 "$WORK/$1.ids" | paste -sd,)"
  curl -sf -m 10 -H "Authorization: Bearer ${!root_var}" "${!base_var}/v1/keys/usage?key_ids=$ids" |
    python3 -c 'import json,sys; d = json.load(sys.stdin)["data"]; t = [k["total"] for k in d]
print(f"{sum(1 for x in t if x)} of {len(t)} keys have usage, {min(t)} to {max(t)} each")'
}
read -r on_valid _ <<<"$(counts on)"
read -r off_valid _ <<<"$(counts off)"
on_usage="$(usage_total on)"
off_usage="$(usage_total off)"
on_warn="$(grep -c . "$WORK/on.err" || true)"
off_warn="$(grep -c . "$WORK/off.err" || true)"

printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
hz_on, hz_off = map(float, sys.argv[1:3])
pairs = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
a = sum(p[0] for p in pairs) / len(pairs); b = sum(p[1] for p in pairs) / len(pairs)
print(f"total: on {a:.0f} req/s, off {b:.0f} req/s: on at {100*a/b:.1f}% of off (target >= 95%)")
print(f"median of per-round ratios: {statistics.median(100*x/y for x, y in pairs):.1f}%")
print(f"healthz (same run): on {hz_on:.0f} req/s, off {hz_off:.0f} req/s; verify/healthz: on {100*a/hz_on:.1f}%, off {100*b/hz_off:.1f}%")
' "${healthz[@]}"
echo "usage recorded: on $on_usage of $on_valid VALID answers ($(keys_used on)), off $off_usage of $off_valid"
echo "server log lines at warn or above: on $on_warn, off $off_warn"
[ "$on_usage" -gt 0 ] && [ "$off_usage" -eq 0 ] || { echo "error: usage tracking is not as configured" >&2; exit 1; }
