#!/usr/bin/env bash
# Runs a command against a real, fresh `keyhaven serve`, as the client packages' suites
# need it:
#
#   scripts/with-server.sh CMD [ARGS...]
#
# Starts $KEYHAVEN_BIN (default target/debug/keyhaven, built if missing) on a free
# 127.0.0.1 port with a fresh data directory, waits for /healthz, then runs CMD with
#   KEYHAVEN_URL          the server's base URL (http://127.0.0.1:PORT)
#   KEYHAVEN_ROOT_KEY     its first root key (every scope)
#   KEYHAVEN_DATA_DIR     its data directory (the pepper file is in it)
# in the environment, stops the server (and removes the directory) when CMD ends, and
# exits with CMD's status. Extra `serve` arguments: $KEYHAVEN_SERVE_ARGS (split on
# spaces). The server's log is printed if it does not start.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

bin="${KEYHAVEN_BIN:-$root/target/debug/keyhaven}"
if [ -z "${KEYHAVEN_BIN:-}" ] && [ ! -x "$bin" ]; then
  (cd "$root" && cargo build -q -p keyhaven)
fi
[ -x "$bin" ] || { echo "with-server: no keyhaven binary at $bin" >&2; exit 2; }

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
# shellcheck disable=SC2086
KEYHAVEN_LOG="${KEYHAVEN_LOG:-warn}" "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" \
  ${KEYHAVEN_SERVE_ARGS:-} >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 200); do
  curl -sf "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if ! curl -sf "$url/healthz" >/dev/null 2>&1; then
  cat "$work/stderr" >&2
  echo "with-server: keyhaven serve did not start" >&2
  exit 1
fi
# stdout is not a terminal, so the first root key is written to the data directory.
root_key="$(cat "$work/data/initial-root-key" 2>/dev/null || true)"
[ -n "$root_key" ] || { echo "with-server: no first root key in the data directory" >&2; exit 1; }

set +e
KEYHAVEN_URL="$url" KEYHAVEN_ROOT_KEY="$root_key" KEYHAVEN_DATA_DIR="$work/data" "$@"
rc=$?
set -e
exit "$rc"
