#!/usr/bin/env bash
# bench/sunspots.sh - a real series: the yearly sunspot numbers 1700-2008 (309 values) as Debian's
# python3-statsmodels ships them (statsmodels/datasets/sunspots/sunspots.csv; TG_NEED_DATA=1
# scripts/deps.sh copies it to bench-out/data/), forecast one year ahead from the 12 years before,
# against persistence (next year = this year). The validation windows are the last 20 % (years after
# every training target). LSTM and GRU, fixed budget (no early stopping: the validation metric is not
# used to pick the epoch). Not needed by the tests.   Usage: bench/sunspots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
csv=bench-out/data/sunspots.csv
[ -f $csv ] || TG_NEED_DATA=1 bash scripts/deps.sh
for cell in lstm gru; do
  echo "== $cell"
  build/tools/tapegrad train --data $csv --features SUNACTIVITY --target next --seq 12 --val 0.2 --cell $cell \
    --hidden 16 --epochs 100 --lr 0.01 --quiet --save bench-out/sunspots_$cell.safetensors | grep -vE "^saved"
done
