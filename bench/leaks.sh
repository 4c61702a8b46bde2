#!/usr/bin/env bash
# Leak response benchmark: a GitHub secret scanning batch of N tokens (default 10,000),
# every one a working key of the server, signed with a P-256 key made here (the server
# reads its public key from a file in GitHub's format), then a batch of N false
# positives (half with a wrong checksum, half unknown key ids with a valid one), then
# the first batch again (a replay: refused). Prints each answer's time; the goal is
# under 5 s for the 10,000-token batch. Local files and loopback only; needs Python's
# `cryptography` (installed in a throwaway venv if missing).
#
#   bench/leaks.sh          # N=10000
#   N=2000 bench/leaks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-10000}"

cargo build --release -q -p keyhaven
BIN="$PWD/target/release/keyhaven"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && { kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

PY=python3
if ! python3 -c 'import cryptography' 2>/dev/null; then
  python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" install -q cryptography
  PY="$WORK/venv/bin/python"
fi

# GitHub's side: a signing key, and its public key in GitHub's public_keys format.
"$PY" - "$WORK" <<'PY'
import json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
work = sys.argv[1]
key = ec.generate_private_key(ec.SECP256R1())
open(f"{work}/github.pem", "wb").write(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
pem = key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
json.dump({"public_keys": [{"key_identifier": "bench-key", "key": pem, "is_current": True}]},
          open(f"{work}/github-keys.json", "w"))
PY

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
KEYHAVEN_LOG=warn KEYHAVEN_ACCESS_LOG=false \
KEYHAVEN_LEAKS_GITHUB_PUBLIC_KEYS_FILE="$WORK/github-keys.json" \
  "$BIN" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

"$PY" - "$WORK" "$PORT" "$N" <<'PY'
import base64, json, sys, time, urllib.request, urllib.error, random, string, zlib
from concurrent.futures import ThreadPoolExecutor
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

work, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
base = f"http://127.0.0.1:{port}"
root = open(f"{work}/data/initial-root-key").read().strip()
signer = serialization.load_pem_private_key(open(f"{work}/github.pem", "rb").read(), None)

def call(method, path, body=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

auth = {"Authorization": f"Bearer {root}"}
status, ks = call("POST", "/v1/keyspaces", {"name": "Bench", "prefix": "bench_live"}, auth)
assert status == 201, ks
start = time.perf_counter()
with ThreadPoolExecutor(8) as pool:
    created = list(pool.map(lambda i: call("POST", "/v1/keys", {"keyspace_id": ks["id"]}, auth), range(n)))
assert all(s == 201 for s, _ in created), created[:3]
keys = [k["key"] for _, k in created]
print(f"setup: {n} keys created in {time.perf_counter() - start:.1f} s")

def github(tokens, tag):
    body = json.dumps([{"token": t, "type": "bench_api_key", "source": "content",
                        "url": f"https://github.com/octo/repo/blob/{tag}/file{i}.py"}
                       for i, t in enumerate(tokens)]).encode()
    sig = base64.b64encode(signer.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    return body, sig

def post(body, sig):
    t = time.perf_counter()
    status, answer = call("POST", "/v1/leaks/github", raw=body, headers={
        "Github-Public-Key-Identifier": "bench-key", "Github-Public-Key-Signature": sig})
    return status, answer, time.perf_counter() - t

def check(body):
    core = body[:-6]
    crc = zlib.crc32(core.encode())
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    digits = ""
    for _ in range(6):
        crc, d = divmod(crc, 58)
        digits = alphabet[d] + digits
    return core + digits

body, sig = github(keys, "a1")
status, answer, took = post(body, sig)
assert status == 200, answer
tp = sum(v["label"] == "true_positive" for v in answer)
print(f"github batch of {n} working keys ({len(body) / 1e6:.1f} MB): {took:.2f} s, "
      f"{tp} true positives, {n / took:,.0f} tokens/s")
assert tp == n

alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
def rnd(k): return "".join(random.choice(alphabet) for _ in range(k))
fakes = []
for i in range(n):
    candidate = check(f"bench_live_{rnd(12)}_{rnd(30)}xxxxxx")
    fakes.append(candidate if i % 2 else candidate[:-1] + ("2" if candidate[-1] != "2" else "3"))
fbody, fsig = github(fakes, "b2")
status, answer, took = post(fbody, fsig)
assert status == 200, answer
fp = sum(v["label"] == "false_positive" for v in answer)
print(f"github batch of {n} false positives: {took:.2f} s, {fp} false positives")
assert fp == n

status, answer, took = post(body, sig)
print(f"replay of the first batch: HTTP {status} ({answer.get('code')}) in {took * 1000:.0f} ms")
assert status == 401
t = time.perf_counter()
for _ in range(200):
    urllib.request.urlopen(base + "/healthz").read()
print(f"yardstick: /healthz {((time.perf_counter() - t) / 200) * 1000:.2f} ms per request (sequential)")
PY
