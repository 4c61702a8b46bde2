#!/usr/bin/env bash
# Verify and memory at scale: a database of N keys (default 1,000,000) built through
# `POST /v1/keys/batch`, then, on the release build, 127.0.0.1 only, bounded in time:
#
#   1. RSS of the server restarted on the full database (nothing cached);
#   2. cold cache: wrk verifying random keys of the N, right after that restart;
#   3. every key verified once (the cache holds all N), and the RSS then;
#   4. warm: random keys of the N, then one key, then GET /healthz, back to back;
#   5. a sustained random-verify load for SUSTAIN seconds, RSS sampled every 30 s
#      (flat: no growth between the 2nd minute and the end).
#
# Prints one table. Read rates as ratios within the run: wrk shares the two cores.
#
#   bench/scale.sh                        # N=1000000, DURATION=10s, SUSTAIN=300
#   N=100000 SUSTAIN=60 bench/scale.sh    # a quick run
#   KEYHAVEN_DATABASE_URL=postgres://… bench/scale.sh   # the same on PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-1000000}"
SUSTAIN="${SUSTAIN:-300}"
source bench/common.sh

rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status"; }
# What the RSS is made of: anonymous memory (the heap), and how much of it the allocator
# has freed lazily (MADV_FREE: counted in RSS until the kernel needs the pages).
rss_parts() {
  awk '/^(Rss|Anonymous|LazyFree|Shared_Clean|Private_Clean):/ { printf "%s %.0f MB  ", $1, $2 / 1024 }' \
    "/proc/$SERVER_PID/smaps_rollup"
}
restart() {
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  start_server
}

KS="$(api /v1/keyspaces '{"name":"Scale","prefix":"scale_live"}' | field id)"
RSS_EMPTY="$(rss_mb)"

