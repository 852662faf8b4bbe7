/* patchgrad bench: times full training steps of the DiT of docs/dit.md on
 * random latents (diffusion loss forward, backward, AdamW update) at the
 * size presets of `patchgrad train --size` (sizes.h: tiny, small, medium,
 * each with its own input size and batch), and reports the phases, the
 * step's median/min/max, GFLOP/s, peak RSS, the products each float32 GEMM
 * engine served (gemm_engine.h) and the heap allocations made during the
 * timed steps (must be 0 when BLIS served every product; counted only in
 * the test build of the command, build/tests/patchgrad_counted, which links
 * tests/alloc_count.c). With --floor it also measures the GEMM floor
 * (bench_floor.h) in the same run.
 *
 * Under mpirun -n K it times data-parallel steps (weak scaling: every rank
 * takes the size's batch, so the global batch is K times it): rank 0 first
 * times the steps alone while the other ranks sleep, then all ranks time
 * them together with the gradients averaged as `train` does
 * (dist/reducer.h, buckets sent during backward), and rank 0 reports the
 * speed-up and efficiency against its own lone steps, the time waited for
 * the reduction after backward, and how much of a whole reduction that
 * hides. */
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
#include "patchgrad/autograd/gemm_engine.h"
#include "patchgrad/autograd/runtime.h"
#include "patchgrad/dit/diffusion.h"
#include "patchgrad/dist/reducer.h"
#include "patchgrad/optim/optimizer.h"
#include "stop.h"

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
"                       [--json] [--precision fp32|bf16] [--gemm-engine auto|blis|onednn]\n"
"\n"
"Times full DiT training steps (diffusion loss forward, backward, AdamW lr 1e-4)\n"
"on random latents. Sizes: the presets of patchgrad train --size, each on its own\n"
"input (conditional, 10 classes, mlp_ratio 4, patch 2, 4 channels):\n"
"  tiny:   input 8x8,   hidden 64,  depth 2, heads 4, batch 32\n"
"  small:  input 16x16, hidden 128, depth 4, heads 4, batch 64   (the default)\n"
"  medium: input 32x32, hidden 384, depth 6, heads 6, batch 16\n"
"  --threads N   BLIS and OpenMP threads (all cores)\n"
"  --steps K     timed steps (tiny 50, small 20, medium 8)   --warmup W  untimed steps first (3)\n"
"  --floor       also measure the GEMM floor: the time of every product of a step, alone,\n"
"                on the engine that serves it (BLIS's alone with --gemm-engine blis)\n"
"  --precision P fp32 (default) or bf16: bf16 mixed precision as torch.autocast on CPU\n"
"                (large products' inputs rounded to bf16 and multiplied by oneDNN;\n"
"                attention's products in bf16 too, for 32 tokens or more)\n"
"  --gemm-engine E  who multiplies float32 matrices (PG_GEMM_ENGINE, else auto): auto\n"
"                times BLIS and oneDNN once per product shape on this machine and keeps\n"
"                the faster; blis: BLIS everywhere (steps allocation-free on 2+ threads);\n"
"                onednn:"
" oneDNN for every product of >= 2 MFLOP (it allocates in every call)\n"
"  --json        end with one JSON line of every number (for tools/bench_compare.py)\n"
"  --seed X      model and data seed (0)\n"
"Under mpirun -n K (each rank --threads N): data-parallel steps of K x the batch,\n"
"timed against rank 0's steps alone in the same run, with the reduction's wait.\n");
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
  pg_reducer *reducer; /* data-parallel steps: the gradients' averaging, else NULL */
} bench_state;

/* One training step; the phases' times (ms) into t[0..3]: forward,
 * backward, the wait for the gradients' reduction (0 without a reducer),
 * the optimizer. */
static pg_status train_step(bench_state *s, double t[4]) {
  double t0 = pg_bench_now_ms();
  pg_ctx_reset(s->ctx);
  pg_tensor *loss = pg_diffusion_loss(s->ctx, &s->model, &s->diff, s->x0, s->y, true, &s->rng, NULL, NULL);
  if (!loss) return pg_last_status();
  double t1 = pg_bench_now_ms();
  pg_status st = s->reducer ? pg_reducer_backward(s->reducer, s->ctx, loss) : pg_backward(s->ctx, loss);
  if (st) return st;
  double t2 = pg_bench_now_ms();
  if (s->reducer && (st = pg_reducer_finish(s->reducer))) return st;
  double t3 = pg_bench_now_ms();
  if ((st = pg_optimizer_step(&s->opt))) return st;
  pg_optimizer_zero_grad(&s->opt);
  double t4 = pg_bench_now_ms();
  if (!isfinite(loss->data[0]))
    return pg_fail(PG_ERR_STATE, "the loss is not finite (%g)", (double)loss->data[0]);
  t[0] = t1 - t0, t[1] = t2 - t1, t[2] = t3 - t2, t[3] = t4 - t3;
  return PG_OK;
}

