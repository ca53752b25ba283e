#!/usr/bin/env bash
# bench/fashion_mnist.sh - sequential Fashion-MNIST (each image: 28 steps of 28 pixels), trained by
# `tapegrad train --data` and by PyTorch (bench/fashion_mnist_torch.py, on OpenBLAS) with the same model,
# optimizer, learning rate, clipping, dropout, batch size and number of epochs and steps, on all 60,000
# training images, scored on the 10,000 test images, side by side: bench/fashion_mnist_ab.py runs both at
# once (--mode together, the default here) or alternates their epochs (MODE=alternate) and records each
# epoch's wall and process CPU seconds and the load average. Not needed by the tests.
# Needs: apt-get install dataset-fashion-mnist (TG_NEED_DATA=1 scripts/deps.sh), python3-torch, OpenBLAS
# unpacked under /tmp/oblas (see docs/results.md), a release build in build/.
# Usage: bench/fashion_mnist.sh [CELL [EPOCHS [LAYERS [DROPOUT [THREADS]]]]]   (default gru 8 2 0.2 1)
#        output in bench-out/fmnist/ab_CELL.jsonl (+ _tg.txt, _tg.csv, _torch.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
cell=${1:-gru} epochs=${2:-8} layers=${3:-2} dropout=${4:-0.2} threads=${5:-1}
F=/usr/share/datasets/fashion-mnist
[ -f $F/train-images-idx3-ubyte.gz ] || { echo "no $F: apt-get install dataset-fashion-mnist" >&2; exit 1; }
[ -x build/tools/tapegrad ] || { echo "no build/tools/tapegrad: meson setup build && ninja -C build" >&2; exit 1; }
mkdir -p bench-out/fmnist
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2), load: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 bench/fashion_mnist_ab.py --mode "${MODE:-together}" --cell "$cell" --layers "$layers" --hidden 128 \
  --dropout "$dropout" --batch 64 --lr 0.002 --clip 1 --epochs "$epochs" --threads "$threads" --seed 1 \
  --tapegrad build/tools/tapegrad --out "bench-out/fmnist/ab_$cell.jsonl" | tail -1
grep -h "test accuracy" "bench-out/fmnist/ab_${cell}_tg.txt"
tail -1 "bench-out/fmnist/ab_${cell}_torch.txt"
