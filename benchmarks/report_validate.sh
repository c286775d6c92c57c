#!/usr/bin/env bash
# report-validate throughput: N lines (default 100 000) of realistic 0.2.2 records, timed.
#   benchmarks/report_validate.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
cargo build -q --release -p report-validate
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$n" > "$tmp/big.jsonl" <<'PY'
import json, sys
n = int(sys.argv[1])
base = json.loads(open("tests/fixtures/reports/python-writer-0.2.2.jsonl").readline())
for i in range(n):
    base["test"] = f"tests/live/test_x.py::test_{i}"
    base["duration"] = 1.0 + i % 7
    print(json.dumps(base))
PY
size=$(du -h "$tmp/big.jsonl" | cut -f1)
echo "report-validate over $n records ($size):"
for i in 1 2 3; do
  s=$(date +%s.%N); target/release/report-validate "$tmp/big.jsonl" > /dev/null; e=$(date +%s.%N)
  echo "  run $i: $(echo "$e - $s" | bc -l | cut -c1-5) s"
done
