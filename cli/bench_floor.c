/* The GEMM floor of bench_floor.h: the list of a training step's products,
 * and BLIS's time for each.
 *
 * A Linear y = x W^T over `rows` rows (W is [out, in]) costs three products:
 *   forward  y  = x W^T      rows x out x in
 *   input    dx = dy W       rows x in x out   (when x needs a gradient)
 *   weight   dW = dy^T x     out x in x rows
 * Attention costs, per (batch, head) pair of T tokens and head size hd,
 *   forward  S = Q K^T (T x T x hd), O = P V (T x hd x T)
 *   backward dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q
 * with q, k, v read in place from the packed qkv rows (stride 3h) as the
 * model does. */
#include "bench_floor.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "patchgrad/autograd/blas.h"

/* Where one operand of a per-head product starts for pair (b, n): token-major
 * operands (q, k, v, out and their gradients) at b*T*ld + n*hd, square ones
 * (probabilities, score gradients) at pair * T*T. */
typedef enum { AT_ZERO, AT_TOKENS, AT_SQUARE } operand_at;

typedef struct {
  const char *name;
  bool ta, tb;
  int64_t m, n, k, lda, ldb, ldc;
  double count;       /* how often one step runs it (per pair batch for heads) */
  bool per_head;      /* one product per (batch, head) pair */
  operand_at a_at, b_at, c_at;
} gemm_shape;

typedef struct {
  gemm_shape *items;
  int n, cap;
} shape_list;

static void add(shape_list *l, gemm_shape s) {
  if (l->n < l->cap) l->items[l->n++] = s;
}

static void add_linear(shape_list *l, const char *name, int64_t rows, int64_t in, int64_t out,
                       double count, bool need_dx) {
  add(l, (gemm_shape){name, false, true, rows, out, in, in, in, out, count, false, 0, 0, 0});
  if (need_dx) add(l, (gemm_shape){name, false, false, rows, in, out, out, in, in, count, false, 0, 0, 0});
  add(l, (gemm_shape){name, true, false, out, in, rows, out, in, in, count, false, 0, 0, 0});
}

static void step_shapes(const pg_dit_config *c, int64_t batch, shape_list *l) {
  const int64_t h = c->hidden, p = c->patch_size, grid = c->input_size / p, T = grid * grid;
  const int64_t rows = batch * T, cpp = c->in_channels * p * p, hd = h / c->heads;
  const double depth = (double)c->depth;
  /* x_embedder (the latents need no gradient) */
  add(l, (gemm_shape){"x_embedder", false, true, rows, h, cpp, cpp, cpp, h, 1, false, 0, 0, 0});
  add(l, (gemm_shape){"x_embedder", true, false, h, cpp, rows, h, cpp, cpp, 1, false, 0, 0, 0});
  add_linear(l, "t_embedder.mlp.0", batch, PG_DIT_FREQ_DIM, h, 1, false);
  add_linear(l, "t_embedder.mlp.2", batch, h, h, 1, true);
  add_linear(l, "adaLN", batch, h, 6 * h, depth, true);
  add_linear(l, "qkv", rows, h, 3 * h, depth, true);
  const int64_t q3 = 3 * h;
  add(l, (gemm_shape){"attn QK^T", false, true, T, T, hd, q3, q3, T, depth, true, AT_TOKENS, AT_TOKENS, AT_SQUARE});
  add(l, (gemm_shape){"attn PV", false, false, T, hd, T, T, q3, h, depth, true, AT_SQUARE, AT_TOKENS, AT_TOKENS});
  add(l, (gemm_shape){"attn dV", true, false, T, hd, T, T, h, q3, depth, true, AT_SQUARE, AT_TOKENS, AT_TOKENS});
  add(l, (gemm_shape){"attn dP", false, true, T, T, hd, h, q3, T, depth, true, AT_TOKENS, AT_TOKENS, AT_SQUARE});
  add(l, (gemm_shape){"attn dQ", false, false, T, hd, T, T, q3, q3, depth, true, AT_SQUARE, AT_TOKENS, AT_TOKENS});
  add(l, (gemm_shape){"attn dK", true, false, T, hd, T, T, q3, q3, depth, true, AT_SQUARE, AT_TOKENS, AT_TOKENS});
  add_linear(l, "proj", rows, h, h, depth, true);
  add_linear(l, "fc1", rows, h, c->mlp_ratio * h, depth, true);
  add_linear(l, "fc2", rows, c->mlp_ratio * h, h, depth, true);
  add_linear(l, "final adaLN", batch, h, 2 * h, 1, true);
  /* Unpatchify: cols = x W_rows, W_rows [h, C p p] */
  add(l, (gemm_shape){"unpatchify", false, false, rows, cpp, h, h, cpp, cpp, 1, false, 0, 0, 0});
  add(l, (gemm_shape){"unpatchify", false, true, rows, h, cpp, cpp, cpp, h, 1, false, 0, 0, 0});
  add(l, (gemm_shape){"unpatchify", true, false, h, cpp, rows, h, cpp, cpp, 1, false, 0, 0, 0});
}

