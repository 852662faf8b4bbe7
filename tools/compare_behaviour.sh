#!/usr/bin/env bash
# tools/compare_behaviour.sh OLD_BINARY NEW_BINARY
#
# Runs the same list of `patchgrad` invocations (every subcommand, its main
# flags, its error paths and --help) with two builds of the command and says,
# per invocation, whether the two behave the same: exit code, stdout and
# stderr (after masking the figures that depend on time, listed at the start
# of the output) and every file written (h5diff for .h5, cmp for the others;
# CSV files whose last column is `seconds` are compared with that column
# masked). docs/behaviour_check.md says what it covers and how to run it
# against an earlier commit.
#
# Each invocation runs in a fresh, empty folder, at the same absolute path
# for OLD and NEW (the folder is moved aside after each run), with the same
# arguments and environment (env -i: PATH, HOME, LC_ALL=C, TZ=UTC,
# OMP_NUM_THREADS, BLIS_NUM_THREADS, OMP_WAIT_POLICY=passive). Inputs come
# from the folder `in` (a link in every run folder): the repository's
# tests/data/*.h5 and files an earlier invocation of the OLD binary wrote, so
# both binaries read the same bytes, a difference shows at the first
# invocation that makes it, and the new binary is shown to read the old one's
# files.
#
# Environment:
#   PG_COMPARE_THREADS  threads for OpenMP, BLIS and --threads (default 1)
#   PG_COMPARE_KEEP=1   keep the work folder even when everything is the same
#   PG_COMPARE_TIMEOUT  seconds allowed per invocation (default 120)
#   PG_COMPARE_FMNIST   Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)
# Exit status: 0 when every invocation is the same, 1 otherwise, 2 on bad use.
set -u

