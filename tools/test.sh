#!/usr/bin/env bash
# Installs what is needed, builds patchgrad into build/ and runs every test;
# then builds again into build-sanitize/ with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs every test there, failing on any report;
# then runs the fuzz harnesses of every reader for 60 s each (tools/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} BLIS_NUM_THREADS=${BLIS_NUM_THREADS:-2}
# meson runs tests side by side on few cores: OpenMP workers that spin long
# (libgomp's default) stall each other's programs, so every test process
# spins briefly, as the patchgrad command does for itself (cli/main.c)
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}

[ -d build ] || meson setup build
meson compile -C build
meson test -C build --print-errorlogs

# The installed library as a user meets it (headers, pkg-config, exports).
tools/check_install.sh build

[ -d build-sanitize ] || meson setup build-sanitize -Db_sanitize=address,undefined \
  -Db_lundef=false -Dbuildtype=debugoptimized
meson compile -C build-sanitize
# halt_on_error makes any UBSan report fail the test that triggered it.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LSAN_OPTIONS=suppressions=$PWD/tools/lsan.supp \
  meson test -C build-sanitize --print-errorlogs --timeout-multiplier 4
# Every reader fuzzed for 60 s (libFuzzer, ASan + UBSan + LeakSanitizer, on
# the committed seed corpora): fails on any crash, leak, hang or OOM.
tools/fuzz.sh 60
# One closing line over both builds, counted from meson's own logs.
count() { grep -ho "\"result\": \"$1\"" build/meson-logs/testlog.json build-sanitize/meson-logs/testlog.json | wc -l; }
echo "tests: $(count OK) passed, $(( $(count FAIL) + $(count TIMEOUT) + $(count ERROR) )) failed"
