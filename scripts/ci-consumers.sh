#!/usr/bin/env bash
# tapegrad as another project sees it (CI runs this from .ci/run): from a copy of this tree,
#   1. `meson install` into a prefix, then tests/consumers/app.c compiled through pkg-config
#      (shared and static) and as C++;
#   2. the CMake project tests/consumers/cmake against that prefix (find_package(tapegrad 0.1),
#      tapegrad::tapegrad and tapegrad::tapegrad_static), and a request for 0.2 that must fail;
#   3. the Meson project tests/consumers/meson with tapegrad under subprojects/ and a plain
#      dependency('tapegrad'): only the library is built, Criterion is never looked up, and the
#      parent's `meson test` runs the parent's test alone.
# Every app run checks one gradient and that headers and library agree on the version.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TG_NEED_CRITERION=0 TG_NEED_CMAKE=1 bash "$root/scripts/deps.sh"
work=$(mktemp -d)
[ -n "${TG_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
fail() { echo "ci-consumers: $*" >&2; exit 1; }

# a clean copy of the sources: tracked and new (not ignored) files, no build directories
src=$work/tapegrad
mkdir -p "$src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' \
    | tar --null -T - -cf -) | tar -C "$src" -xf -
else
  (cd "$root" && tar --exclude='./build*' -cf - .) | tar -C "$src" -xf -
fi

echo "== 1. meson install, pkg-config"
prefix=$work/prefix
# (debug builds: -O0 compiles in a fraction of the time, and what is checked here is the packaging)
meson setup "$work/build" "$src" --prefix="$prefix" --buildtype=debug -Dtests=false -Dtools=false >/dev/null
ninja -C "$work/build" >/dev/null
meson install -C "$work/build" >/dev/null
libdir=$(meson introspect "$work/build" --buildoptions | python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"][0])')
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
[ "$(pkg-config --modversion tapegrad)" = "$(meson introspect "$work/build" --projectinfo | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')" ] \
  || fail "pkg-config version differs from the project version"
cc -std=c11 -o "$work/app_pc" "$src/tests/consumers/app.c" $(pkg-config --cflags --libs tapegrad) -lm
LD_LIBRARY_PATH=$prefix/$libdir "$work/app_pc"
readelf -d "$work/app_pc" | grep -q 'NEEDED.*libtapegrad\.so\.[0-9]' || fail "app_pc does not need a versioned libtapegrad.so.N"
cc -std=c11 -o "$work/app_pc_static" "$src/tests/consumers/app.c" $(pkg-config --cflags tapegrad) \
  "$(pkg-config --variable=libdir tapegrad)/libtapegrad.a" -lm -lpthread
"$work/app_pc_static"
if readelf -d "$work/app_pc_static" | grep -q 'NEEDED.*libtapegrad'; then fail "app_pc_static needs the shared library"; fi
if command -v c++ >/dev/null; then
  c++ -x c++ -o "$work/app_cxx" "$src/tests/consumers/app.c" $(pkg-config --cflags --libs tapegrad)
  LD_LIBRARY_PATH=$prefix/$libdir "$work/app_cxx"
fi

echo "== 2. CMake: find_package(tapegrad 0.1) against the prefix"
cmake -S "$src/tests/consumers/cmake" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
"$work/cmake-build/app_shared"
"$work/cmake-build/app_static"
readelf -d "$work/cmake-build/app_shared" | grep -q 'NEEDED.*libtapegrad\.so\.[0-9]' || fail "app_shared does not need libtapegrad.so.N"
if readelf -d "$work/cmake-build/app_static" | grep -q 'NEEDED.*libtapegrad'; then fail "app_static needs the shared library"; fi
if cmake -S "$src/tests/consumers/cmake" -B "$work/cmake-build-02" -DCMAKE_PREFIX_PATH="$prefix" \
     -DTG_WANT_VERSION=0.2 >"$work/cmake-02.log" 2>&1; then
  fail "find_package(tapegrad 0.2) accepted version $(pkg-config --modversion tapegrad)"
fi
grep -q 'tapegrad' "$work/cmake-02.log" || fail "find_package(tapegrad 0.2) failed without naming tapegrad"

echo "== 3. Meson: tapegrad under subprojects/, plain dependency('tapegrad')"
app=$work/meson-app
mkdir -p "$app/subprojects"
cp "$src/tests/consumers/meson/meson.build" "$src/tests/consumers/app.c" "$app/"
ln -s "$src" "$app/subprojects/tapegrad"
# (no PKG_CONFIG_PATH to the prefix above: the dependency must come from subprojects/tapegrad)
env -u PKG_CONFIG_PATH meson setup "$app/build" "$app" --buildtype=debug >/dev/null
# (tapegrad_kernels_*: the per-CPU-target kernel builds that go into the two libraries, not installed;
#  tg_op_list.h: the op list autograd/gen_op_list.py generates for the library's own sources)
targets=$(meson introspect "$app/build" --targets | python3 -c 'import json,sys; print(" ".join(sorted(t["name"] for t in json.load(sys.stdin) if not t["name"].startswith("tapegrad_kernels_") and t["name"] != "tg_op_list.h")))')
[ "$targets" = "app tapegrad tapegrad" ] || fail "the parent build has targets '$targets' (want the app and tapegrad's two libraries)"
if grep -qi criterion "$app/build/meson-logs/meson-log.txt"; then fail "the parent's configure looked for Criterion"; fi
tests=$(meson test -C "$app/build" --list 2>/dev/null | grep -v "^ninja:" | tr '\n' ' ')
[ "$tests" = "app " ] || fail "the parent's meson test lists '$tests' (want only 'app')"
meson test -C "$app/build" --print-errorlogs >/dev/null
"$app/build/app"
echo "ci-consumers: pkg-config (shared, static, C++), CMake (shared, static, version check) and Meson subproject all build and run"
