#!/usr/bin/env bash
# bench/mpi_scaling.sh - data parallel over MPI on this machine: steps/s of `tapegrad train --task adding`
# as 1 process x 1 thread, 1 process x 2 threads and `mpirun -np 2` x 1 thread, for a small and a larger
# model, interleaved (a round runs the three one after the other; ROUNDS rounds), the median of each.
# steps/s = steps / the training loop's seconds (the --log CSV's last row: no start-up, no evaluation);
# the 2-rank runs also print the all-reduce bytes and the communication share of a step.
# Needs a build with MPI (scripts/deps.sh installs Open MPI) in build/.
# Usage: bench/mpi_scaling.sh [ROUNDS [STEPS]]   (default 3 200)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} steps=${2:-200}
tg=$PWD/build/tools/tapegrad
out=$PWD/bench-out/mpi
mkdir -p "$out"
cd "$out"
mpirun=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
# steps/s of one run: its log's last 'step,loss,seconds' row
rate() { awk -F, -v s="$steps" 'NR > 1 { t = $3 } END { printf "%.1f", s / t }' "$1"; }
for model in "small --hidden 32 --batch 32" "medium --hidden 128 --batch 128"; do
  name=${model%% *} args=${model#* }
  : > "$name.txt"
  for r in $(seq "$rounds"); do
    rm -f a.csv b.csv c.csv
    $tg train --task adding --seq 50 $args --steps "$steps" --threads 1 --quiet --log a.csv >/dev/null
    $tg train --task adding --seq 50 $args --steps "$steps" --threads 2 --quiet --log b.csv >/dev/null
    comm=$("${mpirun[@]}" "$tg" train --task adding --seq 50 $args --steps "$steps" --threads 1 --quiet --log c.csv | grep '^mpi:')
    echo "$(rate a.csv) $(rate b.csv) $(rate c.csv) ${comm#*kB/step, }" >> "$name.txt"
  done
  bytes=$("${mpirun[@]}" "$tg" train --task adding --seq 50 $args --steps 2 --threads 1 --quiet | grep -o 'all-reduce [0-9.]* kB/step')
  echo "== $name ($args, seq 50, $steps steps, $bytes); per round: 1x1 1x2 2x1 steps/s, communication"
  cat "$name.txt"
  sort -n -k1 "$name.txt" | awk '{ a[NR] = $1 } END { printf "median 1 process x 1 thread: %s steps/s\n", a[int((NR + 1) / 2)] }'
  sort -n -k2 "$name.txt" | awk '{ a[NR] = $2 } END { printf "median 1 process x 2 threads: %s steps/s\n", a[int((NR + 1) / 2)] }'
  sort -n -k3 "$name.txt" | awk '{ a[NR] = $3 } END { printf "median mpirun -np 2 x 1 thread: %s steps/s\n", a[int((NR + 1) / 2)] }'
  awk '{ print $3 / $1 }' "$name.txt" | sort -n | awk '{ a[NR] = $1 } END { printf "median per-round ratio 2 ranks / 1x1: %.2f\n", a[int((NR + 1) / 2)] }'
done