double pg_bench_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* Elements an operand of r x c (row stride ld) needs, for all pairs. */
static int64_t operand_size(operand_at at, int64_t r, int64_t cols, int64_t ld, int64_t batch,
                            int64_t tokens, int64_t heads) {
  if (at == AT_SQUARE) return batch * heads * tokens * tokens;
  if (at == AT_TOKENS) return batch * tokens * ld;
  return (r - 1) * ld + cols;
}

static int64_t offset(operand_at at, int64_t b, int64_t n, int64_t tokens, int64_t ld,
                      int64_t hd, int64_t heads) {
  if (at == AT_SQUARE) return (b * heads + n) * tokens * tokens;
  if (at == AT_TOKENS) return b * tokens * ld + n * hd;
  return 0;
}

typedef struct {
  const gemm_shape *s;
  int64_t batch, tokens, heads, hd;
  float *a, *b, *c;
} gemm_job;

/* The product of pair pr (batch entry, head) of a per-head shape. */
static void pair_product(const gemm_job *j, int64_t pr,
                         void (*gemm)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                                      const float *, int64_t, float, float *, int64_t)) {
  const gemm_shape *s = j->s;
  const int64_t b = pr / j->heads, n = pr % j->heads;
  gemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f,
       j->a + offset(s->a_at, b, n, j->tokens, s->lda, j->hd, j->heads), s->lda,
       j->b + offset(s->b_at, b, n, j->tokens, s->ldb, j->hd, j->heads), s->ldb, 0.0f,
       j->c + offset(s->c_at, b, n, j->tokens, s->ldc, j->hd, j->heads), s->ldc);
}

/* One run of the shape (all pairs for a per-head shape); `spread`: one
 * thread per product, products spread over the threads. */
static void run(const gemm_job *j, bool spread) {
  const gemm_shape *s = j->s;
  if (!s->per_head) {
    (spread ? pg_gemm_serial : pg_gemm)(s->ta, s->tb, s->m, s->n, s->k, 1.0f, j->a, s->lda, j->b, s->ldb,
                                        0.0f, j->c, s->ldc);
    return;
  }
  const int64_t pairs = j->batch * j->heads;
  if (spread) {
#pragma omp parallel for schedule(static)
    for (int64_t pr = 0; pr < pairs; pr++) pair_product(j, pr, pg_gemm_serial);
  } else {
    for (int64_t pr = 0; pr < pairs; pr++) pair_product(j, pr, pg_gemm);
  }
}

