#!/usr/bin/env bash
# valgrind memcheck over 100 training steps of the tiny DiT (with EMA,
# validation and a checkpoint every 25 steps) and over `patchgrad check` of
# the public case file: each must end with 0 bytes definitely lost, 0 bytes
# indirectly lost and 0 errors. The only suppressions are the OpenMP and
# BLIS thread pools (tools/valgrind.supp). Prints valgrind's figures.
#   tools/leak_soak.sh [STEPS]     (needs build/patchgrad and valgrind)
THREADS=2 source "$(dirname "$0")/scratch_env.sh"
steps=${1:-100}
# the command sets this itself by executing itself again (cli/main.c), which
# would leave valgrind behind: set here, it runs under valgrind as it is
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}
command -v valgrind > /dev/null || { echo "valgrind is missing: tools/deps.sh" >&2; exit 2; }
"$pg" latents --source synthetic --count 512 --size 8 --channels 4 --classes 4 --out "$work/train.h5" > /dev/null
"$pg" latents --source synthetic --count 64 --size 8 --channels 4 --classes 4 --seed 1 --out "$work/val.h5" > /dev/null

failed=0
soak() { # NAME COMMAND...: valgrind's figures, and whether they are all 0
  local name=$1 file
  file=$work/$(printf '%s' "$1" | tr -c 'A-Za-z0-9' _)
  local log=$file.valgrind
  shift
  valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --suppressions="$PWD/tools/valgrind.supp" \
    --log-file="$log" "$@" > "$file.out" 2>&1 || true
  local definite indirect errors
  definite=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tr -d , | tail -1)
  indirect=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tr -d , | tail -1)
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tr -d , | tail -1)
  # a process without any leak prints "All heap blocks were freed"
  if grep -q "All heap blocks were freed" "$log"; then definite=${definite:-0}; indirect=${indirect:-0}; fi
  echo "$name: definitely lost ${definite:-?} bytes, indirectly lost ${indirect:-?} bytes, ${errors:-?} errors"
  if [ "${definite:-x}" != 0 ] || [ "${indirect:-x}" != 0 ] || [ "${errors:-x}" != 0 ]; then
    failed=1
    grep -A30 -E "definitely lost in|indirectly lost in|Invalid|uninitialised|Mismatched" "$log" | head -80 >&2 || true
    tail -5 "$file.out" >&2
  fi
}

soak "train ($steps steps, tiny DiT)" "$pg" train --data "$work/train.h5" --val-data "$work/val.h5" \
  --val-count 32 --hidden 16 --depth 2 --heads 2 --patch 2 --batch 16 --steps "$steps" --ema 0.99 \
  --val-every 25 --ckpt-every 25 --log-every 25 --cols 2 --sample-steps 2 --quiet --out "$work/run"
soak "check tests/data/cases-public.h5" "$pg" check tests/data/cases-public.h5
exit $failed