# 1,000 keys per batch from 4 clients; the plaintext keys go to $WORK/keys.txt only.
echo "creating $N keys through POST /v1/keys/batch"
START=$SECONDS
python3 - "$BASE" "$ROOT_KEY" "$KS" "$N" "$WORK/keys.txt" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, root, ks, n, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
body = json.dumps({"keys": [{"keyspace_id": ks}] * 1000}).encode()
def batch(size):
    data = body if size == 1000 else json.dumps({"keys": [{"keyspace_id": ks}] * size}).encode()
    req = urllib.request.Request(base + "/v1/keys/batch", data=data, headers={
        "Authorization": "Bearer " + root, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return [k["key"] for k in json.load(r)["keys"]]
sizes = [1000] * (n // 1000) + ([n % 1000] if n % 1000 else [])
with open(out, "w") as f, ThreadPoolExecutor(4) as pool:
    for keys in pool.map(batch, sizes):
        f.write("\n".join(keys) + "\n")
PY
CREATE_SECONDS=$((SECONDS - START))
[ "$(wc -l <"$WORK/keys.txt")" = "$N" ] || { echo "expected $N keys" >&2; exit 1; }

# A wrk script verifying keys from keys.txt: random ones, or each in turn (THREAD_SHARE
# of the file per thread), with the root key.
verify_script() { # file mode
  cat >"$1" <<LUA
local keys, n = {}, 0
for line in io.lines("$WORK/keys.txt") do n = n + 1; keys[n] = line end
local mode, counter, threads = "$2", 0, {}
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer $ROOT_KEY" }
function setup(thread) table.insert(threads, thread); thread:set("id", #threads - 1) end
function init() math.randomseed(os.time() + (id or 0) * 7919); counter = (id or 0) end
function request()
  local i
  if mode == "random" then i = math.random(n) else i = counter % n + 1; counter = counter + 2 end
  return wrk.format("POST", "/v1/keys/verify", headers, '{"key":"' .. keys[i] .. '"}')
end
LUA
}
verify_script "$WORK/random.lua" random
verify_script "$WORK/each.lua" each
post_script "$WORK/one.lua" "{\"key\":\"$(head -n 1 "$WORK/keys.txt")\"}"

timed() { # name script|url: one timed wrk run, no warm-up, saved to $WORK/name.txt
  local name=$1 target=$2 url=$BASE/v1/keys/verify
  local args=(-t "$THREADS" -c "$CONNECTIONS" --latency --timeout 5s -d "$DURATION")
  if [[ "$target" == http* ]]; then url=$target; else args+=(-s "$target"); fi
  timeout 600 wrk "${args[@]}" "$url" >"$WORK/$name.txt"
}

restart
RSS_RESTART="$(rss_mb)"
echo "cold: random keys right after a restart"
timed cold "$WORK/random.lua"
RSS_COLD="$(rss_mb)"

echo "filling the cache: each of the $N keys verified once"
valid_count() {
  local v
  v="$(curl -s "$BASE/metrics" | awk '/^keyhaven_verifications_total\{code="VALID"\}/ {print $2}')"
  v="${v%.*}"
  echo "${v:-0}"
}
# Two threads walk the file in steps of two, from its first and second line; stopped
# once the server has answered N more VALIDs than before.
UNTIL=$(($(valid_count) + N))
START=$SECONDS
timeout 900 wrk -t 2 -c 32 -d 600s -s "$WORK/each.lua" "$BASE/v1/keys/verify" >"$WORK/fill.txt" &
WRK=$!
while kill -0 "$WRK" 2>/dev/null; do
  [ "$(valid_count)" -ge "$UNTIL" ] && { kill "$WRK"; break; }
  sleep 1
done
wait "$WRK" 2>/dev/null || true
FILL_SECONDS=$((SECONDS - START))
RSS_FULL="$(rss_mb)"
PARTS_FULL="$(rss_parts)"

echo "warm: random keys, one key, /healthz"
timed warm "$WORK/random.lua"
timed one "$WORK/one.lua"
timed healthz "$BASE/healthz"
RSS_WARM="$(rss_mb)"

echo "sustained random verify for ${SUSTAIN}s, RSS every 30 s"
: >"$WORK/rss.txt"
timeout $((SUSTAIN + 60)) wrk -t "$THREADS" -c "$CONNECTIONS" -d "${SUSTAIN}s" --timeout 5s \
  -s "$WORK/random.lua" "$BASE/v1/keys/verify" >"$WORK/sustained.txt" &
WRK=$!
for t in $(seq 30 30 "$SUSTAIN"); do
  sleep 30
  echo "$t $(rss_mb)" >>"$WORK/rss.txt"
done
wait "$WRK" 2>/dev/null || true
PARTS_END="$(rss_parts)"

# Every verification of the run answered VALID (not fast errors).
NOT_VALID="$(curl -s "$BASE/metrics" | awk '/^keyhaven_verifications_total\{/ && !/"VALID"/ { s += $2 } END { print s + 0 }')"
echo "verifications answered other than VALID since the restart: $NOT_VALID"

python3 - "$WORK" "$N" "$CREATE_SECONDS" "$FILL_SECONDS" "$RSS_EMPTY" "$RSS_RESTART" "$RSS_COLD" "$RSS_FULL" "$RSS_WARM" "$CONNECTIONS" "$DURATION" "${KEYHAVEN_DATABASE_URL:+postgres}" <<'PY'
import re, sys
work, n, create_s, fill_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rss_empty, rss_restart, rss_cold, rss_full, rss_warm = map(int, sys.argv[5:10])
conns, duration, engine = sys.argv[10], sys.argv[11], sys.argv[12] or "sqlite"

def read(name):
    text = open(f"{work}/{name}.txt").read()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def ms(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", text, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return rate, ms(50), ms(99), int(bad.group(1)) if bad else 0

print(f"\n== scale: {n:,} keys, {engine}, {conns} connections, {duration} per timed run")
print(f"created through POST /v1/keys/batch in {create_s} s ({n / max(create_s, 1):,.0f} keys/s, 4 clients)")
print(f"{'run':<40}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'vs one key':>12}")
one = read("one")[0]
for name, label in (("cold", "verify, random keys, cold cache"), ("warm", "verify, random keys, warm"),
                    ("one", "verify, one key"), ("healthz", "GET /healthz (yardstick)")):
    rate, p50, p99, bad = read(name)
    print(f"{label:<40}{rate:>10.0f}{p50:>10.3f}{p99:>10.3f}{100 * rate / one:>11.1f}%" + (f"  ({bad} non-2xx)" if bad else ""))
print(f"warm random / one key: {100 * read('warm')[0] / one:.1f}% (target >= 80%); "
      f"one key / healthz: {100 * one / read('healthz')[0]:.1f}% (target >= 85%)")
print(f"\n{'server RSS':<40}{'MB':>10}")
for label, v in (("empty", rss_empty), (f"restarted on {n:,} keys", rss_restart),
                 ("after the cold run", rss_cold), (f"every key verified once ({fill_s} s)", rss_full),
                 ("after the warm runs", rss_warm)):
    print(f"{label:<40}{v:>10}")
samples = [tuple(map(int, l.split())) for l in open(f"{work}/rss.txt") if l.strip()]
if samples:
    print("sustained random verify, RSS MB at " + ", ".join(f"{t}s: {r}" for t, r in samples))
    later = [r for t, r in samples if t >= 120]
    if len(later) >= 2:
        print(f"growth from 2 min to the end: {later[-1] - later[0]:+d} MB (target: flat)")
print(f"target: <= 256 MB with every key verified (measured {max(rss_full, rss_warm, *(r for _, r in samples))} MB peak)")
PY
echo "RSS parts with every key verified: $PARTS_FULL"
echo "RSS parts at the end of the sustained load: $PARTS_END"
