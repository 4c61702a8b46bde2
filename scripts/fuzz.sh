#!/usr/bin/env bash
# Fuzzes every parser that takes outside input, each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Default: every target in fuzz/Cargo.toml (`cargo fuzz list`), 60 s each; 0 seconds
# only builds. Builds all targets once (`cargo fuzz build`: optimised, with debug
# assertions and overflow checks, AddressSanitizer unless KEYHAVEN_FUZZ_SANITIZER says
# otherwise, e.g. `none`; KEYHAVEN_FUZZ_BUILD=dev builds with fuzz/Cargo.toml's dev
# profile instead, a quicker build for short runs), then runs each in turn on its
# checked-in seeds
# (fuzz/seeds/<target>/) and its growing corpus (fuzz/corpus/<target>/, ignored by git).
# Stops at the first crash, slow input (10 s) or out-of-memory, with a non-zero exit
# naming the target and the input (under fuzz/artifacts/<target>/).
#
# Uses cargo-fuzz (libFuzzer), installed from crates.io if absent (a debug build: it only
# drives cargo, and builds in a quarter of the time). cargo-fuzz needs
# nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them. A first
# build starts from the workspace's Cargo.lock, so the fuzzed code runs on the versions
# the tests run on.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
sanitizer="${KEYHAVEN_FUZZ_SANITIZER:-address}"
build="${KEYHAVEN_FUZZ_BUILD:-release}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
case "$build" in
  release) build_flag=--release profile_dir=release ;;
  dev) build_flag=--dev profile_dir=debug ;;
  *) echo "KEYHAVEN_FUZZ_BUILD is release or dev, not $build" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz..."
  cargo install cargo-fuzz --locked --debug --quiet
fi
export RUSTC_BOOTSTRAP=1
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

mapfile -t all < <(cargo fuzz list)
[ "${#all[@]}" -gt 0 ] || { echo "cargo fuzz list found no targets" >&2; exit 1; }
if [ "$#" -gt 0 ]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    printf '%s\n' "${all[@]}" | grep -qx -- "$t" \
      || { echo "no fuzz target $t (targets: ${all[*]})" >&2; exit 2; }
  done
else
  targets=("${all[@]}")
fi

# AddressSanitizer builds go where plain `cargo fuzz run` looks; other builds beside
# them, so switching between the two does not rebuild everything each time.
target_dir="fuzz/target"
[ "$sanitizer" = address ] || target_dir="fuzz/target/sanitizer-$sanitizer"
echo "building ${#all[@]} fuzz targets ($build, sanitizer: $sanitizer) in $target_dir"
build_start=$SECONDS
cargo fuzz build "$build_flag" --sanitizer="$sanitizer" --target-dir="$target_dir"
echo "built in $((SECONDS - build_start)) s"
[ "$seconds" -gt 0 ] || exit 0

triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$triple/$profile_dir"
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  seeds="fuzz/seeds/$target"
  mkdir -p "$corpus" "$artifacts"
  [ -d "$seeds" ] || { echo "no seeds for $target: add some under $seeds/" >&2; exit 2; }
  echo "== fuzz $target for ${seconds}s"
  # libFuzzer writes new inputs to the first directory (the corpus), never the seeds.
  if ! "$bin_dir/$target" "$corpus" "$seeds" \
    -artifact_prefix="$artifacts/" -max_total_time="$seconds" -max_len=4096 \
    -timeout=10 -print_final_stats=1; then
    found="$(ls -t "$artifacts" 2>/dev/null | head -n 1)"
    echo "FUZZ FAILURE in target $target: input in $artifacts/${found:-?}" >&2
    echo "reproduce: $bin_dir/$target $artifacts/${found:-<input>}" >&2
    exit 1
  fi
done
echo "fuzzed ${#targets[@]} targets, ${seconds}s each: no crash"
