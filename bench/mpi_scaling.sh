#!/usr/bin/env bash
# bench/mpi_scaling.sh - data parallel over MPI on this machine: steps/s of `tapegrad train --task adding`
# as 1 process x 1 thread, 1 process x 2 threads, `mpirun -np 2` x 1 thread (MPI's busy-polling wait) and
# `mpirun -np 2` x 1 thread with --mpi-poll-sleep 20 (a waiting rank sleeps), for a small and a large
# model, interleaved: a round runs the four one after the other (the order rotates from round to round),
# ROUNDS rounds; per configuration the median steps/s, and the median of the per-round ratios to 1x1.
# steps/s = steps / the training loop's seconds (the --log CSV's last row: no start-up, no evaluation).
# The 2-rank runs use --mpi-timing: each rank's step split into compute (wall, CPU), waiting for the
# slowest rank (a barrier before the all-reduce) and the all-reduce itself; the medians are printed.
# Needs a build with MPI (scripts/deps.sh installs Open MPI) in build/. MPIRUN_ARGS adds mpirun options
# (e.g. "--bind-to none").
# Usage: bench/mpi_scaling.sh [ROUNDS [SMALL_STEPS [LARGE_STEPS]]]   (default 3 400 10)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} small_steps=${2:-400} large_steps=${3:-10}
tg=$PWD/build/tools/tapegrad
out=$PWD/bench-out/mpi
mkdir -p "$out"
cd "$out"
mpirun=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)
# shellcheck disable=SC2206
mpirun+=(${MPIRUN_ARGS:-})
load() { cut -d' ' -f1 /proc/loadavg; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), $(nproc) cores; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) printf "%.3g", a[int((NR + 1) / 2)]; else printf "-" }'; }
# steps/s of one run: its log's last 'step,loss,seconds' row
rate() { awk -F, 'NR > 1 { s = $1; t = $3 } END { printf "%.4g", s / t }' "$1"; }
# run CONFIG STEPS ARGS...: prints "steps/s" (1-process configs) or "steps/s compute cpu wait allreduce"
run() {
  local cfg=$1 steps=$2
  shift 2
  rm -f run.csv
  case $cfg in
    1x1) "$tg" train "$@" --steps "$steps" --threads 1 --quiet --log run.csv >/dev/null; rate run.csv ;;
    1x2) "$tg" train "$@" --steps "$steps" --threads 2 --quiet --log run.csv >/dev/null; rate run.csv ;;
    2x1 | 2x1s)
      local extra=()
      [ "$cfg" = 2x1s ] && extra=(--mpi-poll-sleep 20)
      "${mpirun[@]}" "$tg" train "$@" --steps "$steps" --threads 1 --quiet --log run.csv --mpi-timing "${extra[@]}" > run.txt
      # rank 0's split: ms/step = compute W (CPU C) + waiting X + all-reduce Y
      echo "$(rate run.csv) $(awk '/^mpi rank 0:/ { print $8, $11, $19, $23 }' run.txt | tr -d '()')" ;;
  esac
}
for model in "small $small_steps --hidden 32 --batch 32" "large $large_steps --hidden 256 --batch 256"; do
  read -r name steps args <<< "$model"
  : > "$name.txt"
  cfgs=(1x1 1x2 2x1 2x1s)
  for r in $(seq "$rounds"); do
    line="round $r load $(load)"
    declare -A res=()
    for k in 0 1 2 3; do
      c=${cfgs[$(((k + r - 1) % 4))]}
      # shellcheck disable=SC2086
      res[$c]=$(run "$c" "$steps" --task adding --seq 50 $args)
    done
    echo "$line ${res[1x1]} ${res[1x2]} ${res[2x1]} ${res[2x1s]} load $(load)" >> "$name.txt"
    unset res
  done
  # shellcheck disable=SC2086
  bytes=$("${mpirun[@]}" "$tg" train --task adding --seq 50 $args --steps 1 --threads 1 --quiet | grep -o 'all-reduce [0-9.]* kB/step')
  echo "== $name ($args, seq 50, $steps steps, $bytes)"
  echo "   per round: 1x1 1x2 steps/s; 2x1: steps/s compute-ms cpu-ms wait-ms allreduce-ms; 2x1 poll-sleep: the same"
  sed 's/^/   /' "$name.txt"
  # columns: 1 round 2 r 3 load 4 L 5 1x1 6 1x2 7-11 2x1 12-16 2x1s
  col() { awk -v c="$1" '{ print $c }' "$name.txt" | median; }
  ratio() { awk -v c="$1" '{ print $c / $5 }' "$name.txt" | median; }
  printf "   median steps/s: 1x1 %s, 1x2 %s (x%s), 2x1 %s (x%s), 2x1 poll-sleep %s (x%s)  [x: median per-round ratio to 1x1]\n" \
    "$(col 5)" "$(col 6)" "$(ratio 6)" "$(col 7)" "$(ratio 7)" "$(col 12)" "$(ratio 12)"
  printf "   median rank 0 ms/step: 2x1 compute %s (CPU %s) wait %s all-reduce %s; poll-sleep compute %s (CPU %s) wait %s all-reduce %s\n" \
    "$(col 8)" "$(col 9)" "$(col 10)" "$(col 11)" "$(col 13)" "$(col 14)" "$(col 15)" "$(col 16)"
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
