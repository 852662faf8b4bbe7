#!/usr/bin/env bash
# A graceful stop of `patchgrad train` on 2 ranks: SIGUSR1 to mpirun, which
# OpenMPI forwards to every rank without aborting the job (SIGTERM and
# Ctrl-C make mpirun abort it: docs/distributed.md). The ranks finish their
# step, rank 0 writes one complete checkpoint, every rank exits 138, and a
# single process resumes from the checkpoint.
#   tests/mpi_stop.sh MPIRUN PATCHGRAD
set -euo pipefail
mpirun=$1 pg=$2
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$pg" latents --source synthetic --count 64 --size 8 --classes 4 --out "$d/t.h5" > /dev/null
run=(--data "$d/t.h5" --hidden 16 --depth 1 --batch 16 --cols 0 --threads 1 --quiet)
"$mpirun" -n 2 --oversubscribe --allow-run-as-root --bind-to none \
  "$pg" train "${run[@]}" --steps 1000000 --out "$d/r" > "$d/out" 2>&1 &
pid=$!
for _ in $(seq 600); do # until training has started (init.h5 is written before the first step)
  [ -f "$d/r/init.h5" ] && break
  sleep 0.1
done
sleep 2
kill -USR1 "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 138 ] || { echo "mpirun exited $rc after SIGUSR1 (138 expected)" >&2; cat "$d/out"; exit 1; }
cat "$d/out"
[ -f "$d/r/ckpt.h5" ] || { echo "no checkpoint after SIGUSR1" >&2; exit 1; }
step=$(h5dump -a step "$d/r/ckpt.h5" | sed -n 's/^ *(0): //p')
echo "checkpoint at step $step"
[ "$step" -ge 1 ] || { echo "the checkpoint's step is $step after 2 s of training" >&2; exit 1; }
"$pg" train "${run[@]}" --steps $((step + 2)) --out "$d/r" --resume "$d/r/ckpt.h5" | grep "^step $((step + 2)): train loss"
