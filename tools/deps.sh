#!/usr/bin/env bash
# Installs the Debian 12 packages patchgrad needs to build, test and run its
# demo. Safe to run again; skipped packages are those already present.
set -euo pipefail
PKGS="gcc meson ninja-build pkg-config libblis-dev libcmocka-dev libhdf5-dev hdf5-tools
      libpng-dev zlib1g-dev libjpeg62-turbo-dev libstb-dev liblapacke-dev libdnnl-dev libopenmpi-dev
      openmpi-bin"
# The fuzz harnesses (tools/fuzz.sh: clang's libFuzzer and OpenMP runtime)
# and the leak soak (tools/leak_soak.sh: valgrind).
PKGS="$PKGS clang-14 libclang-rt-14-dev libomp-14-dev valgrind"
if [ "${1:-}" = "--demo" ]; then PKGS="$PKGS dataset-fashion-mnist"; fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  # dataset-fashion-mnist is optional: the demo falls back to synthetic data.
  $SUDO apt-get install -y $missing || $SUDO apt-get install -y ${missing//dataset-fashion-mnist/}
fi
