#!/usr/bin/env bash
# Scan benchmark: a generated git repository of FILES files (default 20,000) and COMMITS
# commits (default 500) holding 50 planted keys (15 in the last commit, 10 in lines
# modified away, 10 in files deleted later, 5 in lines deleted later, 5 on an unmerged
# branch, 5 reachable only from tags) among about 10 MB of base58 noise full of
# look-alikes with a wrong checksum. Times `keyhaven scan` on the working tree and
# `keyhaven scan --git`, prints MB/s, files/s and blobs/s, and checks that the history
# scan finds exactly the 50 keys and the working-tree scan exactly the 15. Local only.
#
#   bench/scan.sh
#   FILES=2000 COMMITS=100 bench/scan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FILES="${FILES:-20000}"
COMMITS="${COMMITS:-500}"
NOISE_PER_FILE="${NOISE_PER_FILE:-500}"
[ "$COMMITS" -ge 60 ] || { echo "error: COMMITS must be at least 60" >&2; exit 2; }

cargo build --release -q -p keyhaven
BIN="$PWD/target/release/keyhaven"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

"$BIN" generate --prefix acme_live --count 40 --json >"$WORK/keys.jsonl"
"$BIN" generate --prefix acme_test --count 10 --json >>"$WORK/keys.jsonl"
"$BIN" generate --prefix acme_live --count 200 >"$WORK/look-alikes.txt"

git init -q -b main "$WORK/repo"
start=$(date +%s.%N)
python3 - "$WORK" "$FILES" "$COMMITS" "$NOISE_PER_FILE" <<'PY' | (cd "$WORK/repo" && git fast-import --quiet)
import json, random, sys
work, files, commits, per_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(1)
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
keys = [json.loads(l) for l in open(f"{work}/keys.jsonl")]
rng.shuffle(keys)
# Real keys with one character changed: the checksum no longer holds.
look_alikes = []
for i, k in enumerate(open(f"{work}/look-alikes.txt").read().split()):
    at = len(k) - 1 - i % 40
    look_alikes.append(k[:at] + ("3" if k[at] == "2" else "2") + k[at + 1:])
out = sys.stdout.buffer

def noise(n):
    parts, size = [], 0
    while size < n:
        r = rng.randrange(20)
        if r == 0:
            w = rng.choice(look_alikes)
        elif r == 1:  # exactly a key's shape, random checksum
            w = "acme_live_" + "".join(rng.choices(B58, k=12)) + "_" + "".join(rng.choices(B58, k=36))
        else:
            w = "".join(rng.choices(B58, k=1 + 2 * r))
        parts.append(w + rng.choice("\n_=     "))
        size += len(w) + 1
    return "".join(parts) + "\n"

def header(ref, mark, frm=None):
    msg = f"commit {mark}"
    out.write(f"commit {ref}\nmark :{mark}\ncommitter T <t@example.com> {1700000000 + mark * 60} +0000\ndata {len(msg)}\n{msg}\n".encode())
    if frm:
        out.write(f"from :{frm}\n".encode())

def put(path, content):
    if content is None:
        out.write(f"D {path}\n".encode())
    else:
        data = content.encode()
        out.write(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")

expected = {"history": [], "tree": []}
def planted(kind, j):
    k = keys[j]
    glue = ["", "my_config_", '"', "export TOKEN="][j % 4]
    expected["history"].append(k["key_id"])
    if kind == "final":
        expected["tree"].append(k["key_id"])
    return f"{kind}/k{j:02}.env", f"# {kind} {j}\n{noise(120)}API_KEY = {glue}{k['key']}\n{noise(80)}", k["key"]

plants, removals, j, span = {}, {}, 0, commits - 12
for kind, count, after in [("final", 15, None), ("modified", 10, 5), ("deleted_file", 10, 7), ("deleted_line", 5, 3)]:
    for _ in range(count):
        mark = 2 + j * span // 40
        path, content, key = planted(kind, j)
        plants.setdefault(mark, []).append((path, content))
        if after:
            change = {"modified": content.replace(key, "REDACTED"),
                      "deleted_line": "".join(l + "\n" for l in content.splitlines() if key not in l)}.get(kind)
            removals.setdefault(mark + after, []).append((path, change))
        j += 1
for mark in range(1, commits + 1):
    header("refs/heads/main", mark)
    if mark == 1:
        for i in range(files):
            put(f"src/d{i // 100:03}/f{i:05}.txt", noise(per_file))
    else:
        for _ in range(20):
            i = rng.randrange(files)
            put(f"src/d{i // 100:03}/f{i:05}.txt", noise(per_file // 2))
    for path, content in plants.get(mark, []) + removals.get(mark, []):
        put(path, content)
refs = ["refs/heads/experiment"] * 5 + ["refs/tags/light"] * 3 + ["refs/heads/to-be-deleted"] * 2
mark = commits
for i, ref in enumerate(refs):
    mark += 1
    header(ref, mark, {0: 30, 5: 40, 8: 50}.get(i))
    path, content, _ = planted("branch" if "experiment" in ref else "tag", 40 + i)
    put(path, content)
out.write(f"tag annotated\nfrom :{mark}\ntagger T <t@example.com> 1700900000 +0000\ndata 4\nleak\n".encode())
json.dump(expected, open(f"{work}/expected.json", "w"))
PY
git -C "$WORK/repo" update-ref -d refs/heads/to-be-deleted
git -C "$WORK/repo" reset -q --hard main
end=$(date +%s.%N)
echo "repository: $FILES files, $COMMITS commits (+10 off main), $(du -sh "$WORK/repo/.git" | cut -f1) in .git, $(du -sh --exclude=.git "$WORK/repo" | cut -f1) checked out, built in $(python3 -c "print(f'{$end-$start:.1f}')") s"

run() { # label expected-set args...
  local label=$1 set=$2 start end status
  shift 2
  start=$(date +%s.%N)
  set +e
  (cd "$WORK/repo" && "$BIN" scan --format json "$@" >"$WORK/$label.json" 2>"$WORK/$label.err")
  status=$?
  set -e
  end=$(date +%s.%N)
  python3 - "$WORK" "$label" "$set" "$status" "$start" "$end" <<'PY'
import json, re, sys
work, label, which, status, start, end = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
summary = open(f"{work}/{label}.err").read().strip().splitlines()[-1]
m = re.search(r"scanned (\d+) (files|blobs) \(([\d.]+) MB\)", summary)
n, unit, mb = int(m.group(1)), m.group(2), float(m.group(3))
found = {f["key_id"] for f in json.load(open(f"{work}/{label}.json"))}
expected = set(json.load(open(f"{work}/expected.json"))[which])
wall = end - start
ok = found == expected and status == 1
print(f"== {label}: {wall:.2f} s, {mb / wall:.1f} MB/s, {n / wall:,.0f} {unit}/s; "
      f"found {len(found)} of {len(expected)} planted, {len(found - expected)} false positives, exit {status} "
      f"[{'OK' if ok else 'MISMATCH'}]\n   {summary}")
sys.exit(0 if ok else 1)
PY
}
run tree tree
run history history --git
