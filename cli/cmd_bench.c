/* patchgrad bench: times full training steps of the DiT of docs/dit.md on
 * random latents (diffusion loss forward, backward, AdamW update) at the
 * size presets of `patchgrad train --size` (sizes.h: tiny, small, medium,
 * each with its own input size and batch), and reports the phases, the
 * step's median/min/max, GFLOP/s, peak RSS and the heap allocations made
 * during the timed steps (must be 0; counted only in the test build of the
 * command, build/tests/patchgrad_counted, which links tests/alloc_count.c). With
 * --floor it also measures the GEMM floor (bench_floor.h) in the same run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "args.h"
#include "bench_floor.h"
#include "sizes.h"
#include "patchgrad/autograd/autocast.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/runtime.h"
#include "patchgrad/dit/diffusion.h"
#include "patchgrad/optim/optimizer.h"

/* The allocation counter is test instrumentation (tests/alloc_count.c): the
 * test build of this command links it, the shipped one does not, and there
 * these weak references stay NULL. */
__attribute__((weak)) long pg_alloc_count(void);
__attribute__((weak)) bool pg_alloc_count_active(void);
static bool allocs_counted(void) { return pg_alloc_count_active && pg_alloc_count_active(); }
static long allocs_so_far(void) { return allocs_counted() ? pg_alloc_count() : 0; }

static int usage(FILE *f) {
  fprintf(f,
"usage: patchgrad bench [--size tiny|small|medium] [--threads N] [--steps K] [--warmup W] [--floor]\n"
"                       [--json] [--precision fp32|bf16]\n"
"\n"
"Times full DiT training steps (diffusion loss forward, backward, AdamW lr 1e-4)\n"
"on random latents. Sizes: the presets of patchgrad train --size, each on its own\n"
"input (conditional, 10 classes, mlp_ratio 4, patch 2, 4 channels):\n"
"  tiny:   input 8x8,   hidden 64,  depth 2, heads 4, batch 32\n"
"  small:  input 16x16, hidden 128, depth 4, heads 4, batch 64   (the default)\n"
"  medium: input 32x32, hidden 384, depth 6, heads 6, batch 16\n"
"  --threads N   BLIS and OpenMP threads (all cores)\n"
"  --steps K     timed steps (tiny 50, small 20, medium 8)   --warmup W  untimed steps first (3)\n"
"  --floor       also measure the GEMM floor: BLIS's time for every product of a step\n"
"  --precision P fp32 (default) or bf16: bf16 mixed precision as torch.autocast on CPU\n"
"                (large products' inputs rounded to bf16 and multiplied by oneDNN)\n"
"  --json        end with one JSON line of every number (for tools/bench_compare.py)\n"
"  --seed X      model and data seed (0)\n");
  return f == stdout ? 0 : 2;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  double median, min, max;
} summary;

/* Sorts v in place. */
static summary summarize(double *v, int64_t n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return (summary){med, v[0], v[n - 1]};
}

static double peak_rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

/* CPU time of the process (all threads, user + system) and its minor page
 * faults: on a shared machine the CPU time per step measures the work even
 * when the wall clock does not. */
static void cpu_usage(double *cpu_ms, long *faults) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *cpu_ms = 1e3 * ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) +
            1e-3 * ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec);
  *faults = ru.ru_minflt + ru.ru_majflt;
}

typedef struct {
  pg_dit model;
  pg_optimizer opt;
  pg_diffusion diff;
  pg_ctx *ctx;
  pg_rng rng;
  pg_tensor *x0; /* [B, H, W, C] random latents (heap) */
  int64_t *y;    /* [B] labels */
} bench_state;

/* One training step; adds the phases' times to t[0..2] (ms). */
static pg_status train_step(bench_state *s, double t[3]) {
  double t0 = pg_bench_now_ms();
  pg_ctx_reset(s->ctx);
  pg_tensor *loss = pg_diffusion_loss(s->ctx, &s->model, &s->diff, s->x0, s->y, true, &s->rng, NULL, NULL);
  if (!loss) return pg_last_status();
  double t1 = pg_bench_now_ms();
  pg_status st = pg_backward(s->ctx, loss);
  if (st) return st;
  double t2 = pg_bench_now_ms();
  if ((st = pg_optimizer_step(&s->opt))) return st;
  pg_optimizer_zero_grad(&s->opt);
  double t3 = pg_bench_now_ms();
  if (!isfinite(loss->data[0]))
    return pg_fail(PG_ERR_STATE, "the loss is not finite (%g)", (double)loss->data[0]);
  t[0] = t1 - t0, t[1] = t2 - t1, t[2] = t3 - t2;
  return PG_OK;
}

