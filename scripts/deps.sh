#!/usr/bin/env bash
# Installs what building and testing tapegrad needs on Debian/Ubuntu, only when it is missing:
# a C compiler, meson, ninja, pkg-config, Criterion (cmake too with TG_NEED_CMAKE=1, clang and libFuzzer with TG_NEED_FUZZ=1) and Open MPI (for the
# data-parallel build and its tests; TG_NEED_MPI=0 skips it, and tapegrad then builds without MPI). Uses sudo when not root.
# Opt-in, for the benchmarks only (the tests never need them): TG_NEED_DATA=1 installs dataset-fashion-mnist
# (bench/fashion_mnist.sh) and copies the yearly sunspot numbers out of Debian's python3-statsmodels package
# (apt-get download + dpkg-deb, without installing it and its ~90 dependencies) to bench-out/data/sunspots.csv
# (bench/sunspots.sh).
set -euo pipefail
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v meson >/dev/null 2>&1 || missing+=(meson)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ "${TG_NEED_CRITERION:-1}" = 1 ] && ! pkg-config --exists criterion 2>/dev/null; then
  missing+=(libcriterion-dev)
fi
# cmake only for scripts/ci-consumers.sh (the CMake package check): TG_NEED_CMAKE=1
if [ "${TG_NEED_CMAKE:-0}" = 1 ] && ! command -v cmake >/dev/null 2>&1; then
  missing+=(cmake)
fi
if [ "${TG_NEED_MPI:-1}" = 1 ] && { ! command -v mpirun >/dev/null 2>&1 || ! pkg-config --exists ompi-c 2>/dev/null; }; then
  missing+=(libopenmpi-dev openmpi-bin)
fi
if [ "${TG_NEED_DATA:-0}" = 1 ] && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  missing+=(dataset-fashion-mnist)
fi
# clang with libFuzzer for scripts/fuzz.sh (the fuzz stage of .ci/run): TG_NEED_FUZZ=1
if [ "${TG_NEED_FUZZ:-0}" = 1 ]; then
  command -v clang >/dev/null 2>&1 || missing+=(clang)
  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || missing+=(libclang-rt-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "tapegrad: installing ${missing[*]} with apt-get" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q "${missing[@]}" >/dev/null
fi
sunspots="$(cd "$(dirname "$0")/.." && pwd)/bench-out/data/sunspots.csv"
if [ "${TG_NEED_DATA:-0}" = 1 ] && [ ! -f "$sunspots" ]; then
  mkdir -p "$(dirname "$sunspots")"
  inside=usr/lib/python3/dist-packages/statsmodels/datasets/sunspots/sunspots.csv
  if [ -f "/$inside" ]; then
    cp "/$inside" "$sunspots"
  else
    echo "tapegrad: copying sunspots.csv out of python3-statsmodels (apt-get download, not installed)" >&2
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q python3-statsmodels >/dev/null 2>&1 && dpkg-deb -x python3-statsmodels_*.deb x)
    cp "$tmp/x/$inside" "$sunspots"
    rm -rf "$tmp"
  fi
fi
