#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests.
#
#   scripts/test-postgres.sh start DIR   # prints the admin URL on stdout
#   scripts/test-postgres.sh stop DIR    # stops the cluster and removes DIR
#
# Everything lives under DIR: data/ (the cluster), log (server log), port, bindir, and the
# Unix socket. The server listens on 127.0.0.1 only, on a free port, with fsync and
# synchronous_commit on (the product refuses to run without them). Server binaries come
# from $KEYHAVEN_PG_BINDIR, /usr/lib/postgresql/15/bin, the newest other
# /usr/lib/postgresql/*/bin, or `pg_config --bindir`; as root with apt-get, Debian's
# `postgresql` package is installed if none is found. initdb and pg_ctl refuse to run as
# root, so as root they run as the `postgres` system user, which then owns DIR.
# Only the URL goes to stdout; diagnostics go to stderr.
set -euo pipefail

die() { echo "test-postgres: $*" >&2; exit 1; }
usage() { die "usage: $0 start|stop DIR"; }

[ $# -eq 2 ] || usage
cmd="$1"
[ -n "$2" ] && [ "$2" != / ] || die "refusing DIR '$2'"
# postgres gets the path inside a command line and as a socket directory: keep it plain.
case "$2" in *[!A-Za-z0-9/._-]*) die "DIR may only contain [A-Za-z0-9/._-]: '$2'" ;; esac

# Runs a command as the cluster owner: ourselves, or `postgres` when we are root.
as_pg() {
  if [ "$(id -u)" != 0 ]; then
    "$@"
  elif command -v runuser >/dev/null; then
    runuser -u postgres -- "$@"
  else
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  fi
}

# Prints the first directory holding initdb and pg_ctl, in the documented order.
find_bindir() {
  local d
  for d in "${KEYHAVEN_PG_BINDIR:-}" /usr/lib/postgresql/15/bin \
           $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV) \
           "$(pg_config --bindir 2>/dev/null || true)"; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"; return 0
    fi
  done
  return 1
}

start() {
  mkdir -p "$1"
  local dir; dir="$(cd "$1" && pwd)"
  cd /   # the postgres user may not be able to read our working directory
  [ ! -e "$dir/data" ] || die "$dir/data already exists (stop it first)"
  # The socket path ($dir/.s.PGSQL.PORT) must fit in sun_path (107 bytes).
  [ "${#dir}" -le 90 ] || die "DIR is too long for a Unix socket path: $dir"

  local bindir
  if ! bindir="$(find_bindir)"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing postgresql (Debian)" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    fi
    bindir="$(find_bindir)" || die "no PostgreSQL server binaries found (set KEYHAVEN_PG_BINDIR)"
  fi
  echo "$bindir" >"$dir/bindir"   # so that stop uses the same pg_ctl

  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
    chown postgres "$dir" "$dir/bindir"
    as_pg test -w "$dir" || die "user postgres cannot write $dir (is a parent directory private?)"
  fi

  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

  # initdb and pg_ctl report progress on stdout: send it to stderr with the diagnostics.
  as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >&2 \
    || die "initdb failed"
  as_pg "$bindir/pg_ctl" -D "$dir/data" -w -l "$dir/log" start -o "-c listen_addresses=127.0.0.1 \
-p $port -c unix_socket_directories=$dir -c max_connections=400 -c fsync=on \
-c synchronous_commit=on -c shared_buffers=128MB" >&2 || fail_start "$dir" "pg_ctl start failed"

  local isready="$bindir/pg_isready"
  [ -x "$isready" ] || isready=pg_isready
  local _
  for _ in $(seq 1 60); do
    "$isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.5
  done
  "$isready" -q -h 127.0.0.1 -p "$port" || fail_start "$dir" "server not ready on 127.0.0.1:$port after 30 s"

  echo "$port" >"$dir/port"
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

# Reports a failed start with the end of the server log; `stop DIR` cleans up.
fail_start() {
  echo "test-postgres: $2; last lines of $1/log:" >&2
  tail -n 30 "$1/log" >&2 2>/dev/null || true
  exit 1
}

stop() {
  local dir="$1"
  [ -d "$dir" ] || return 0
  cd /
  # Stop the server if one was started (safe after a start that failed half-way).
  if [ -f "$dir/data/postmaster.pid" ] && [ -f "$dir/bindir" ]; then
    as_pg "$(cat "$dir/bindir")/pg_ctl" -D "$dir/data" -m immediate stop >&2 \
      || echo "test-postgres: pg_ctl stop failed (see $dir/log)" >&2
  fi
  # Remove DIR, but only if it holds nothing but what start puts there.
  local f
  for f in "$dir"/* "$dir"/.*; do
    case "${f##*/}" in
      . | .. | '*' | '.*' | data | log | port | bindir | .s.PGSQL.*) ;;
      *) die "not removing $dir: $f was not created by this script" ;;
    esac
  done
  rm -rf "$dir"
}

case "$cmd" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
