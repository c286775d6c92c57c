#!/usr/bin/env bash
# memmon's own cost: CPU (% of one core) and peak RSS while sampling for S seconds (default 10)
# at 200 ms and at 10 ms, read from /proc/<pid> just before it ends.
#   benchmarks/memmon.sh [S]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build -q --release -p memmon
hz=$(getconf CLK_TCK)
for interval in 200 10; do
  out=$(mktemp)
  # Wrap a command so the process-tree RSS scan of /proc is part of the cost.
  target/release/memmon -o "$out" --interval "$interval" -- sleep "$secs" &
  pid=$!
  sleep "$(echo "$secs - 0.3" | bc -l)"
  read -r -a stat < <(sed 's/^.*) //' "/proc/$pid/stat")
  ticks=$(( stat[11] + stat[12] ))   # utime + stime
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  wait "$pid"
  samples=$(grep -c '"ts"' "$out"); missed=$(grep -o '"missed_ticks":[0-9]*' "$out" | cut -d: -f2)
  cpu=$(echo "100 * $ticks / $hz / ($secs - 0.3)" | bc -l)
  printf 'interval %3s ms: CPU %5.2f %% of one core, peak RSS %5.1f MB, %d samples, %s missed ticks\n' \
    "$interval" "$cpu" "$(echo "$hwm / 1000" | bc -l)" "$samples" "$missed"
  rm -f "$out"
done
