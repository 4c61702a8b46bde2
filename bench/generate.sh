#!/usr/bin/env bash
# Times `keyhaven generate --prefix acme_live --count 100000` (target: under 1 s),
# best of 5 runs, output to /dev/null.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-100000}"
cargo build --release --quiet -p keyhaven
bin=target/release/keyhaven
best=""
for run in 1 2 3 4 5; do
  start=$(date +%s.%N)
  "$bin" generate --prefix acme_live --count "$count" > /dev/null
  end=$(date +%s.%N)
  t=$(echo "$end - $start" | bc -l)
  printf 'run %d: %.3f s\n' "$run" "$t"
  if [ -z "$best" ] || (( $(echo "$t < $best" | bc -l) )); then best=$t; fi
done
printf 'generate --count %s: best %.3f s (%.0f keys/s)\n' "$count" "$best" "$(echo "$count / $best" | bc -l)"