static void free_state(bench_state *s) {
  pg_ctx_free(s->ctx);
  pg_tensor_free(s->x0);
  free(s->y);
  if (s->opt.slots) pg_optimizer_free(&s->opt);
  pg_dit_free(&s->model);
}

int pg_cmd_bench(int argc, char **argv) {
  const char *name = "small";
  int64_t threads = 0, steps = 0, warmup = 3, seed = 0;
  bool floor = false, json = false;
  const char *precision_name = "fp32";
  pg_args a = pg_args_begin("bench", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_string(&a, "--size", &name)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &threads)) continue;
    if (pg_arg_int(&a, "--steps", 1, 1000000, &steps)) continue;
    if (pg_arg_int(&a, "--warmup", 0, 1000000, &warmup)) continue;
    if (pg_arg_int(&a, "--seed", 0, INT64_MAX, &seed)) continue;
    if (pg_arg_switch(&a, "--floor", &floor)) continue;
    if (pg_arg_switch(&a, "--json", &json)) continue;
    if (pg_arg_string(&a, "--precision", &precision_name)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  pg_precision precision;
  if (pg_precision_parse(precision_name, &precision) || pg_autocast_set(precision, NULL))
    return pg_args_error(&a, "--precision: %s", pg_last_error());
  const pg_cli_dit_size *bc = pg_cli_dit_size_find(&a, name);
  if (!bc) return 2;
  if (!steps) steps = bc->bench_steps;
  pg_set_threads((int)threads);

  const pg_dit_config cfg = {.input_size = bc->bench_input, .in_channels = 4, .patch_size = 2,
                             .hidden = bc->hidden, .depth = bc->depth, .heads = bc->heads,
                             .mlp_ratio = 4, .num_classes = 10, .class_dropout = 0.1f};
  const int64_t B = bc->batch;
  bench_state s = {0};
  pg_rng_seed(&s.rng, (uint64_t)seed);
  pg_diffusion_init(&s.diff);
  pg_optim_config ocfg = pg_optim_adamw(1e-4);
  double *times = malloc((size_t)steps * 4 * sizeof *times);
  s.ctx = pg_ctx_new(0);
  s.x0 = pg_tensor_new(4, (int64_t[]){B, cfg.input_size, cfg.input_size, cfg.in_channels}, false);
  s.y = malloc((size_t)B * sizeof *s.y);
  pg_status st = !times || !s.ctx || !s.x0 || !s.y ? PG_ERR_MEMORY : PG_OK;
  if (!st) st = pg_dit_init(&s.model, &cfg, &s.rng);
  if (!st) st = pg_optimizer_init(&s.opt, &s.model.params, &ocfg);
  if (st) {
    pg_cli_print_error("bench", st == PG_ERR_MEMORY && !*pg_last_error() ? "out of memory" : pg_last_error());
    free(times);
    free_state(&s);
    return 1;
  }
  pg_fill_normal(s.x0, 0.0f, 1.0f, &s.rng);
  for (int64_t b = 0; b < B; b++) s.y[b] = (int64_t)pg_rng_below(&s.rng, (uint64_t)cfg.num_classes);

  double t[3];
  for (int64_t i = 0; i < warmup && !st; i++) st = train_step(&s, t);
  double cpu0, cpu1;
  long faults0, faults1;
  cpu_usage(&cpu0, &faults0);
  const long allocs_before = allocs_so_far();
  const pg_autocast_stats ac_before = pg_autocast_get_stats();
  for (int64_t i = 0; i < steps && !st; i++) {
    st = train_step(&s, t);
    for (int p = 0; p < 3; p++) times[p * steps + i] = t[p];
    times[3 * steps + i] = t[0] + t[1] + t[2];
  }
  const long allocs = allocs_so_far() - allocs_before;
  const pg_autocast_stats ac_after = pg_autocast_get_stats();
  const double bf16_per_step = (double)(ac_after.bf16_products - ac_before.bf16_products) / (double)steps;
  cpu_usage(&cpu1, &faults1);
  const double cpu_per_step = (cpu1 - cpu0) / (double)steps;
  const double rss = peak_rss_mib();
  if (st) {
    pg_cli_print_error("bench", pg_last_error());
    free(times);
    free_state(&s);
    return 1;
  }
  summary ph[4];
  for (int p = 0; p < 4; p++) ph[p] = summarize(times + p * steps, steps);
  const double gflop = 3.0 * pg_dit_forward_gemm_flops(&cfg, B) * 1e-9;
  const double gflops = gflop / (ph[3].median * 1e-3);

  printf("patchgrad bench: size %s (input %lldx%lld, hidden %lld, depth %lld, heads %lld, batch %lld), "
         "%d threads, %lld steps after %lld warm-up, %lld parameters, precision %s\n",
         bc->name, (long long)cfg.input_size, (long long)cfg.input_size, (long long)cfg.hidden,
         (long long)cfg.depth, (long long)cfg.heads, (long long)B, pg_get_threads(), (long long)steps,
         (long long)warmup, (long long)pg_params_numel(&s.model.params, true), pg_precision_name(precision));
  printf("%-10s %10s %10s %10s\n", "phase", "median ms", "min ms", "max ms");
  const char *phase[4] = {"forward", "backward", "optimizer", "step"};
  for (int p = 0; p < 4; p++)
    printf("%-10s %10.3f %10.3f %10.3f\n", phase[p], ph[p].median, ph[p].min, ph[p].max);
  printf("GEMM work  %.3f GFLOP per step (3 x forward), %.1f GFLOP/s at the median\n", gflop, gflops);
  printf("BLIS       %s kernels running; %s\n", pg_blas_kernels(), pg_runtime_blis_choice());
  printf("CPU time   %.3f ms per step (all threads), %.1f page faults per step\n", cpu_per_step,
         (double)(faults1 - faults0) / (double)steps);
  printf("peak RSS   %.1f MiB (arena %.1f MiB)\n", rss, (double)s.ctx->arena.reserved / (1024.0 * 1024.0));
  if (precision == PG_PRECISION_BF16)
    printf("bf16       %.1f products per step through oneDNN, %lld primitives created, %lld fell back to fp32\n",
           bf16_per_step, (long long)ac_after.primitives_created, (long long)ac_after.fallbacks);
  if (allocs_counted())
    printf("heap allocations during the timed steps: %ld%s\n", allocs,
           allocs && precision == PG_PRECISION_BF16
               ? " (oneDNN allocates its argument map inside every execute call)"
           : allocs && pg_get_threads() == 1
               ? " (BLIS's OpenMP build: libgomp allocates a one-thread team on every BLIS call)"
               : "");
  else
    printf("heap allocations during the timed steps: not counted (%s)\n",
           pg_alloc_count_active ? "sanitizer build"
                                 : "counted by the test build build/tests/patchgrad_counted");

  pg_gemm_floor fl = {0};
  if (floor) {
    if (pg_gemm_floor_measure(&cfg, B, 60.0, stdout, &fl)) {
      pg_cli_print_error("bench", pg_last_error());
      free(times);
      free_state(&s);
      return 1;
    }
    printf("GEMM floor %.3f ms per step (attention's per-head products %.3f ms), %.3f GFLOP\n",
           fl.total_ms, fl.attention_ms, fl.gflop);
    printf("step       %.2fx the GEMM floor; %.1f GFLOP/s = %.0f%% of BLIS's %.1f GFLOP/s (4096x1536x384)\n",
           ph[3].median / fl.total_ms, gflops, 100.0 * gflops / fl.blis_gflops, fl.blis_gflops);
  }
  if (json) {
    printf("{\"tool\": \"patchgrad\", \"size\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"steps\": %lld, "
           "\"forward_ms\": %.4f, \"backward_ms\": %.4f, \"optimizer_ms\": %.4f, "
           "\"step_median_ms\": %.4f, \"step_min_ms\": %.4f, \"step_max_ms\": %.4f, "
           "\"gflop\": %.6f, \"gflops\": %.3f, \"cpu_ms_per_step\": %.4f, \"peak_rss_mib\": %.2f, "
           "\"allocations\": %ld, \"blis_kernels\": \"%s\"",
           bc->name, pg_precision_name(precision), pg_get_threads(), (long long)steps, ph[0].median, ph[1].median, ph[2].median,
           ph[3].median, ph[3].min, ph[3].max, gflop, gflops, cpu_per_step, rss,
           allocs_counted() ? allocs : -1L, pg_blas_kernels());
    if (floor)
      printf(", \"floor_ms\": %.4f, \"floor_attention_ms\": %.4f, \"blis_gflops\": %.3f",
             fl.total_ms, fl.attention_ms, fl.blis_gflops);
    printf("}\n");
  }
  free(times);
  free_state(&s);
  /* With one thread every BLIS call allocates (above), which the library
   * cannot avoid; with more, a step must allocate nothing. */
  if (allocs && allocs_counted() && pg_get_threads() > 1 && precision == PG_PRECISION_FP32) {
    fprintf(stderr, "patchgrad bench: %ld heap allocations during the timed steps (a training step must make none)\n",
            allocs);
    return 1;
  }
  return 0;
}
