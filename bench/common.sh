#!/usr/bin/env bash
# Shared by the load scripts: installs wrk if needed, builds the release binary, starts
# `keyhaven serve` on a free 127.0.0.1 port with a fresh data dir (stopped on exit), and
# defines `api PATH JSON` (POST with the printed root key), `run NAME URL [SCRIPT]`
# (a warm-up, then a timed wrk run saved to $WORK/NAME.txt) and `start_server` (starts
# the server again after a stop).
# Reads DURATION, CONNECTIONS, THREADS, WARMUP (defaults below) and SERVE_ARGS (an array
# of extra `keyhaven serve` arguments, if set); sets BASE, ROOT_KEY, WORK.

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-2s}"

if ! command -v wrk >/dev/null; then
  echo "wrk not found; installing Debian's package" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  fi
  command -v wrk >/dev/null || { echo "error: wrk is required (apt-get install wrk)" >&2; exit 1; }
fi

# KEYHAVEN_BIN runs another build (e.g. an older commit's, for an old/new comparison).
if [[ -n "${KEYHAVEN_BIN:-}" ]]; then
    BIN="$KEYHAVEN_BIN"
else
    cargo build --release -q -p keyhaven
    BIN=target/release/keyhaven
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
# Starts the server on $WORK/data (again, after a stop) and waits up to 30 s for it.
start_server() {
  KEYHAVEN_LOG="${KEYHAVEN_LOG:-warn}" "$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
    ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} >>"$WORK/stdout" 2>>"$WORK/stderr" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    curl -sf "$BASE/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "$BASE/healthz" >/dev/null || { cat "$WORK/stderr" >&2; echo "server did not start" >&2; exit 1; }
}
start_server
# stdout is not a terminal, so the first root key is in the data directory.
ROOT_KEY="$(cat "$WORK/data/initial-root-key" 2>/dev/null || true)"
[ -n "$ROOT_KEY" ] || { echo "no first root key in $WORK/data/initial-root-key" >&2; exit 1; }

api() { curl -sf "$BASE$1" -H "Authorization: Bearer $ROOT_KEY" -H 'Content-Type: application/json' -d "$2"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

# A wrk script that POSTs $2 as JSON with the root key, written to $1.
post_script() {
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $ROOT_KEY"
LUA
}

run() { # name url [script]
  local name=$1 url=$2 script=${3:-}
  local args=(-t "$THREADS" -c "$CONNECTIONS" --latency --timeout 5s)
  [ -n "$script" ] && args+=(-s "$script")
  timeout 120 wrk "${args[@]}" -d "$WARMUP" "$url" >/dev/null
  timeout 300 wrk "${args[@]}" -d "$DURATION" "$url" >"$WORK/$name.txt"
  echo "== wrk $name"
  cat "$WORK/$name.txt"
}

