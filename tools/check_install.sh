#!/usr/bin/env bash
# The installed library as a user meets it (run by tools/test.sh after the
# build in build/): headers under include/patchgrad/<room>/, the pkg-config
# file, a program that includes glibc's <error.h> beside
# <patchgrad/patchgrad.h>, only PG_API symbols exported, a versioned SONAME,
# and a shipped command that leaves malloc to the system.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR="$stage" meson install -C "$build" --quiet
pc=$(find "$stage" -name patchgrad.pc)
prefix="$stage$(sed -n 's/^prefix=//p' "$pc")"
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-variable=prefix="$prefix" --cflags --libs patchgrad)
lib=$(find "$stage" -name 'libpatchgrad.so' | head -1)
fail() { echo "install check: $*" >&2; exit 1; }

# 1. The newcomer's tour, built against the installed files alone.
cc -std=c11 -o "$stage/tiny_mlp" examples/tiny_mlp.c $flags -lm -Wl,-rpath,"$(dirname "$lib")"
"$stage/tiny_mlp" > /dev/null || fail "examples/tiny_mlp.c built against the installed library does not run"

# 2. No generic header names leak onto the include path.
cat > "$stage/both.c" <<'C'
#define _GNU_SOURCE
#include <error.h> /* glibc's */
#include <patchgrad/patchgrad.h>
int main(void) {
  error_print_progname = 0; /* glibc's error.h, not ours */
  pg_tensor *t = pg_tensor_new(PG_SHAPE(2), false);
  pg_tensor_free(t);
  return 0;
}
C
cc -std=c11 -Wall -Werror -o "$stage/both" "$stage/both.c" $flags -Wl,-rpath,"$(dirname "$lib")" \
  || fail "a program including <error.h> and <patchgrad/patchgrad.h> does not compile"
"$stage/both" || fail "the <error.h> program does not run"

# 3. The shared library exports exactly the names marked PG_API in the
#    installed headers.
readelf -d "$lib" | grep -q 'SONAME.*libpatchgrad\.so\.0' || fail "libpatchgrad.so has no SONAME libpatchgrad.so.0"
inc=$(dirname "$(find "$stage" -name patchgrad.h | head -1)")
grep -rhoE 'PG_API[^;(]*\b(pg_[A-Za-z0-9_]+)[[:space:]]*[(;[]' "$inc" \
  | grep -oE 'pg_[A-Za-z0-9_]+[[:space:]]*[(;[]' | grep -oE 'pg_[A-Za-z0-9_]+' | sort -u > "$stage/api"
nm -D --defined-only "$lib" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^_' | sort -u > "$stage/exported"
extra=$(comm -13 "$stage/api" "$stage/exported")
[ -z "$extra" ] || fail "exported but not PG_API: $(echo $extra | head -c 400)"
missing=$(comm -23 "$stage/api" "$stage/exported")
[ -z "$missing" ] || fail "PG_API in a header but not exported: $(echo $missing | head -c 400)"

# 3b. <patchgrad/patchgrad.h> includes every installed header.
for h in $(cd "$inc" && find . -name '*.h' ! -name patchgrad.h | sed 's|^\./||' | sort); do
  grep -q "#include \"patchgrad/$h\"" "$inc/patchgrad.h" || fail "patchgrad.h does not include patchgrad/$h"
done

# 4. The shipped command uses the system allocator (the counter is test-only).
if nm "$build/patchgrad" | grep -qE ' T (malloc|calloc|realloc|free)$'; then
  fail "build/patchgrad defines its own malloc"
fi
echo "install check: $(wc -l < "$stage/api") PG_API symbols exported and nothing else; SONAME libpatchgrad.so.0; <error.h> beside <patchgrad/patchgrad.h> compiles; tiny_mlp runs; build/patchgrad defines no malloc"
