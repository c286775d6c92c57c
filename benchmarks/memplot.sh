#!/usr/bin/env bash
# memplot on a 4-hour run at 200 ms (72 000 samples): output size, time to write it, and the
# time headless Chromium takes to load the page and finish drawing (offline, software GL).
#   benchmarks/memplot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p memplot
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/long.jsonl" <<'PY'
import json, math, sys
with open(sys.argv[1], "w") as f:
    for i in range(72000):
        t = i * 0.2
        f.write(json.dumps({"ts": 1769767200 + t, "elapsed_s": t, "ram_free_gb": 20 + 3 * math.sin(t / 300),
            "ram_total_gb": 24.0, "swap_used_mb": 0.0, "load_1": 1.5, "cpu_user": 30 + 20 * math.sin(t / 50),
            "cpu_sys": 5.0, "cpu_idle": 65.0, "proc_rss_mb": 900.0}) + "\n")
PY
s=$(date +%s.%N); target/release/memplot "$tmp/long.jsonl" -o "$tmp/long.html" >/dev/null; e=$(date +%s.%N)
echo "memplot: 72 000 samples → $(du -h "$tmp/long.html" | cut -f1) HTML in $(echo "$e - $s" | bc -l | cut -c1-5) s"
if command -v chromium >/dev/null; then
  echo '<!DOCTYPE html><body data-rendered="yes"></body>' > "$tmp/blank.html"
  s=$(date +%s.%N)
  chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --user-data-dir="$tmp/profile0" --dump-dom "file://$tmp/blank.html" >/dev/null 2>&1
  e=$(date +%s.%N); base=$(echo "$e - $s" | bc -l)
  s=$(date +%s.%N)
  chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --user-data-dir="$tmp/profile" --virtual-time-budget=30000 --dump-dom "file://$tmp/long.html" 2>/dev/null | grep -q 'data-rendered="yes"'
  e=$(date +%s.%N)
  total=$(echo "$e - $s" | bc -l)
  echo "chromium: page loaded and drawn in $(echo "$total" | cut -c1-5) s; a blank page takes $(echo "$base" | cut -c1-5) s"
  echo "          → opening the timeline costs $(echo "$total - $base" | bc -l | cut -c1-5) s beyond browser start-up"
fi
