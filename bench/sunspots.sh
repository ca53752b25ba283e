#!/usr/bin/env bash
# bench/sunspots.sh - a real series: the yearly sunspot numbers 1700-2008 (309 values) as Debian's
# python3-statsmodels ships them (statsmodels/datasets/sunspots/sunspots.csv; TG_NEED_DATA=1
# scripts/deps.sh copies it to bench-out/data/), forecast one year ahead from the 12 years before,
# against persistence (next year = this year). The validation windows are the last 20 % (years after
# every training target). LSTM and GRU, fixed budget (no early stopping: the validation metric is not
# used to pick the epoch), then the same model, data pipeline and settings in PyTorch
# (bench/sunspots_torch.py; skipped when python3-torch is missing). Not needed by the tests.
# Usage: [SEEDS="1 2 3 4 5"] bench/sunspots.sh     (default: seed 1)
set -euo pipefail
cd "$(dirname "$0")/.."
csv=bench-out/data/sunspots.csv
[ -f $csv ] || TG_NEED_DATA=1 bash scripts/deps.sh
oblas=/tmp/oblas/usr/lib/x86_64-linux-gnu/openblas-openmp
for cell in lstm gru; do
  for seed in ${SEEDS:-1}; do
    echo "== $cell, seed $seed"
    build/tools/tapegrad train --data $csv --features SUNACTIVITY --target next --seq 12 --val 0.2 --cell $cell \
      --hidden 16 --epochs 100 --lr 0.01 --seed "$seed" --quiet --save bench-out/sunspots_$cell.safetensors | grep -vE "^saved"
    if /usr/bin/python3 -c "import torch" 2>/dev/null; then
      LD_LIBRARY_PATH=$([ -d $oblas ] && echo $oblas) /usr/bin/python3 bench/sunspots_torch.py --csv $csv --cell $cell \
        --hidden 16 --epochs 100 --lr 0.01 --seed "$seed"
    fi
  done
done