if [ $# -ne 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
  echo "usage: $0 OLD_BINARY NEW_BINARY   (two executable patchgrad builds)" >&2
  exit 2
fi
for tool in h5diff cmp diff sed timeout find; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (h5diff: apt-get install hdf5-tools)" >&2; exit 2; }
done

OLD=$(realpath "$1")
NEW=$(realpath "$2")
REPO=$(cd "$(dirname "$0")/.." && pwd)
T=${PG_COMPARE_THREADS:-1}
TIMEOUT=${PG_COMPARE_TIMEOUT:-120}
FMNIST=${PG_COMPARE_FMNIST:-/usr/share/datasets/fashion-mnist}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg-compare.XXXXXX")
RUN=$WORK/run # where every invocation runs, for OLD and NEW alike
mkdir -p "$WORK/in" "$WORK/old" "$WORK/new" "$WORK/home" "$WORK/diff"
cp "$REPO"/tests/data/*.h5 "$WORK/in/"

# ---- masks --------------------------------------------------------------
# Each mask: a sed -E expression, then what it hides. TIME_MASKS apply to the
# stdout and stderr of every invocation; BENCH_MASKS to `bench` only.
TIME_MASKS=(
  's#steps/s [0-9.]+#steps/s <N>#g'                 "train progress line: 'steps/s 76.1'"
  's#[0-9.]+ steps/s#<N> steps/s#g'                 "train/classify summaries and progress: '41.1 steps/s'"
  's# eta ([0-9]+h[0-9]+m|[0-9]+m[0-9]+s|[0-9]+s|\?)# eta <T>#g' "train progress line: 'eta 1m02s'"
  's#, [0-9]+ s at #, <N> s at #'                   "classify train result: ', 3 s at'"
  's# in [0-9]+ s \(# in <N> s (#'                  "classify train summary: 'in 3 s ('"
)
BENCH_MASKS=(
  's#^(forward|backward|optimizer|step)( +[0-9.]+)+$#\1 <ms ms ms>#' "bench phase table: median/min/max ms"
  's#[0-9.]+ ms#<N> ms#g'                           "bench: any 'X ms' (CPU time, GEMM floor rows and total)"
  's#[0-9.]+ GFLOP/s#<N> GFLOP/s#g'                 "bench: any 'X GFLOP/s' (rates; the GFLOP per step stays)"
  's#[0-9.]+ page faults#<N> page faults#'          "bench: page faults per step"
  's#peak RSS +[0-9.]+ MiB#peak RSS <N> MiB#'       "bench: peak RSS (the arena size after it stays)"
  's#[0-9.]+x the GEMM floor#<N>x the GEMM floor#'  "bench --floor: step/floor ratio"
  's#= [0-9]+% of#= <N>% of#'                       "bench --floor: percent of BLIS's rate"
  's#^heap allocations during the timed steps: .*#heap allocations during the timed steps: <masked>#' \
    "bench: the allocation count line (only the test build build/tests/patchgrad_counted counts; the shipped command says not counted)"
  's#"(forward_ms|backward_ms|optimizer_ms|step_median_ms|step_min_ms|step_max_ms|gflops|cpu_ms_per_step|peak_rss_mib|allocations|floor_ms|floor_attention_ms|blis_gflops)": [-0-9.e+]+#"\1": <N>#g' \
    "bench --json: the timing, RSS and allocation fields (size, threads, steps, gflop stay)"
)
PATH_MASK="s#$WORK#<WORK>#g" # the work folder (the same for OLD and NEW anyway)

sed_script() { # sed_script FILE MASK... : the expressions (even entries) into FILE
  local f=$1
  shift
  : >"$f"
  while [ $# -gt 0 ]; do
    printf '%s\n' "$1" >>"$f"
    shift 2
  done
  printf '%s\n' "$PATH_MASK" >>"$f"
}
sed_script "$WORK/time.sed" "${TIME_MASKS[@]}"
sed_script "$WORK/bench.sed" "${TIME_MASKS[@]}" "${BENCH_MASKS[@]}"

print_masks() {
  while [ $# -gt 0 ]; do
    printf '  %-60s %s\n' "$2" "$1"
    shift 2
  done
}
echo "compare_behaviour: OLD $OLD"
echo "                   NEW $NEW"
echo "work folder $WORK; threads $T (OMP_NUM_THREADS, BLIS_NUM_THREADS, --threads), OMP_WAIT_POLICY=passive"
echo "masks on stdout/stderr of every invocation (sed -E):"
print_masks "${TIME_MASKS[@]}"
echo "  and the work folder path -> <WORK>"
echo "masks on bench's stdout/stderr in addition:"
print_masks "${BENCH_MASKS[@]}"
echo "files: .h5 by h5diff (data and attributes, NaN = NaN), others by cmp; a CSV whose"
echo "  header ends in ',seconds' is compared with that last column masked (wall-clock time)"
[ -d "$FMNIST" ] || echo "note: $FMNIST is missing: the fashion-mnist invocations compare the error path only"
echo

# ---- running ------------------------------------------------------------
PASSED=0
FAILED=0
COUNT=0
SETUP=""   # shell commands run in the fresh folder before the invocation
MASK="time" # which sed script cleans stdout/stderr: time or bench

run_side() { # run_side BINARY DEST ARGS... : one invocation, its folder moved to DEST
  local bin=$1 dest=$2
  shift 2
  rm -rf "$RUN"
  mkdir -p "$RUN"
  ln -s "$WORK/in" "$RUN/in"
  if [ -n "$SETUP" ]; then (cd "$RUN" && eval "$SETUP") || echo "setup failed: $SETUP" >"$dest.setup"; fi
  local extra=()
  [ -n "${LD_LIBRARY_PATH:-}" ] && extra+=("LD_LIBRARY_PATH=$LD_LIBRARY_PATH")
  (cd "$RUN" && env -i PATH=/usr/bin:/bin HOME="$WORK/home" LC_ALL=C TZ=UTC \
    OMP_NUM_THREADS="$T" BLIS_NUM_THREADS="$T" OMP_WAIT_POLICY=passive "${extra[@]}" \
    timeout "$TIMEOUT" "$bin" "$@" >"$dest.stdout" 2>"$dest.stderr" </dev/null)
  echo $? >"$dest.rc"
  sed -E -f "$WORK/$MASK.sed" "$dest.stdout" >"$dest.stdout.masked"
  sed -E -f "$WORK/$MASK.sed" "$dest.stderr" >"$dest.stderr.masked"
  mv "$RUN" "$dest"
}

csv_seconds_masked() { # the CSV with its last column masked when it is `seconds`
  if head -n 1 "$1" | grep -q ',seconds$'; then sed -E '2,$ s/,[^,]*$/,<seconds>/' "$1"; else cat "$1"; fi
}

h5_summary() { # what h5diff finds between two HDF5 files, in a few words
  local v
  v=$(h5diff -v "$1" "$2" 2>&1)
  local only
  only=$(printf '%s\n' "$v" | sed -nE 's#^ +x +(/[^ ]*) *$#\1 in one file only; #p' | head -n 3 | tr '\n' ' ')
  local objs
  objs=$(h5diff -r "$1" "$2" 2>&1 | awk '/^(dataset|attribute|group)/ {o=$0} /differences found/ && $1 != "0" {print o " (" $1 ")"}' | head -n 3 | tr '\n' ' ')
  printf '%s%s' "$only" "${objs:-attributes or layout differ}"
}

compare_files() { # compare_files OLD_DIR NEW_DIR : problems on stdout, one a line
  local o=$1 n=$2
  local lo ln
  lo=$(cd "$o" && find . -mindepth 1 -path ./in -prune -o -printf '%y %P\n' | LC_ALL=C sort)
  ln=$(cd "$n" && find . -mindepth 1 -path ./in -prune -o -printf '%y %P\n' | LC_ALL=C sort)
  if [ "$lo" != "$ln" ]; then
    echo "files written: $(diff <(printf '%s\n' "$lo") <(printf '%s\n' "$ln") | sed -nE 's/^([<>]) [a-z] /\1 /p' | sed 's/^</old only:/; s/^>/new only:/' | tr '\n' ' ')"
  fi
  local kind f
  while read -r kind f; do
    [ "$kind" = f ] || continue
    [ -f "$n/$f" ] || continue
    case "$f" in
      *.h5)
        if ! h5diff -q "$o/$f" "$n/$f" >/dev/null 2>&1; then
          echo "$f: h5diff: $(h5_summary "$o/$f" "$n/$f")"
        fi
        ;;
      *.csv)
        if cmp -s "$o/$f" "$n/$f"; then
          :
        elif diff -q <(csv_seconds_masked "$o/$f") <(csv_seconds_masked "$n/$f") >/dev/null; then
          echo "#masked" # the same but for the seconds column
        else
          echo "$f: $(diff <(csv_seconds_masked "$o/$f") <(csv_seconds_masked "$n/$f") | grep -m 2 '^[<>]' | tr '\n' ' ')"
        fi
        ;;
      *)
        cmp -s "$o/$f" "$n/$f" || echo "$f: $(cmp "$o/$f" "$n/$f" 2>&1 | head -n 1)"
        ;;
    esac
  done <<<"$lo"
}

inv() { # inv NAME ARGS... : run with OLD and NEW, compare, print one line
  local name=$1
  shift
  COUNT=$((COUNT + 1))
  local id
  id=$(printf '%02d-%s' "$COUNT" "$name")
  local o=$WORK/old/$id n=$WORK/new/$id
  run_side "$OLD" "$o" "$@"
  run_side "$NEW" "$n" "$@"
  local problems=() rco rcn
  rco=$(cat "$o.rc")
  rcn=$(cat "$n.rc")
  [ -e "$o.setup" ] && problems+=("old $(cat "$o.setup")")
  [ -e "$n.setup" ] && problems+=("new $(cat "$n.setup")")
  [ "$rco" = "$rcn" ] || problems+=("exit code $rco vs $rcn")
  local s masked=""
  for s in stdout stderr; do
    cmp -s "$o.$s" "$n.$s" || masked=" after masks"
    if ! cmp -s "$o.$s.masked" "$n.$s.masked"; then
      diff "$o.$s.masked" "$n.$s.masked" >"$WORK/diff/$id.$s.diff"
      problems+=("$s: $(grep -m 2 '^[<>]' "$WORK/diff/$id.$s.diff" | tr '\n' ' ')")
    fi
  done
  local line
  while IFS= read -r line; do
    if [ "$line" = "#masked" ]; then masked=" after masks"; elif [ -n "$line" ]; then problems+=("$line"); fi
  done < <(compare_files "$o" "$n")
  if [ ${#problems[@]} -eq 0 ]; then
    PASSED=$((PASSED + 1))
    printf '%-34s same%s (exit %s)\n' "$id" "$masked" "$rco"
  else
    FAILED=$((FAILED + 1))
    local joined
    joined=$(printf '%s; ' "${problems[@]}")
    printf '%-34s DIFFERS: %s\n' "$id" "${joined%; }"
    printf '%-34s   command: patchgrad %s\n' "" "$*"
  fi
  SETUP=""
  MASK="time"
}

promote() { # promote NAME PATH [AS] : a file or folder the OLD run wrote becomes an input
  local src
  for src in "$WORK"/old/[0-9][0-9]-"$1"; do :; done
  if [ -e "$src/$2" ]; then
    cp -r "$src/$2" "$WORK/in/${3:-$(basename "$2")}"
  else
    echo "note: $1 wrote no $2 with the OLD binary; later invocations that read it compare the error path"
  fi
}

# ---- the invocations ----------------------------------------------------
TINY=(--size tiny --batch 16 --threads "$T")

# the front door
inv top-help --help
inv top-noargs
inv top-version version
inv top-unknown frobnicate

# latents
inv latents-help latents --help
inv latents-syn latents --source synthetic --out syn.h5 --count 256 --size 8 --classes 4 --preview syn.png
promote latents-syn syn.h5
inv latents-syn-val latents --source synthetic --out synval.h5 --count 64 --size 8 --classes 4 --seed 1
promote latents-syn-val synval.h5
inv latents-syn-shape latents --source synthetic --out odd.h5 --count 40 --size 12 --channels 3 --classes 40 --seed 7 --preview odd.png
inv latents-fm-train latents --source fashion-mnist --count 300 --out fm.h5 --preview fm.png --dir "$FMNIST"
promote latents-fm-train fm.h5
inv latents-fm-test latents --source fashion-mnist --split test --count 100 --out fmtest.h5
promote latents-fm-test fmtest.h5
inv latents-err-fm-dir latents --source fashion-mnist --dir nowhere --count 10 --out x.h5
inv latents-err-split latents --source fashion-mnist --split validation --count 10 --out x.h5
inv latents-err-noout latents --source synthetic
inv latents-err-source latents --source imagenet --out x.h5
inv latents-err-count latents --source synthetic --out x.h5 --count 0
inv latents-err-novalue latents --source synthetic --out
inv latents-err-unknown latents --source synthetic --out x.h5 --colour red

# train
inv train-help train --help
inv train-adamw-val train --data in/syn.h5 --val-data in/synval.h5 --val-count 32 "${TINY[@]}" --steps 6 \
  --log-every 2 --val-every 3 --ckpt-every 4 --cols 2 --sample-steps 5 --out r1
promote train-adamw-val r1
SETUP="cp -r in/r1 out"
inv train-resume train --data in/syn.h5 --val-data in/synval.h5 --val-count 32 "${TINY[@]}" --steps 9 \
  --log-every 2 --val-every 3 --cols 1 --sample-steps 3 --resume out/ckpt.h5 --out out
inv train-sgd-step train --data in/syn.h5 "${TINY[@]}" --steps 5 --optim sgd --lr 0.01 --momentum 0.8 --nesterov \
  --schedule step --step-size 2 --gamma 0.5 --cols 0 --log-every 1 --seed 4
inv train-adam-cosine-ema train --data in/syn.h5 --val-data in/synval.h5 --val-count 16 "${TINY[@]}" --steps 5 \
  --optim adam --lr 1e-3 --beta1 0.8 --beta2 0.99 --weight-decay 0.01 --schedule cosine --warmup 2 \
  --clip 0.5 --ema 0.9 --cols 1 --sample-steps 2 --out ema
promote train-adam-cosine-ema ema
inv train-uncond-epochs train --data in/syn.h5 --unconditional --hidden 32 --depth 1 --heads 2 --patch 4 \
  --mlp-ratio 2 --class-dropout 0 --epochs 1 --batch 64 --threads "$T" --cols 2 --sample-steps 2 --quiet --out uc
promote train-uncond-epochs uc
inv train-warmup train --data in/syn.h5 "${TINY[@]}" --batch 8 --steps 4 --warmup 3 --lr 1e-3 --seed 3 --log-every 1 \
  --cfg 1 --cols 1 --sample-steps 3 --ckpt-every 2
inv train-fm train --data in/fm.h5 --val-data in/fmtest.h5 --val-count 8 "${TINY[@]}" --batch 8 --steps 2 \
  --cols 1 --sample-steps 2 --optim adamw --weight-decay 0.05
inv train-err-nodata train --steps 2
inv train-err-missing train --data in/none.h5 --steps 2
inv train-err-valshape train --data in/syn.h5 --val-data in/fm.h5 "${TINY[@]}" --steps 2
inv train-err-optim train --data in/syn.h5 --optim rmsprop
inv train-err-schedule train --data in/syn.h5 --schedule linear
inv train-err-size train --data in/syn.h5 --size huge
inv train-err-lr train --data in/syn.h5 --lr fast
inv train-err-range train --data in/syn.h5 --depth 0
inv train-err-novalue train --data in/syn.h5 --steps
inv train-err-unknown train --data in/syn.h5 --colour red
inv train-err-resume train --data in/syn.h5 "${TINY[@]}" --steps 2 --resume in/none.h5

# sample
inv sample-help sample --help
inv sample-ddim-all sample --ckpt in/r1/ckpt.h5 --out grid.png --sample-steps 5 --cols 2 --threads "$T"
promote sample-ddim-all grid.h5
inv sample-ddpm-class sample --ckpt in/r1/ckpt.h5 --out one.png --sampler ddpm --class 2 --cols 1 --seed 3 --threads "$T"
inv sample-cfg1-2threads sample --ckpt in/r1/ckpt.h5 --out c.png --cfg 1 --class 1 --cols 3 --sample-steps 4 --seed 5 --threads 2
inv sample-cfg-high sample --ckpt in/r1/ckpt.h5 --out hi.png --cfg 7.5 --sample-steps 3 --cols 1 --threads "$T"
inv sample-ema sample --ckpt in/ema/ckpt.h5 --out e.png --ema --sample-steps 3 --cols 2 --threads "$T"
inv sample-uncond sample --ckpt in/uc/ckpt.h5 --out u.png --rows 2 --cols 3 --sample-steps 3 --threads "$T"
inv sample-err-noema sample --ckpt in/r1/ckpt.h5 --out e.png --ema --sample-steps 2 --threads "$T"
inv sample-err-sampler sample --ckpt in/r1/ckpt.h5 --out x.png --sampler euler
inv sample-err-class sample --ckpt in/r1/ckpt.h5 --out x.png --class shoes
inv sample-err-steps sample --ckpt in/r1/ckpt.h5 --out x.png --sample-steps 0
inv sample-err-noargs sample --cols 2
inv sample-err-ext sample --ckpt in/r1/ckpt.h5 --out x.jpg --sample-steps 2
inv sample-err-ddpm-steps sample --ckpt in/r1/ckpt.h5 --out x.png --sampler ddpm --sample-steps 50
inv sample-err-rows-cond sample --ckpt in/r1/ckpt.h5 --out x.png --rows 2 --sample-steps 2 --threads "$T"
inv sample-err-class-uncond sample --ckpt in/uc/ckpt.h5 --out x.png --class 1 --sample-steps 2 --threads "$T"
inv sample-err-missing sample --ckpt in/none.h5 --out x.png
inv sample-err-outdir sample --ckpt in/r1/ckpt.h5 --out nodir/x.png --sample-steps 2 --cols 1 --threads "$T"
inv sample-err-notckpt sample --ckpt in/syn.h5 --out x.png --threads "$T"

# classify
inv classify-help classify --help
inv classify-err-noword classify
inv classify-err-word classify fit --data in/syn.h5
inv classify-train classify train --data in/syn.h5 --val-data in/synval.h5 --patch 4 --hidden 16 --depth 1 \
  --heads 2 --steps 6 --batch 32 --warmup 2 --log-every 2 --threads "$T" --out vit
promote classify-train vit
inv classify-train-single classify train --data in/syn.h5 --val-data in/synval.h5 --val-count 32 --single-head \
  --patch 2 --hidden 16 --depth 2 --heads 1 --mlp-ratio 1 --label-smoothing 0.1 --clip 0 --lr 0.01 \
  --weight-decay 0.1 --epochs 1 --batch 64 --val-every 2 --seed 2 --quiet --threads "$T"
inv classify-train-fm classify train --data in/fm.h5 --val-data in/fmtest.h5 --patch 4 --hidden 16 --depth 1 \
  --heads 2 --steps 3 --batch 16 --warmup 0 --threads "$T" --out fmvit
inv classify-train-help classify train --help
inv classify-err-train-nodata classify train --steps 2
inv classify-err-train-depth classify train --data in/syn.h5 --depth 0
inv classify-eval classify eval --ckpt in/vit/ckpt.h5 --data in/synval.h5 --batch 16 --count 50 --threads "$T"
inv classify-eval-2threads classify eval --ckpt in/vit/ckpt.h5 --data in/syn.h5 --threads 2
inv classify-err-eval-shape classify eval --ckpt in/vit/ckpt.h5 --data in/fm.h5 --threads "$T"
inv classify-err-eval-noargs classify eval --ckpt in/vit/ckpt.h5
inv classify-err-eval-missing classify eval --ckpt in/none.h5 --data in/syn.h5

# score
inv score-help score --help
inv score-grid score --classifier in/vit/ckpt.h5 --samples in/grid.h5 --threads "$T"
inv score-dataset score --classifier in/vit/ckpt.h5 --samples in/synval.h5 --batch 7 --threads "$T"
inv score-err-noargs score --samples in/grid.h5
inv score-err-missing score --classifier in/vit/ckpt.h5 --samples in/none.h5 --threads "$T"
inv score-err-notvit score --classifier in/r1/ckpt.h5 --samples in/grid.h5 --threads "$T"

# check: the public case file with its flags, then every case file of tests/data
inv check-help check --help
inv check-public check in/cases-public.h5
inv check-public-verbose check in/cases-public.h5 --verbose
inv check-public-tight check in/cases-public.h5 --atol 0 --rtol 0
inv check-public-loose check --atol 1e-3 --rtol 1e-2 in/cases-public.h5
for f in "$REPO"/tests/data/*.h5; do
  b=$(basename "$f" .h5)
  [ "$b" = cases-public ] || inv "check-$b" check "in/$b.h5"
done
inv check-err-nofile check
inv check-err-missing check in/none.h5
inv check-err-two check in/cases-public.h5 in/nn_cases.h5
inv check-err-atol check in/cases-public.h5 --atol -1
inv check-err-option check in/cases-public.h5 --fast
inv check-err-notcases check in/syn.h5

# bench: only its non-timing lines are compared (the bench masks)
inv bench-help bench --help
MASK="bench"
inv bench-tiny bench --size tiny --steps 2 --threads "$T"
MASK="bench"
inv bench-tiny-floor-json bench --size tiny --steps 2 --warmup 1 --floor --json --seed 1 --threads "$T"
inv bench-err-size bench --size huge
inv bench-err-steps bench --size tiny --steps 0

echo
echo "$PASSED passed, $FAILED failed ($COUNT invocations, ${SECONDS} s)"
if [ "$FAILED" -eq 0 ] && [ "${PG_COMPARE_KEEP:-0}" != 1 ]; then
  rm -rf "$WORK"
else
  echo "outputs kept in $WORK (old/, new/: each invocation's folder, .stdout, .stderr, .rc; diff/: stdout/stderr diffs)"
fi
[ "$FAILED" -eq 0 ]