/* Runs `warmup` untimed steps, then `steps` timed ones: times[p * steps + i]
 * holds phase p of step i (the four of train_step, then the whole step). */
static pg_status timed_steps(bench_state *s, int64_t warmup, int64_t steps, double *times) {
  double t[4];
  pg_status st = PG_OK;
  for (int64_t i = 0; i < warmup && !st; i++) st = train_step(s, t);
  for (int64_t i = 0; i < steps && !st; i++) {
    st = train_step(s, t);
    for (int p = 0; p < 4; p++) times[p * steps + i] = t[p];
    times[4 * steps + i] = t[0] + t[1] + t[2] + t[3];
  }
  return st;
}

static void free_state(bench_state *s) {
  pg_ctx_free(s->ctx);
  pg_tensor_free(s->x0);
  free(s->y);
  if (s->opt.slots) pg_optimizer_free(&s->opt);
  pg_dit_free(&s->model);
}

static int bench(const pg_dist *dist, int argc, char **argv) {
  const char *name = "small";
  int64_t threads = 0, steps = 0, warmup = 3, seed = 0;
  bool floor = false, json = false;
  const char *precision_name = "fp32", *engine_name = NULL;
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
    if (pg_arg_string(&a, "--gemm-engine", &engine_name)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  pg_precision precision;
  if (pg_precision_parse(precision_name, &precision) || pg_autocast_set(precision, NULL))
    return pg_args_error(&a, "--precision: %s", pg_last_error());
  pg_gemm_engine engine;
  if (engine_name && (pg_gemm_engine_parse(engine_name, &engine) || pg_gemm_engine_set(engine)))
    return pg_args_error(&a, "--gemm-engine: %s", pg_last_error());
  engine = pg_gemm_engine_get();
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
  double *times = malloc((size_t)steps * 5 * sizeof *times);
  const bool dp = dist->size > 1;
  pg_reducer reducer = {0};
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
  /* each rank its own batch; the same model everywhere */
  pg_rng data_rng;
  pg_rng_seed(&data_rng, (uint64_t)seed + 1000003u * (uint64_t)dist->rank);
  pg_fill_normal(s.x0, 0.0f, 1.0f, &data_rng);
  for (int64_t b = 0; b < B; b++) s.y[b] = (int64_t)pg_rng_below(&data_rng, (uint64_t)cfg.num_classes);

  /* Data-parallel: rank 0's steps alone first (the others sleep), then
   * everyone's, with rank 0's parameters everywhere. */
  double solo_ms = 0, allreduce_ms = 0;
  if (dp) {
    if (dist->rank == 0) {
      st = timed_steps(&s, warmup, steps, times);
      if (!st) solo_ms = summarize(times + 4 * steps, steps).median;
    }
    pg_status agreed = pg_dist_agree(dist, st);
    if (!agreed) agreed = pg_dist_idle_barrier(dist);
    if (!agreed) agreed = pg_dist_broadcast_params(dist, &s.model.params);
    if (!agreed) agreed = pg_reducer_init(&reducer, dist, &s.model.params, (size_t)1 << 20);
    if (!agreed) s.reducer = &reducer;
    st = agreed;
  }
  if (!st) st = timed_steps(&s, warmup, 0, times); /* the warm-up is neither timed nor counted */
  double cpu0, cpu1;
  long faults0, faults1;
  cpu_usage(&cpu0, &faults0);
  const long allocs_before = allocs_so_far();
  const pg_autocast_stats ac_before = pg_autocast_get_stats();
  const pg_gemm_engine_stats ge_before = pg_gemm_engine_get_stats();
  if (!st) st = timed_steps(&s, 0, steps, times);
  const long allocs = allocs_so_far() - allocs_before;
  const pg_autocast_stats ac_after = pg_autocast_get_stats();
  const pg_gemm_engine_stats ge = pg_gemm_engine_get_stats();
  const double onednn_per_step = (double)(ge.onednn_products - ge_before.onednn_products) / (double)steps;
  const double blis_per_step = (double)(ge.blis_products - ge_before.blis_products) / (double)steps;
  const double bf16_per_step = (double)(ac_after.bf16_products - ac_before.bf16_products) / (double)steps;
  cpu_usage(&cpu1, &faults1);
  const double cpu_per_step = (cpu1 - cpu0) / (double)steps;
  const double rss = peak_rss_mib();
  if (!st && dp) {
    /* a whole reduction with nothing sent during backward: what the
     * overlap hides is measured against it */
    double *one = malloc((size_t)steps * sizeof *one);
    for (int64_t i = 0; one && i < steps && !st; i++) {
      const double t0 = pg_bench_now_ms();
      st = pg_reducer_finish(&reducer);
      one[i] = pg_bench_now_ms() - t0;
    }
    if (!one) st = pg_fail(PG_ERR_MEMORY, "out of memory");
    else if (!st) allreduce_ms = summarize(one, steps).median;
    free(one);
  }
  if (st) {
    pg_cli_print_error("bench", pg_last_error());
    free(times);
    if (s.reducer) pg_reducer_free(&reducer);
    free_state(&s);
    return 1;
  }
  summary ph[5];
  for (int p = 0; p < 5; p++) ph[p] = summarize(times + p * steps, steps);
  const double reduced_mib = (double)reducer.numel * 4.0 / (1024.0 * 1024.0);
  if (s.reducer) pg_reducer_free(&reducer);
  if (dist->rank > 0) {
    free(times);
    free_state(&s);
    return 0;
  }
  const double gflop = 3.0 * pg_dit_forward_gemm_flops(&cfg, B) * 1e-9;
  const double gflops = gflop / (ph[4].median * 1e-3);

  printf("patchgrad bench: size %s (input %lldx%lld, hidden %lld, depth %lld, heads %lld, batch %lld), "
         "%d threads, %lld steps after %lld warm-up, %lld parameters, precision %s\n",
         bc->name, (long long)cfg.input_size, (long long)cfg.input_size, (long long)cfg.hidden,
         (long long)cfg.depth, (long long)cfg.heads, (long long)B, pg_get_threads(), (long long)steps,
         (long long)warmup, (long long)pg_params_numel(&s.model.params, true), pg_precision_name(precision));
  printf("%-10s %10s %10s %10s\n", "phase", "median ms", "min ms", "max ms");
  const char *phase[5] = {"forward", "backward", "comm wait", "optimizer", "step"};
  for (int p = 0; p < 5; p++)
    if (p != 2 || dp) printf("%-10s %10.3f %10.3f %10.3f\n", phase[p], ph[p].median, ph[p].min, ph[p].max);
  double speedup = 0, hidden = 0;
  if (dp) {
    speedup = (double)dist->size * solo_ms / ph[4].median;
    hidden = allreduce_ms > 0 ? 1.0 - ph[2].median / allreduce_ms : 0;
    if (hidden < 0) hidden = 0;
    printf("one rank   %.3f ms per step alone (rank 0, the others asleep): %.1f images/s\n", solo_ms,
           1e3 * (double)B / solo_ms);
    printf("%d ranks    %.3f ms per step, global batch %lld: %.1f images/s, %.2fx one rank, efficiency %.0f%%\n",
           dist->size, ph[4].median, (long long)(B * dist->size), 1e3 * (double)(B * dist->size) / ph[4].median,
           speedup, 100.0 * speedup / dist->size);
    printf("allreduce  %.2f MiB of gradients in 1 MiB buckets: %.3f ms for a whole reduction, %.3f ms waited "
           "after backward: %.0f%% hidden behind backward\n",
           reduced_mib, allreduce_ms, ph[2].median, 100.0 * hidden);
  }
  printf("GEMM work  %.3f GFLOP per step (3 x forward), %.1f GFLOP/s at the median\n", gflop, gflops);
  printf("BLIS       %s kernels running; %s\n", pg_blas_kernels(), pg_runtime_blis_choice());
  printf("GEMM fp32  engine %s: %.1f products per step by oneDNN, %.1f by BLIS (those of >= %.0f MFLOP "
         "outside parallel loops; the others are always BLIS)",
         pg_gemm_engine_name(engine), onednn_per_step, blis_per_step, (double)PG_GEMM_ENGINE_MIN_FLOPS * 1e-6);
  const bool onednn_here = pg_gemm_engine_onednn_available() == PG_OK;
  if (engine == PG_GEMM_ENGINE_AUTO && !onednn_here)
    printf("; BLIS everywhere (%s)", pg_last_error());
  else if (engine == PG_GEMM_ENGINE_AUTO)
    printf("; shapes decided: %lld timed now, %lld read, %lld taken from another process, in %s%s",
           (long long)ge.keys_timed, (long long)ge.keys_loaded, (long long)ge.keys_adopted,
           *pg_gemm_engine_cache() ? pg_gemm_engine_cache() : "(no file: no float32 product was decided)",
           ge.keys_not_kept ? " (some not written: kept in memory)" : "");
  if (ge.fallbacks) printf("; %lld oneDNN failures fell back to BLIS", (long long)ge.fallbacks);
  printf("\n");
  printf("CPU time   %.3f ms per step (all threads), %.1f page faults per step\n", cpu_per_step,
         (double)(faults1 - faults0) / (double)steps);
  printf("peak RSS   %.1f MiB (arena %.1f MiB)\n", rss, (double)s.ctx->arena.reserved / (1024.0 * 1024.0));
  if (precision == PG_PRECISION_BF16)
    printf("bf16       %.1f products per step through oneDNN, %lld primitives created, %lld fell back to fp32\n",
           bf16_per_step, (long long)ac_after.primitives_created, (long long)ac_after.fallbacks);
  if (allocs_counted())
    printf("heap allocations during the timed steps: %ld, %.1f per step%s\n", allocs, (double)allocs / (double)steps,
           allocs && (precision == PG_PRECISION_BF16 || onednn_per_step > 0)
               ? " (oneDNN allocates its argument map inside every execute call, and frees it; "
                 "--gemm-engine blis in fp32 on 2+ threads makes steps allocation-free)"
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
    printf("step       %.2fx the GEMM floor; %.1f GFLOP/s = %.0f%% of the %.1f GFLOP/s of a 4096x1536x384 product "
           "(engine %s)\n",
           ph[4].median / fl.total_ms, gflops, 100.0 * gflops / fl.blis_gflops, fl.blis_gflops,
           pg_gemm_engine_name(engine));
  }
  if (json) {
    printf("{\"tool\": \"patchgrad\", \"size\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"steps\": %lld, "
           "\"forward_ms\": %.4f, \"backward_ms\": %.4f, \"optimizer_ms\": %.4f, "
           "\"step_median_ms\": %.4f, \"step_min_ms\": %.4f, \"step_max_ms\": %.4f, "
           "\"gflop\": %.6f, \"gflops\": %.3f, \"cpu_ms_per_step\": %.4f, \"peak_rss_mib\": %.2f, "
           "\"allocations\": %ld, \"blis_kernels\": \"%s\", \"gemm_engine\": \"%s\", "
           "\"onednn_products_per_step\": %.2f, \"blis_products_per_step\": %.2f",
           bc->name, pg_precision_name(precision), pg_get_threads(), (long long)steps, ph[0].median, ph[1].median, ph[3].median,
           ph[4].median, ph[4].min, ph[4].max, gflop, gflops, cpu_per_step, rss,
           allocs_counted() ? allocs : -1L, pg_blas_kernels(), pg_gemm_engine_name(engine), onednn_per_step,
           blis_per_step);
    if (dp)
      printf(", \"ranks\": %d, \"solo_step_ms\": %.4f, \"comm_wait_ms\": %.4f, \"allreduce_ms\": %.4f, "
             "\"speedup\": %.4f, \"efficiency\": %.4f",
             dist->size, solo_ms, ph[2].median, allreduce_ms, speedup, speedup / dist->size);
    if (floor)
      printf(", \"floor_ms\": %.4f, \"floor_attention_ms\": %.4f, \"blis_gflops\": %.3f",
             fl.total_ms, fl.attention_ms, fl.blis_gflops);
    printf("}\n");
  }
  free(times);
  free_state(&s);
  /* With one thread every BLIS call allocates (above), which the library
   * cannot avoid, and so does every oneDNN product (gemm_engine.h); with
   * more threads and BLIS serving every product, a step must allocate
   * nothing. */
  if (allocs && allocs_counted() && pg_get_threads() > 1 && precision == PG_PRECISION_FP32 &&
      ge.onednn_products == ge_before.onednn_products) {
    fprintf(stderr, "patchgrad bench: %ld heap allocations during the timed steps (a training step on BLIS must "
            "make none)\n", allocs);
    return 1;
  }
  return 0;
}

int pg_cmd_bench(int argc, char **argv) {
  pg_dist dist;
  if (pg_cli_dist_start(&dist, "bench")) return 1;
  const int rc = bench(&dist, argc, argv);
  /* a failure after the ranks parted ways may leave others waiting */
  return pg_cli_dist_end(&dist, rc ? PG_ERR_STATE : PG_OK, rc == 1 && dist.size > 1, rc);
}
