#!/usr/bin/env bash
# How patchgrad's step holds up on a busy machine, and what OpenMP's wait
# policy does to it: `patchgrad bench --size SIZE --threads T` idle and
# beside N busy processes (one per core by default), for three settings of
# libgomp's worker wait (read by libgomp when the process starts):
#   default    libgomp's own (spin ~300k iterations, then sleep)
#   spin10k    GOMP_SPINCOUNT=10000 (spin briefly, then sleep)
#   passive    OMP_WAIT_POLICY=passive (sleep at once)
# alternating the settings ROUNDS times; prints each setting's median step
# (ms, min-max over the rounds), idle and busy, and the throughput kept.
#   tools/contention.sh [SIZE small] [THREADS 2] [BUSY 2] [ROUNDS 2]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-small} threads=${2:-2} busy=${3:-2} rounds=${4:-2}
pg=build/patchgrad
step() { # ENV... -> the median step (ms) of one bench run
  env "$@" "$pg" bench --size "$size" --threads "$threads" --json | sed -n 's/.*"step_median_ms": \([0-9.]*\).*/\1/p'
}
declare -A idle contended
settings="default spin10k passive"
envs_default="PG_CONTENTION=1" envs_spin10k="GOMP_SPINCOUNT=10000" envs_passive="OMP_WAIT_POLICY=passive"
for r in $(seq "$rounds"); do
  for s in $settings; do
    e="envs_$s"
    idle[$s]+="$(step "${!e}") "
  done
  pids=()
  for _ in $(seq "$busy"); do sh -c 'while :; do :; done' & pids+=($!); done
  for s in $settings; do
    e="envs_$s"
    contended[$s]+="$(step "${!e}") "
  done
  kill "${pids[@]}"
done
stats() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.1f (%.1f-%.1f)", m, v[1], v[NR]}'; }
echo "| wait policy | idle step ms | step ms beside $busy busy processes | throughput kept |"
echo "|---|---:|---:|---:|"
for s in $settings; do
  i=$(echo "${idle[$s]}" | stats) c=$(echo "${contended[$s]}" | stats)
  kept=$(awk -v a="${i%% *}" -v b="${c%% *}" 'BEGIN {printf "%.0f%%", 100 * a / b}')
  echo "| $s | $i | $c | $kept |"
done
