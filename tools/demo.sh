#!/usr/bin/env bash
# The main job: installs what is needed, builds into build/ and runs the
# demo. (Until the DiT trainer lands, the demo is the two-layer network of
# examples/tiny_mlp.c.)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh --demo
[ -d build ] || meson setup build
meson compile -C build
./build/examples/tiny_mlp
