#!/usr/bin/env bash
# The gateway's cost: wrk straight to a trivial upstream (nginx answering "ok"), then the
# same requests through `keyhaven serve --proxy-listen` in front of it (each one's key
# verified, identity headers added, forwarded over a pooled keep-alive connection), in
# the same run; /healthz of the same server as the yardstick. Bounded in time, 127.0.0.1
# only.
#
#   bench/proxy.sh                    # 10 s per run, 50 connections, 2 wrk threads
#   DURATION=30s CONNECTIONS=50 bench/proxy.sh
#
# On a 2-core machine wrk, nginx and the proxy share the cores: the proxy's own HTTP
# hop costs CPU that the direct run gives to wrk and nginx, so read the ratio with that
# in mind (and the /healthz line, which is the same server with no upstream at all).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null; then
  echo "nginx not found; installing Debian's package" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
  fi
  command -v nginx >/dev/null || { echo "error: nginx is required (apt-get install nginx-light)" >&2; exit 1; }
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM_PORT="$(free_port)"
PROXY_PORT="$(free_port)"
NGINX_DIR="$(mktemp -d)"
cat >"$NGINX_DIR/nginx.conf" <<CONF
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $NGINX_DIR/body;
  proxy_temp_path $NGINX_DIR/proxy;
  fastcgi_temp_path $NGINX_DIR/fastcgi;
  uwsgi_temp_path $NGINX_DIR/uwsgi;
  scgi_temp_path $NGINX_DIR/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
CONF
nginx -c "$NGINX_DIR/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
stop_nginx() { kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; rm -rf "$NGINX_DIR"; }
trap stop_nginx EXIT

SERVE_ARGS=(--proxy-listen "127.0.0.1:$PROXY_PORT" --proxy-upstream "http://127.0.0.1:$UPSTREAM_PORT")
source bench/common.sh
trap 'cleanup; stop_nginx' EXIT

UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
PROXY="http://127.0.0.1:$PROXY_PORT"
for _ in $(seq 1 50); do curl -sf "$UPSTREAM/" >/dev/null 2>&1 && break; sleep 0.1; done

KS="$(api /v1/keyspaces '{"name":"Bench","prefix":"bench_live"}' | field id)"
KEY="$(api /v1/keys "{\"keyspace_id\":\"$KS\"}" | field key)"
# The gateway admits the key and refuses a request without it.
[ "$(curl -s -o /dev/null -w '%{http_code}' "$PROXY/x" -H "Authorization: Bearer $KEY")" = 200 ] \
  || { echo "the proxy did not forward a request with a valid key" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "$PROXY/x")" = 401 ] \
  || { echo "the proxy did not refuse a request without a key" >&2; exit 1; }

# Both runs send the same request bytes (the key header included).
cat >"$WORK/keyed.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
run healthz "$BASE/healthz"
run direct "$UPSTREAM/v1/things" "$WORK/keyed.lua"
run proxied "$PROXY/v1/things" "$WORK/keyed.lua"

FORWARDED="$(curl -s "$BASE/metrics" | awk '/^keyhaven_gateway_requests_total\{outcome="forwarded"\}/ {print $2}')"
VALID_COUNT="$(curl -s "$BASE/metrics" | awk '/^keyhaven_verifications_total\{code="VALID"\}/ {print $2}')"

python3 - "$WORK/healthz.txt" "$WORK/direct.txt" "$WORK/proxied.txt" "${FORWARDED:-0}" "${VALID_COUNT:-0}" "$CONNECTIONS" "$DURATION" <<'PY'
import re, sys

def ms(value):
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n

def parse(path):
    text = open(path).read()
    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "99"):
        out["p" + pct] = ms(re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M).group(1))
    out["errors"] = re.findall(r"(Socket errors:.*|Non-2xx or 3xx responses:.*)", text)
    out["requests"] = int(re.search(r"(\d+) requests in", text).group(1))
    return out

h, d, p = (parse(a) for a in sys.argv[1:4])
forwarded, valid = int(float(sys.argv[4])), int(float(sys.argv[5]))
conns, duration = sys.argv[6], sys.argv[7]
print(f"\n== summary ({conns} connections, {duration} each, same machine, back to back)")
print(f"{'run':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
for name, r in (("GET /healthz (keyhaven, yardstick)", h), ("direct to the upstream (nginx)", d),
                ("through the gateway", p)):
    print(f"{name:<34}{r['rps']:>10.0f}{r['p50']:>10.3f}{r['p99']:>10.3f}")
print(f"gateway / direct throughput: {100 * p['rps'] / d['rps']:.1f}%  (target >= 80%)")
print(f"added latency: p50 {p['p50'] - d['p50']:+.3f} ms (target <= 0.2 ms), p99 {p['p99'] - d['p99']:+.3f} ms")
print(f"gateway / healthz throughput: {100 * p['rps'] / h['rps']:.1f}%  (the proxy's HTTP hop and verify vs answering alone)")
print(f"requests forwarded by the gateway: {forwarded}; VALID verifications: {valid} (wrk sent {p['requests']} in the timed run, plus warm-up)")
bad = h["errors"] + d["errors"] + p["errors"]
if bad:
    print("errors:", *bad, sep="\n  ")
    sys.exit(1)
PY
