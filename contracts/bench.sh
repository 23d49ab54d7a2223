#!/usr/bin/env bash
# Gas: the per-function report over the unit tests, then the 100-task settlement scenario.
# The last line printed is `BENCH gas per_task=... hub_register=... deal_open=...
# payout_batch_per_miner=...` (real transaction gas: --isolate runs each call as its own tx).
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure-deps.sh

forge test --gas-report --no-match-path 'test/{bench,invariant}/*' >&2
out=$(forge test --isolate --match-path 'test/bench/*' -vv)
echo "$out" | grep -E '^ +per task:' | sed 's/^ *//'
line=$(echo "$out" | grep -E '^ +BENCH gas ' | sed 's/^ *//')
[[ -n $line ]] || { echo "$out" >&2; echo "benchmark printed no BENCH line" >&2; exit 1; }
echo "$line"
