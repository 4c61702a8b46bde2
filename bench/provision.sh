#!/usr/bin/env bash
# Provisioning rate through the API, on the default engine (SQLite, synchronous=FULL: each
# answer only after its commit reached the disk): `POST /v1/keys` from many concurrent
# clients (keys/s = requests/s), then `POST /v1/keys/batch` with 1,000 keys per request
# (keys/s = requests/s x 1,000). wrk, release build, 127.0.0.1 only, bounded in time.
#
#   bench/provision.sh                  # 10 s per run
#   DURATION=20s CREATE_CONNECTIONS=64 BATCH_CONNECTIONS=4 bench/provision.sh
#   KEYHAVEN_DATABASE_URL=postgres://… bench/provision.sh   # the same on PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."

CREATE_CONNECTIONS="${CREATE_CONNECTIONS:-64}"
BATCH_CONNECTIONS="${BATCH_CONNECTIONS:-4}"
BATCH_SIZE=1000
source bench/common.sh

KS="$(api /v1/keyspaces '{"name":"Provisioning","prefix":"prov_live"}' | field id)"

post_script "$WORK/create.lua" "{\"keyspace_id\":\"$KS\",\"name\":\"bench\"}"
python3 - "$KS" "$BATCH_SIZE" >"$WORK/batch.json" <<'PY'
import json, sys
ks, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({"keys": [{"keyspace_id": ks, "name": f"bench {i}"} for i in range(n)]}, separators=(",", ":")))
PY
post_script "$WORK/batch.lua" "$(cat "$WORK/batch.json")"

# wrk needs at least one connection per thread.
threads_for() { if [ "$1" -ge 2 ]; then echo 2; else echo 1; fi; }
CONNECTIONS="$CREATE_CONNECTIONS" THREADS="$(threads_for "$CREATE_CONNECTIONS")" \
  run create "$BASE/v1/keys" "$WORK/create.lua"
CONNECTIONS="$BATCH_CONNECTIONS" THREADS="$(threads_for "$BATCH_CONNECTIONS")" \
  run batch "$BASE/v1/keys/batch" "$WORK/batch.lua"

python3 - "$WORK/create.txt" "$WORK/batch.txt" "$CREATE_CONNECTIONS" "$BATCH_CONNECTIONS" "$BATCH_SIZE" "$DURATION" <<'PY'
import re, sys
create_txt, batch_txt, cc, bc, size, duration = sys.argv[1:]

def read(path):
    text = open(path).read()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    to_ms = lambda m: float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return rate, to_ms(p50), to_ms(p99), int(non2xx.group(1)) if non2xx else 0

c_rate, c50, c99, c_bad = read(create_txt)
b_rate, b50, b99, b_bad = read(batch_txt)
size = int(size)
print()
print(f"== summary ({duration} per run, same server, back to back)")
print(f"{'run':<46}{'keys/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
print(f"{'POST /v1/keys, ' + cc + ' clients':<46}{c_rate:>10.0f}{c50:>10.2f}{c99:>10.2f}")
print(f"{'POST /v1/keys/batch (' + str(size) + ' keys), ' + bc + ' clients':<46}{b_rate * size:>10.0f}{b50:>10.2f}{b99:>10.2f}")
print("targets: >= 5,000 creates/s and >= 30,000 keys/s through batches")
if c_bad or b_bad:
    print(f"WARNING: non-2xx answers: {c_bad} creates, {b_bad} batches")
PY
