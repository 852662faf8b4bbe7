#!/usr/bin/env bash
# kill -9 at random moments of a training run that saves a checkpoint after
# every step, KILLS times (default 50): after each kill the checkpoint on
# disk must load and `--resume` must continue from it (one more step, to a
# checkpoint whose step is one higher), and no temporary file of the killed
# run may survive that next save. Prints the count of kills survived; exits
# 1 at the first one that is not.
#   tools/kill9_resume.sh [KILLS]     (needs build/patchgrad)
source "$(dirname "$0")/scratch_env.sh"
kills=${1:-50}
cd "$work"
"$pg" latents --source synthetic --count 256 --size 8 --channels 4 --classes 4 --out data.h5 > /dev/null
run=(train --data data.h5 --hidden 16 --depth 1 --heads 2 --patch 2 --batch 16 --ckpt-every 1
     --cols 0 --quiet --threads 1 --out run)
step_of() { h5dump -a step "$1" 2>/dev/null | sed -n 's/^ *(0): *//p'; }

"$pg" "${run[@]}" --steps 1 > train0.log 2>&1 # the first checkpoint

survived=0
for i in $(seq 1 "$kills"); do
  "$pg" "${run[@]}" --steps 100000000 --resume run/ckpt.h5 > "train$i.log" 2>&1 &
  pid=$!
  # a random moment: 0.3 to 2.3 s into the run (loading, training, saving)
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 0.3 + 2.0 * r / 32768 }')"
  if ! kill -9 "$pid" 2>/dev/null; then
    echo "kill $i: the run had already stopped:" >&2; cat "train$i.log" >&2; exit 1
  fi
  wait "$pid" 2>/dev/null || true
  before=$(step_of run/ckpt.h5)
  [ -n "$before" ] || { echo "kill $i: run/ckpt.h5 does not load (no step)" >&2; exit 1; }
  stale=$(ls run | grep -c '\.patchgrad-[0-9]*\.tmp$' || true)
  # the checkpoint loads and the run continues from it: one more step
  if ! "$pg" "${run[@]}" --steps $((before + 1)) --resume run/ckpt.h5 > "resume$i.log" 2>&1; then
    echo "kill $i: --resume from step $before failed:" >&2; cat "resume$i.log" >&2; exit 1
  fi
  after=$(step_of run/ckpt.h5)
  if [ "$after" != $((before + 1)) ]; then
    echo "kill $i: resumed from step $before but the checkpoint now holds step $after" >&2; exit 1
  fi
  left=$(ls run | grep -c '\.patchgrad-[0-9]*\.tmp$' || true)
  if [ "$left" -ne 0 ]; then
    echo "kill $i: $left temporary file(s) left after the next save: $(ls run)" >&2; exit 1
  fi
  survived=$((survived + 1))
  echo "kill $i: checkpoint at step $before loaded, resumed to step $after ($stale stale temporary removed)"
done
echo "kill -9 survived: $survived of $kills (checkpoint loaded and --resume continued each time)"
[ "$survived" -eq "$kills" ]
