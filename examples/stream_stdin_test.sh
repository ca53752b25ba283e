#!/bin/sh
# ./test's run of examples/stream_stdin (suite examples): a small adding checkpoint made here by
# `tapegrad train`, then two sequences on stdin, each checked against tg_model_forward (--check), and
# a bad line refused with its number. Usage: stream_stdin_test.sh TAPEGRAD_EXE STREAM_STDIN_EXE
set -eu
tapegrad=$1
example=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$tapegrad" train --task adding --seq 10 --hidden 8 --steps 30 --quiet --save "$dir/add.safetensors" >/dev/null
printf '# value,marker\n0.5,0\n0.25,1\n0.75,0\n0.5,1\n\n0.1,1\n0.9,1\n0.3,0\n' |
  "$example" "$dir/add.safetensors" --check >"$dir/out"
cat "$dir/out"
fail() { echo "stream_stdin_test: $*" >&2; exit 1; }
[ "$(grep -c '^step [0-9]*: [-0-9.e]*$' "$dir/out")" -eq 7 ] || fail "expected 7 'step N: y' lines"
grep -q '^step 4:' "$dir/out" && grep -q '^step 3:' "$dir/out" || fail "steps not numbered"
[ "$(grep -c '^check: sequence [12], [34] steps' "$dir/out")" -eq 2 ] || fail "expected a check of each sequence"
# the F64 model: the stream equals the runner to 1e-12 (the example exits 1 beyond it)
"$tapegrad" train --task adding --seq 10 --hidden 8 --steps 5 --dtype f64 --layers 2 --zoneout 0.2 --quiet \
  --save "$dir/add64.safetensors" >/dev/null
printf '0.5,0\n0.25,1\n0.75,0\n0.5,1\n' | "$example" "$dir/add64.safetensors" --check >"$dir/out64"
grep -q '^check: sequence 1, 4 steps' "$dir/out64" || fail "F64 check missing"
# bad input is named with its line
if printf '0.5,0\n0.5\n' | "$example" "$dir/add.safetensors" >/dev/null 2>"$dir/err"; then fail "a short line was accepted"; fi
grep -q 'line 2: expected 2 comma-separated numbers' "$dir/err" || fail "$(cat "$dir/err")"
if printf '0.5,x\n' | "$example" "$dir/add.safetensors" >/dev/null 2>"$dir/err"; then fail "a word was accepted"; fi
grep -q 'line 1: .*field 2 is not a finite number' "$dir/err" || fail "$(cat "$dir/err")"
if "$example" "$dir/missing.safetensors" </dev/null 2>"$dir/err"; then fail "a missing model was accepted"; fi
grep -q 'missing.safetensors' "$dir/err" || fail "$(cat "$dir/err")"
echo "stream_stdin_test: ok"
