#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz for a bounded time, under ASan + UBSan (README "Hardening").
#
#   scripts/fuzz.sh [SECONDS [TARGET ...]]   each target SECONDS (default 20), all targets by default
#   scripts/fuzz.sh --seeds                  rewrites tests/fuzz/corpus/checkpoint from `tapegrad train`
#
# Builds build-fuzz with clang (-Dfuzz=true). Each target starts from its committed seeds
# (tests/fuzz/corpus/<name>, read only) and keeps what it finds in build-fuzz/corpus/<name>, so a longer
# run continues an earlier one; a crash leaves its input in build-fuzz/crash/<name>/ and makes the
# script fail. FUZZ_JOBS=N runs N fuzzing processes per target (default 1). Prints one line per target:
# executions, seconds, corpus size, findings; and the total.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
targets_all=(safetensors cell_lang csv npy idx data_st gunzip checkpoint cli)

if [ "${1:-}" = "--seeds" ]; then
  # The checkpoint target's seeds: a model file and an optimizer file per optimizer kind, of the fixed
  # model the target builds (lstm, input 2, hidden 3, output 1, F32). Byte 0: even = model file,
  # odd = optimizer file of kind (byte >> 1). Needs the normal build (./test) for the tapegrad command.
  exe=build/tools/tapegrad
  [ -x "$exe" ] || { echo "fuzz.sh --seeds: build the command first (./test or ninja -C build)" >&2; exit 2; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  out=tests/fuzz/corpus/checkpoint
  rm -rf "$out" && mkdir -p "$out"
  k=0
  for o in sgd adam adamw rmsprop adagrad; do  # TG_OPTIM_KINDS order (optim.h)
    "$exe" train --task adding --seq 4 --hidden 3 --steps 2 --optim "$o" --save "$tmp/$o.safetensors" >/dev/null
    { printf '\x00'; cat "$tmp/$o.safetensors"; } > "$out/model_$o"
    { printf "\\x$(printf %02x $((2 * k + 1)))"; cat "$tmp/$o.optim.safetensors"; } > "$out/optim_$o"
    k=$((k + 1))
  done
  ls "$out"
  exit 0
fi

secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${targets_all[@]}")
jobs=${FUZZ_JOBS:-1}

command -v clang >/dev/null || { echo "fuzz.sh: clang is needed (apt-get install clang libclang-rt-dev)" >&2; exit 2; }
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized -Dtests=false -Dtools=false -Dmpi=disabled -Dwerror=true >/dev/null
fi
ninja -C build-fuzz >/dev/null

# the checkpoint target writes each input to a file (the loaders take paths): in memory when possible
[ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
total=0
failed=()
for t in "${targets[@]}"; do
  exe=build-fuzz/tests/fuzz/fuzz_$t
  [ -x "$exe" ] || { echo "fuzz.sh: no target '$t' (known: ${targets_all[*]})" >&2; exit 2; }
  work=build-fuzz/corpus/$t crash=build-fuzz/crash/$t
  mkdir -p "$work" "$crash"
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  par=()
  [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
  [ "$t" = cli ] && par+=(-close_fd_mask=3) # the usage messages of every input
  log=build-fuzz/fuzz_$t.log
  rc=0
  # -rss_limit_mb: a target may not grow past 2 GB; -malloc_limit_mb: no single allocation over 1 GB
  # (a reader that trusts a header fails here). -timeout: no input may take 10 s.
  (cd build-fuzz && "$root/$exe" "$root/$work" "$root/tests/fuzz/corpus/$t" ${dict[@]+"${dict[@]}"} \
     -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=65536 \
     -print_final_stats=1 -artifact_prefix="$root/$crash/" ${par[@]+"${par[@]}"} \
     ${FUZZ_ARGS:-}) >"$log" 2>&1 || rc=$?
  if [ "$jobs" -gt 1 ]; then cat build-fuzz/fuzz-*.log >>"$log" 2>/dev/null || true; rm -f build-fuzz/fuzz-*.log; fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}' || true)
  total=$((total + runs))
  found=$(find "$crash" -type f | wc -l)
  printf 'fuzz_%-12s %10d executions in %ss, corpus %d files, %d crashes%s\n' "$t" "$runs" "$secs" \
    "$(find "$work" -type f | wc -l)" "$found" "$([ $rc -ne 0 ] && echo " (exit $rc, see $log)")"
  if [ $rc -ne 0 ] || [ "$found" -gt 0 ]; then failed+=("$t"); tail -40 "$log" >&2; fi
done
echo "total: $total executions, ${#failed[@]} targets with findings${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
