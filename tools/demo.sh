#!/usr/bin/env bash
# The main job: installs what is needed, builds into build/, makes the
# Fashion-MNIST latents (synthetic shapes when Debian's dataset-fashion-mnist
# cannot be installed), trains a class-conditional DiT for about ten minutes
# on 2 cores, and writes sample images and the loss curve into out/.
# Override the length with STEPS=N tools/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh --demo
[ -d build ] || meson setup build
meson compile -C build
mkdir -p out
PG=build/patchgrad
if [ -d /usr/share/datasets/fashion-mnist ]; then
  [ -f out/train.h5 ] || $PG latents --source fashion-mnist --split train --out out/train.h5
  [ -f out/test.h5 ] || $PG latents --source fashion-mnist --split test --out out/test.h5
else
  echo "demo: dataset-fashion-mnist is not installed; using synthetic shapes instead"
  [ -f out/train.h5 ] || $PG latents --source synthetic --count 60000 --size 16 --out out/train.h5
  [ -f out/test.h5 ] || $PG latents --source synthetic --count 2000 --size 16 --seed 1 --out out/test.h5
fi
# The `small` model (hidden 128, depth 4, heads 4, patch 2; 1.3M parameters)
# with AdamW 5e-4 after a short warmup, batch 64; samples from the raw weights
# (an EMA of 0.999 still lags far behind in a run this short).
$PG train --data out/train.h5 --val-data out/test.h5 --size small --optim adamw \
  --lr 5e-4 --warmup 200 --steps "${STEPS:-5000}" --batch 64 \
  --val-every 250 --ckpt-every 1000 --threads 2 --seed 0 --out out/run \
  --cols 8 --sample-steps 50 --cfg 4
echo
echo "demo: samples:     out/run/samples.png  (one row per class, DDIM 50 steps, guidance 4)"
echo "demo: loss curve:  out/run/loss.png     (and out/run/loss.csv)"
echo "demo: checkpoint:  out/run/ckpt.h5      (patchgrad sample --ckpt out/run/ckpt.h5 --out more.png)"
