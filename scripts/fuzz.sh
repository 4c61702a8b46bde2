#!/usr/bin/env bash
# Runs the key-parser fuzz target for a bounded time (default 60 s).
#
#   scripts/fuzz.sh [SECONDS]
#
# Uses cargo-fuzz (libFuzzer). cargo-fuzz needs nightly compiler flags; on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them. Installs cargo-fuzz from crates.io if absent.
# Findings land in fuzz/artifacts/parse_key/; the corpus grows in fuzz/corpus/ (ignored
# by git; fuzz/seeds/ holds the checked-in seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz..."
  cargo install cargo-fuzz --locked --quiet
fi
mkdir -p fuzz/corpus/parse_key
export RUSTC_BOOTSTRAP=1
cargo fuzz run parse_key fuzz/corpus/parse_key fuzz/seeds/parse_key -- \
  -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
