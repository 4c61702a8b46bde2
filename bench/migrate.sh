#!/usr/bin/env bash
# Moving a SQLite deployment to PostgreSQL at scale: creates KEYS keys (default 100,000)
# through a SQLite-backed node, runs `keyhaven copy`, and verifies every key on a
# PostgreSQL-backed node (each must give the answer it gave before). This is the test
# `copy::a_sqlite_deployment_copied_to_postgres_verifies_every_key_the_same`, built in
# release mode with more keys; it prints the timings.
#
# Uses KEYHAVEN_TEST_POSTGRES_URL (an admin URL) if set, else starts a throwaway cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${KEYS:-100000}"
PG_DIR=""
cleanup() { [ -n "$PG_DIR" ] && scripts/test-postgres.sh stop "$PG_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [ -z "${KEYHAVEN_TEST_POSTGRES_URL:-}" ]; then
  PG_DIR="$(mktemp -d)"
  KEYHAVEN_TEST_POSTGRES_URL="$(scripts/test-postgres.sh start "$PG_DIR")"
  export KEYHAVEN_TEST_POSTGRES_URL
fi
KEYHAVEN_COPY_KEYS="$KEYS" cargo test --release -q -p keyhaven --test api \
  copy::a_sqlite_deployment_copied_to_postgres -- --nocapture 2>&1 | grep -E '^copy:|test result|panicked|FAILED'
