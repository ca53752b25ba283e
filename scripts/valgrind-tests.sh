#!/usr/bin/env bash
# Runs the test suites under valgrind memcheck (a portable build: valgrind cannot decode every
# -march=native instruction) and fails on any memory error or any definitely/indirectly lost block.
# Usage: scripts/valgrind-tests.sh [test ...]   (default: every suite but the long gemm sweep, and the
# examples but char_rnn; names are test names, e.g. tape or binary_addition)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q valgrind >/dev/null; }
dir=build-valgrind
[ -f $dir/build.ninja ] || meson setup $dir -Dbuildtype=debugoptimized -Dnative=false -Dtests=true >/dev/null
ninja -C $dir >/dev/null
logs=$(mktemp -d)
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  suites=(tensor tape ops safetensors compare nn zoo manual optim loss sched conformance data cell_lang dist stream proj init
          data_cli
          tensor_basics autograd_basics rnn_forward lstm_forward_backward autograd_vs_manual custom_cell
          next_number classify_sequences train_loop binary_addition your_lstm_backward own_data)   # examples (char_rnn: ~3 min here)
  # and every fuzz target over its seeds and regression inputs (tests/fuzz/meson.build names them)
  mapfile -t -O ${#suites[@]} suites < <(meson test -C $dir --list --suite fuzz 2>/dev/null | grep ' / ' | sed 's|.* / ||')
fi
# Open MPI (the dist suite's MPI programs, e.g. dist_worker --singleton): its own never-freed blocks are
# suppressed (scripts/valgrind-openmpi.supp says which), its plug-ins stay loaded so their frames have
# names, and the stacks are deep enough to reach an Open MPI frame.
supp="--suppressions=$PWD/scripts/valgrind-openmpi.supp"
[ -f /usr/share/openmpi/openmpi-valgrind.supp ] && supp="$supp --suppressions=/usr/share/openmpi/openmpi-valgrind.supp"
export OMPI_MCA_mca_base_component_disable_dlclose=1
export TG_VALGRIND=1   # quick modes (test_data's hostile-file rounds; others look for valgrind's LD_PRELOAD)
meson test -C $dir --num-processes 2 --timeout-multiplier 10 --print-errorlogs \
  --wrapper "valgrind --num-callers=40 $supp --trace-children=yes --trace-children-skip=/bin/*,/usr/bin/* --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --log-file=$logs/vg.%p.log" \
  "${suites[@]}"
# Tests that check the default error handler abort on purpose; what they held at the abort is not a leak.
for f in "$logs"/vg.*.log; do
  grep -q "signal 6 (SIGABRT)" "$f" && rm -f "$f"
done
bad=$(grep -lE "ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]" "$logs"/vg.*.log || true)
if [ -n "$bad" ]; then
  for f in $bad; do echo "== $f"; cat "$f"; done
  echo "valgrind: memory errors or leaks in the logs above" >&2
  exit 1
fi
echo "valgrind: $(ls "$logs" | wc -l) processes checked, no memory errors, no leaks"
rm -rf "$logs"