/* The fastest of at least 3 runs, more while the budget lasts. */
static double best_ms(const gemm_job *j, bool spread, double budget_ms) {
  run(j, spread); /* warm caches and BLIS's packing buffers */
  double best = INFINITY, spent = 0;
  for (int rep = 0; rep < 3 || (spent < budget_ms && rep < 200); rep++) {
    double t0 = pg_bench_now_ms();
    run(j, spread);
    double dt = pg_bench_now_ms() - t0;
    spent += dt;
    if (dt < best) best = dt;
  }
  return best;
}

pg_status pg_gemm_floor_measure(const pg_dit_config *cfg, int64_t batch, double budget_ms,
                                FILE *log, pg_gemm_floor *out) {
  memset(out, 0, sizeof *out);
  gemm_shape items[64];
  shape_list l = {items, 0, 64};
  step_shapes(cfg, batch, &l);
  const int64_t T = (cfg->input_size / cfg->patch_size) * (cfg->input_size / cfg->patch_size);
  const int64_t heads = cfg->heads, hd = cfg->hidden / heads;
  /* one set of operands large enough for every shape, and the reference product */
  int64_t na = 4096 * 384, nb = 1536 * 384, nc = 4096 * 1536;
  for (int i = 0; i < l.n; i++) {
    const gemm_shape *s = &items[i];
    int64_t ar = s->ta ? s->k : s->m, ac = s->ta ? s->m : s->k;
    int64_t br = s->tb ? s->n : s->k, bc = s->tb ? s->k : s->n;
    int64_t sa = operand_size(s->a_at, ar, ac, s->lda, batch, T, heads);
    int64_t sb = operand_size(s->b_at, br, bc, s->ldb, batch, T, heads);
    int64_t sc = operand_size(s->c_at, s->m, s->n, s->ldc, batch, T, heads);
    if (sa > na) na = sa;
    if (sb > nb) nb = sb;
    if (sc > nc) nc = sc;
  }
  float *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
  float *c = malloc((size_t)nc * sizeof *c);
  if (!a || !b || !c) {
    free(a), free(b), free(c);
    return pg_fail(PG_ERR_MEMORY, "out of memory for the GEMM floor's operands");
  }
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  for (int64_t i = 0; i < na; i++) a[i] = pg_rng_uniform(&rng) - 0.5f;
  for (int64_t i = 0; i < nb; i++) b[i] = pg_rng_uniform(&rng) - 0.5f;
  memset(c, 0, (size_t)nc * sizeof *c);

  if (log) fprintf(log, "GEMM floor, %d threads (fastest run of BLIS on each shape):\n", pg_get_threads());
  for (int i = 0; i < l.n; i++) {
    const gemm_shape *s = &items[i];
    gemm_job j = {s, batch, T, heads, hd, a, b, c};
    double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k * (s->per_head ? (double)(batch * heads) : 1.0);
    /* BLIS on all threads, or one product per thread when products are small */
    double threaded = best_ms(&j, false, budget_ms);
    double spread = flops < 5e8 || s->per_head ? best_ms(&j, true, budget_ms) : INFINITY;
    double ms = threaded < spread ? threaded : spread;
    out->total_ms += ms * s->count;
    if (s->per_head) out->attention_ms += ms * s->count;
    out->gflop += 1e-9 * flops * s->count;
    if (log)
      fprintf(log, "  %-18s %c%c %5lld x %5lld x %5lld%s x %3g  %8.3f ms  %6.1f GFLOP/s\n", s->name,
              s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', (long long)s->m, (long long)s->n,
              (long long)s->k, s->per_head ? " per head" : "         ", s->count, ms * s->count,
              1e-6 * flops / ms);
  }
  gemm_shape ref = {"reference", false, true, 4096, 1536, 384, 384, 384, 1536, 1, false, 0, 0, 0};
  gemm_job j = {&ref, 1, 1, 1, 1, a, b, c};
  out->blis_gflops = 1e-6 * 2.0 * 4096 * 1536 * 384 / best_ms(&j, false, budget_ms);
  free(a), free(b), free(c);
  return PG_OK;
}
