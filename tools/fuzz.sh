#!/usr/bin/env bash
# The libFuzzer harnesses of every reader (tests/fuzz: latent files,
# checkpoints, case files through `patchgrad check`, IDX files, PNG and JPEG
# images as `latents --source images` reads them), built with
# clang, AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer into
# build-fuzz/, each run for SECONDS (default 60) on a scratch copy of its
# committed seed corpus (tests/fuzz/corpus/<name>). Fails on any crash,
# sanitizer report, leak, timeout (30 s an input) or out-of-memory (2 GB),
# keeping the input under build-fuzz/crashes/; prints the executions of each.
#
#   tools/fuzz.sh [SECONDS]        build and run every harness
#   tools/fuzz.sh --seeds          rewrite the seed corpora (small valid files)
#   tools/fuzz.sh --run-one EXE CORPUS   one harness (the meson test 'fuzz_*')
#
# Reproduce a crash: build-fuzz/tests/fuzz/fuzz_NAME build-fuzz/crashes/FILE
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tools/lsan-fuzz.supp}
harnesses="latents checkpoint casefile idx image"

run_one() { # EXE CORPUS: prints "NAME: N executions, ..." and fails on a crash
  local exe=$1 corpus=$2 name work log
  name=$(basename "$exe")
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  mkdir -p "$work/corpus" "$root/build-fuzz/crashes"
  cp "$corpus"/* "$work/corpus/"
  log="$work/log"
  local rc=0
  "$exe" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=65536 -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" > "$log" 2>&1 || rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  local found
  found=$(find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
          -o -name 'oom-*' \) | head -1)
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    [ -n "$found" ] && cp "$found" "$root/build-fuzz/crashes/$name-$(basename "$found")"
    grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ ' "$log" | head -40 >&2 || tail -40 "$log" >&2
    echo "$name: FAILED after ${execs:-?} executions (exit $rc; input kept in build-fuzz/crashes/)" >&2
    return 1
  fi
  echo "$name: ${execs:-0} executions, 0 crashes, corpus $(ls "$work/corpus" | wc -l) inputs"
}

build() {
  if [ ! -d build-fuzz ]; then
    CC=$(command -v clang-14 || command -v clang) meson setup build-fuzz -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbuildtype=debugoptimized > /dev/null
  fi
  # quiet when it builds; the compiler's output when it does not
  if ! meson compile -C build-fuzz $(for h in $harnesses; do echo "fuzz_$h"; done) > build-fuzz/compile.log 2>&1; then
    cat build-fuzz/compile.log >&2
    echo "fuzz: building the harnesses failed (above)" >&2
    return 1
  fi
}

case "${1:-}" in
  --run-one) run_one "$2" "$3" ;;
  --seeds)
    build
    for h in $harnesses; do
      rm -rf "tests/fuzz/corpus/$h" && mkdir -p "tests/fuzz/corpus/$h"
      PG_FUZZ_MAKE_SEEDS="$root/tests/fuzz/corpus/$h" PG_FUZZ_CASES="$root/tests/data" \
        "build-fuzz/tests/fuzz/fuzz_$h"
      echo "tests/fuzz/corpus/$h: $(ls "tests/fuzz/corpus/$h" | wc -l) seeds, $(du -sk "tests/fuzz/corpus/$h" | cut -f1) KB"
    done ;;
  *)
    export FUZZ_SECONDS=${1:-60}
    build
    failed=0
    for h in $harnesses; do
      run_one "$root/build-fuzz/tests/fuzz/fuzz_$h" "$root/tests/fuzz/corpus/$h" || failed=1
    done
    exit $failed ;;
esac
