#!/usr/bin/env bash
# Flips one bit in every STRIDE-th byte (default 7) of a checkpoint and of a
# latent file that patchgrad writes, one copy at a time, and gives each copy
# to the command that reads it: `train --resume` for the checkpoint (which
# loads every part: parameters, EMA, optimizer state, generator, loader) and
# `train --data` for the latent file (which validates and reads every
# sample). Counts how each copy ends: refused with a message, accepted (a
# byte nothing reads), crashed (a signal) or hung (30 s). Fails on any crash
# or hang.
#   tools/flip_bytes.sh [STRIDE]     (needs build/patchgrad)
source "$(dirname "$0")/scratch_env.sh"
stride=${1:-7}
cd "$work"
"$pg" latents --source synthetic --count 16 --size 4 --channels 4 --classes 2 --out data.h5 > /dev/null
model=(--hidden 8 --depth 1 --heads 2 --patch 2 --batch 8 --cols 0 --quiet --threads 1)
"$pg" train --data data.h5 "${model[@]}" --ema 0.9 --steps 2 --out run > /dev/null

flip() { # FILE OFFSET -> flipped.h5
  cp "$1" flipped.h5
  local byte
  byte=$(od -A n -t u1 -j "$2" -N 1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((byte ^ 16)))" | dd of=flipped.h5 bs=1 seek="$2" conv=notrunc status=none
}

failed=0
trial() { # NAME FILE COMMAND...: every STRIDE-th byte of FILE flipped in turn
  local name=$1 file=$2 size refused=0 accepted=0 crashed=0 hung=0
  shift 2
  size=$(stat -c %s "$file")
  for ((i = 0; i < size; i += stride)); do
    flip "$file" "$i"
    local rc=0
    timeout -s KILL 30 "$@" > out.txt 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then accepted=$((accepted + 1))
    elif [ "$rc" -eq 137 ]; then hung=$((hung + 1)); echo "$name: byte $i: hung" >&2
    elif [ "$rc" -gt 128 ]; then crashed=$((crashed + 1)); echo "$name: byte $i: signal $((rc - 128))" >&2
    else refused=$((refused + 1)); fi
  done
  echo "$name ($size bytes, one byte in $stride flipped): $refused refused, $accepted accepted, $crashed crashed, $hung hung"
  [ $((crashed + hung)) -eq 0 ] || failed=1
}

trial checkpoint run/ckpt.h5 "$pg" train --data data.h5 "${model[@]}" --ema 0.9 --steps 3 \
  --resume flipped.h5 --out resumed
trial "latent file" data.h5 "$pg" train --data flipped.h5 "${model[@]}" --steps 1 --out fromflipped
exit $failed
