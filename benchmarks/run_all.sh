#!/usr/bin/env bash
# Run every SmartMarket benchmark once, printing each figure beside the baseline measured in the same run.
# JSON copies go to artifacts/bench/ (git-ignored). Usage: benchmarks/run_all.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
SM=.venv/bin/smartmarket
out=artifacts/bench
mkdir -p "$out"
rows=5000000; bars=500000; feat=500000
if [[ "${1:-}" == "--quick" ]]; then rows=300000; bars=50000; feat=50000; fi

run() {  # name, then the bench subcommand and its options
  local name=$1; shift
  echo "== $name"
  "$SM" bench "$@" --json | tee "$out/$name.json"
}
run store store --rows "$rows"
run features features --rows "$feat"
run backtest backtest --bars "$bars"
for extra in inference pipeline; do
  if "$SM" bench --help | grep -q " $extra "; then run "$extra" "$extra"; fi
done
echo "== bus"
"$SM" bench bus | tee "$out/bus.json"
echo "JSON results in $out/"
