# Sourced by the scripts that run build/patchgrad on scratch files
# (kill9_resume.sh, flip_bytes.sh, leak_soak.sh): moves to the repository,
# sets $pg to the built command (or stops with status 2 saying how to build
# it), runs OpenMP and BLIS on THREADS threads (default 1) without spinning,
# and makes $work, a scratch folder removed at exit (with any job left).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[1]}")/.."
pg=$PWD/build/patchgrad
[ -x "$pg" ] || { echo "build/patchgrad is missing: meson setup build && meson compile -C build" >&2; exit 2; }
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=${THREADS:-1} BLIS_NUM_THREADS=${THREADS:-1}
work=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
