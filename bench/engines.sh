#!/usr/bin/env bash
# Verify throughput with a warm cache: a SQLite-backed node against a PostgreSQL-backed
# node, same build, same script, same run, rounds alternating between the two.
# Target: PostgreSQL within 10% of SQLite. Bounded in time, 127.0.0.1 only.
#
#   bench/engines.sh                          # 3 rounds of 8 s each per engine
#   ROUNDS=5 DURATION=10s bench/engines.sh
#
# Uses KEYHAVEN_TEST_POSTGRES_URL (an admin URL) if set, else starts a throwaway cluster
# with scripts/test-postgres.sh. wrk shares the 2 cores with the server: compare the
# ratio, not the absolute figures.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-8s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
command -v wrk >/dev/null || { echo "error: wrk is required (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p keyhaven
BIN=target/release/keyhaven
WORK="$(mktemp -d)"
PIDS=()
PG_DIR=""
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; } || true; done
  [ -n "$PG_DIR" ] && scripts/test-postgres.sh stop "$PG_DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ADMIN_URL="${KEYHAVEN_TEST_POSTGRES_URL:-}"
if [ -z "$ADMIN_URL" ]; then
  PG_DIR="$(mktemp -d)"
  ADMIN_URL="$(scripts/test-postgres.sh start "$PG_DIR")"
fi
DB="kh_bench_$$"
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
PG_URL="${ADMIN_URL%/*}/$DB"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME [KEYHAVEN_DATABASE_URL]: a node with its own data dir; sets URL_<NAME>, KEY_<NAME>.
start() {
  local name=$1 db=${2:-} port
  port="$(free_port)"
  env ${db:+KEYHAVEN_DATABASE_URL=$db} KEYHAVEN_LOG=warn "$BIN" serve --data-dir "$WORK/$name" \
    --listen "127.0.0.1:$port" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  local base="http://127.0.0.1:$port" root
  root="$(cat "$WORK/$name/initial-root-key" 2>/dev/null || true)"
  [ -n "$root" ] || { cat "$WORK/$name.err" >&2; echo "$name did not start" >&2; exit 1; }
  local api=(-sf -H "Authorization: Bearer $root" -H 'Content-Type: application/json')
  local ks key
  ks="$(curl "${api[@]}" "$base/v1/keyspaces" -d '{"name":"Bench","prefix":"bench_live"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  key="$(curl "${api[@]}" "$base/v1/keys" -d "{\"keyspace_id\":\"$ks\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
  curl "${api[@]}" "$base/v1/keys/verify" -d "{\"key\":\"$key\"}" | grep -q '"code":"VALID"' || { echo "$name: verify is not VALID" >&2; exit 1; }
  cat >"$WORK/$name.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"key":"$key"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $root"
LUA
  eval "URL_$name=$base/v1/keys/verify"
}

start sqlite
start postgres "$PG_URL"

rate() { # name round
  local name=$1 url_var="URL_$1"
  timeout 300 wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency -s "$WORK/$name.lua" "${!url_var}" >"$WORK/$name-$2.txt"
  grep -q 'Non-2xx' "$WORK/$name-$2.txt" && { cat "$WORK/$name-$2.txt"; echo "$name: errors" >&2; exit 1; }
  awk '/Requests\/sec/ {print $2}' "$WORK/$name-$2.txt"
}
for name in sqlite postgres; do # warm-up (and the cache)
  timeout 60 wrk -t "$THREADS" -c "$CONNECTIONS" -d 2s -s "$WORK/$name.lua" "$(eval echo \$URL_$name)" >/dev/null
done
results=()
for round in $(seq 1 "$ROUNDS"); do
  s="$(rate sqlite "$round")"; p="$(rate postgres "$round")"
  printf 'round %d: sqlite %8.0f req/s   postgres %8.0f req/s   postgres/sqlite %5.1f%%\n' "$round" "$s" "$p" "$(echo "100 * $p / $s" | bc -l)"
  results+=("$s $p")
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
pairs = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
s = sum(p[0] for p in pairs); p = sum(p[1] for p in pairs)
print(f"total: sqlite {s/len(pairs):.0f} req/s, postgres {p/len(pairs):.0f} req/s: postgres at {100*p/s:.1f}% of sqlite (target >= 90%)")
print(f"median of per-round ratios: {statistics.median(100*b/a for a, b in pairs):.1f}%")
'
