#!/usr/bin/env bash
# bench/fashion_mnist.sh - sequential Fashion-MNIST (each image: 28 steps of 28 pixels) with an LSTM and a
# GRU, trained by `tapegrad train --data` and by PyTorch (bench/fashion_mnist_torch.py) with the same model,
# optimizer, learning rate, clipping, batch size and number of epochs, on all 60,000 training images,
# scored on the 10,000 test images. Then interleaved timing rounds (tapegrad, torch, tapegrad, torch ...)
# of --steps STEPS each, 1 thread each. Not needed by the tests.
# Needs: apt-get install dataset-fashion-mnist (TG_NEED_DATA=1 scripts/deps.sh), python3-torch for the
# PyTorch side, a release build in build/.
# Usage: bench/fashion_mnist.sh [EPOCHS [ROUNDS [STEPS]]]   (default 2 3 200); output in bench-out/fmnist/
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-2} rounds=${2:-3} steps=${3:-200}
F=/usr/share/datasets/fashion-mnist
[ -f $F/train-images-idx3-ubyte.gz ] || { echo "no $F: apt-get install dataset-fashion-mnist" >&2; exit 1; }
tg=build/tools/tapegrad
py=/usr/bin/python3
out=bench-out/fmnist
mkdir -p $out
common=(--hidden 128 --batch 64 --lr 0.002 --clip 1 --threads 1)
data=(--data $F/train-images-idx3-ubyte.gz --labels $F/train-labels-idx1-ubyte.gz --target class --val 0
      --test-data $F/t10k-images-idx3-ubyte.gz --test-labels $F/t10k-labels-idx1-ubyte.gz)
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load: $(cut -d' ' -f1-3 /proc/loadavg)"
for cell in lstm gru; do
  echo "== $cell, $epochs epochs"
  rm -f $out/tg_$cell.csv   # --log appends
  $tg train "${data[@]}" --cell $cell "${common[@]}" --epochs "$epochs" --quiet --log $out/tg_$cell.csv \
    | tee $out/tg_$cell.txt | grep -E "test accuracy|model:|training:"
  # seconds per epoch from the log's cumulative seconds (column 3)
  awk -F, 'NR > 1 { s = $3 - prev; prev = $3; n++; tot += s } END { printf "tapegrad %s seconds_per_epoch %.1f\n", c, tot / n }' \
    c=$cell $out/tg_$cell.csv
  $py bench/fashion_mnist_torch.py --cell $cell "${common[@]}" --epochs "$epochs" | tee $out/torch_$cell.txt | tail -1
done
echo "== timing: $rounds interleaved rounds of $steps steps per cell (wall seconds of the whole run, data loading included)"
for cell in lstm gru; do
  for r in $(seq "$rounds"); do
    t0=$(date +%s.%N)
    $tg train "${data[@]}" --cell $cell "${common[@]}" --steps "$steps" --quiet >/dev/null
    t1=$(date +%s.%N)
    $py bench/fashion_mnist_torch.py --cell $cell "${common[@]}" --epochs 1 --steps "$steps" >/dev/null
    t2=$(date +%s.%N)
    echo "$cell round $r tapegrad $(echo "$t1 - $t0" | bc) torch $(echo "$t2 - $t1" | bc)"
  done
done | tee $out/timing.txt
awk '{ r[$1] = r[$1] " " $7 / $5 } END { for (c in r) print c, "torch/tapegrad wall ratios:" r[c] }' $out/timing.txt
