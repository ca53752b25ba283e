#!/usr/bin/env bash
# The layer order of docs/design.md §2 as a check: each library folder includes only headers of its
# own layer or of layers below it, public headers (include/tapegrad/*.h) included, and the examples
# include only public headers. Run by `meson test layers`; prints every offending #include with its
# file and line, and exits 1 when there is one.
# Usage: scripts/check_layers.sh [SOURCE_ROOT]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

# Bottom to top (docs/design.md §2). tools/ is the top: it may include anything.
layers=(tensor data autograd nn optim train dist tools)
declare -A rank
for i in "${!layers[@]}"; do rank[${layers[$i]}]=$i; done

# The layer of each public header: the folder that implements it. A new header needs a line here.
declare -A header_layer=(
  [config.h]=tensor [version.h]=tensor [tensor.h]=tensor [safetensors.h]=tensor
  [data.h]=data
  [autograd.h]=autograd [ops.h]=autograd
  [nn.h]=nn [loss.h]=nn [pack.h]=nn [manual.h]=nn [compare.h]=nn [memory.h]=nn [cell_lang.h]=nn [stream.h]=nn [cellmod.h]=nn
  [optim.h]=optim
  [train.h]=train [trainer.h]=train
  [dist.h]=dist
  [tapegrad.h]=tools
)

# Known exceptions, each with its reason ("FILE INCLUDE"): <tapegrad/memory.h> is one header over two
# layers (tg_mem_available / tg_mem_format / tg_mem_check in tensor/memory.c, the estimate that needs
# the cells in nn/memory.c), and tensor/ uses only its own half.
declare -A allowed=(
  ["tensor/memory.c tapegrad/memory.h"]=1 ["tensor/tensor.c tapegrad/memory.h"]=1
)

fail=0
complain() { echo "$*" >&2; fail=1; }

# "LINE:TARGET" for every #include of FILE (TARGET without its <> or "").
includes() { grep -no '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][^>"]*' "$1" | sed 's/:.*[<"]/:/' || true; }

# check FILE LAYER: every include of FILE is of LAYER or below it.
check() {
  local file=$1 layer=$2 line inc to
  while IFS=: read -r line inc; do
    [ -n "$inc" ] || continue
    case "$inc" in
      tapegrad/*)
        to=${header_layer[${inc#tapegrad/}]:-}
        if [ -z "$to" ]; then complain "$file:$line: <$inc> has no layer in scripts/check_layers.sh (header_layer)"; continue; fi ;;
      */*)
        to=${inc%%/*}
        [ -n "${rank[$to]:-}" ] || continue ;;  # a system header (<sys/stat.h>)
      *) continue ;;                            # same folder, or a system header
    esac
    if (( rank[$to] > rank[$layer] )) && [ -z "${allowed["$file $inc"]:-}" ]; then
      complain "$file:$line: $layer/ includes $inc, which is $to/: $to/ sits above $layer/ (docs/design.md §2)"
    fi
  done < <(includes "$file")
}

for h in include/tapegrad/*.h include/tapegrad/*.h.in; do
  [ -e "$h" ] || continue
  name=$(basename "$h" .in)
  layer=${header_layer[$name]:-}
  if [ -z "$layer" ]; then complain "$h has no layer in scripts/check_layers.sh (header_layer)"; continue; fi
  check "$h" "$layer"
done
n=0
for layer in "${layers[@]}"; do
  [ "$layer" = tools ] && continue
  for f in "$layer"/*.c "$layer"/*.h "$layer"/*.inc; do
    [ -e "$f" ] || continue
    check "$f" "$layer"
    n=$((n + 1))
  done
done
for f in examples/*.c; do
  while IFS=: read -r line inc; do
    case "$inc" in
      */*) [ -n "${rank[${inc%%/*}]:-}" ] && complain "$f:$line: an example includes the internal header $inc (public <tapegrad/...> only)" ;;
    esac
  done < <(includes "$f")
done
if [ $fail -ne 0 ]; then
  echo "check_layers: includes against the layer order (above)" >&2
  exit 1
fi
echo "check_layers: $n library files and ${#header_layer[@]} public headers follow ${layers[*]}"
