#!/usr/bin/env bash
# Import benchmark: 1,000,000 keys of mixed formats (prefixed SHA-256, dotted SHA-512,
# plain SHA-256) with `keyhaven import`, then the same file again (must change nothing),
# then a file with 1% corrupt lines. Prints keys/s. Local files only.
#
#   bench/import.sh            # N=1000000
#   N=200000 bench/import.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000000}"

cargo build --release -q -p keyhaven
BIN="$PWD/target/release/keyhaven"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && { kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

# A keyspace to import into, created through the API.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
KEYHAVEN_LOG=warn "$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
ROOT_KEY="$(cat "$WORK/data/initial-root-key")"
KS="$(curl -sf "http://127.0.0.1:$PORT/v1/keyspaces" -H "Authorization: Bearer $ROOT_KEY" \
  -H 'Content-Type: application/json' -d '{"name":"Legacy","prefix":"legacy"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

python3 - "$KS" "$N" "$WORK" <<'PY'
import hashlib, json, sys
ks, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def line(i):
    f = i % 3
    if f == 0:
        short, long = f"S{i:09d}", f"L{i:020d}q"
        return {"keyspace_id": ks, "format": "prefixed_sha256", "prefix": "legacy",
                "short_token": short, "hash": hashlib.sha256(long.encode()).hexdigest()}
    if f == 1:
        key = f"pk{i}.secret-{i}-value"
        return {"keyspace_id": ks, "format": "dotted_sha512", "prefix": f"pk{i}",
                "hash": "sha512$$" + hashlib.sha512(key.encode()).hexdigest()}
    key = f"tok-{i}-0123456789abcdef"
    return {"keyspace_id": ks, "format": "sha256", "hash": hashlib.sha256(key.encode()).hexdigest()}
with open(f"{work}/keys.jsonl", "w") as good, open(f"{work}/corrupt.jsonl", "w") as bad:
    for i in range(n):
        text = json.dumps(line(i), separators=(",", ":"))
        good.write(text + "\n")
        # Same keys with 1% of lines broken (different key material so it imports anew).
        j = i + n
        if i % 100 == 99:
            bad.write('{"keyspace_id": "' + ks + '", "format": "sha256", "hash": "zz"}\n' if i % 200 == 99 else "{not json\n")
        else:
            bad.write(json.dumps(line(j), separators=(",", ":")) + "\n")
PY

run() { # label file
  local start end status
  start=$(date +%s.%N)
  set +e
  "$BIN" import "$2" --data-dir "$WORK/data" --report "$WORK/report-$1.txt" >"$WORK/out-$1.txt"
  status=$?
  set -e
  end=$(date +%s.%N)
  echo "== $1: $(cat "$WORK/out-$1.txt") [exit $status, wall $(python3 -c "print(f'{$end-$start:.2f}')") s]"
  [ -s "$WORK/report-$1.txt" ] && echo "   report: $(wc -l <"$WORK/report-$1.txt") lines, first: $(head -1 "$WORK/report-$1.txt")"
  return 0
}
echo "file: $N lines, $(du -h "$WORK/keys.jsonl" | cut -f1)"
run first "$WORK/keys.jsonl"
run again "$WORK/keys.jsonl"
run corrupt "$WORK/corrupt.jsonl"
echo "database: $(du -h "$WORK/data/keyhaven.db" | cut -f1)"
