/* Times multi-head self-attention (forward + backward) against the time of
 * its GEMMs alone, the speed target (within 1.5x).
 *
 *   build/examples/time_attention [B T h heads reps]   (default 16 256 384 6 10)
 *
 * "Its GEMMs alone" are the same products on the same strided layouts and
 * the same threading (BLIS threads for the two Linears, one (batch, head)
 * pair per OpenMP thread for the per-head products), with nothing between
 * them: forward qkv, q k^T, p v, proj; backward proj dX and dW, per head dV,
 * dP, dQ, dK, then qkv dX and dW. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "patchgrad/layers/attention.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/runtime.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void per_head(int64_t pairs, int64_t heads, int64_t T, int64_t hd, int64_t h,
                     const float *qkv, float *probs, float *out, float *dout, float *dqkv,
                     bool backward) {
  int64_t ld = 3 * h, TT = T * T;
#pragma omp parallel for schedule(dynamic)
  for (int64_t bn = 0; bn < pairs; bn++) {
    int64_t b = bn / heads, n = bn % heads;
    const float *q = qkv + b * T * ld + n * hd, *k = q + h, *v = q + 2 * h;
    float *p = probs + bn * TT, *o = out + b * T * h + n * hd;
    if (!backward) {
      pg_gemm_serial(false, true, T, T, hd, 0.125f, q, ld, k, ld, 0.0f, p, T);
      pg_gemm_serial(false, false, T, hd, T, 1.0f, p, T, v, ld, 0.0f, o, h);
    } else {
      float *dq = dqkv + b * T * ld + n * hd, *dk = dq + h, *dv = dq + 2 * h;
      const float *go = dout + b * T * h + n * hd;
      float *ds = probs + bn * TT; /* reuse: only the GEMM time matters here */
      pg_gemm_serial(true, false, T, hd, T, 1.0f, p, T, go, h, 0.0f, dv, ld);
      pg_gemm_serial(false, true, T, T, hd, 1.0f, go, h, v, ld, 0.0f, ds, T);
      pg_gemm_serial(false, false, T, hd, T, 0.125f, ds, T, k, ld, 0.0f, dq, ld);
      pg_gemm_serial(true, false, T, hd, T, 0.125f, ds, T, q, ld, 0.0f, dk, ld);
    }
  }
}

int main(int argc, char **argv) {
  pg_runtime_init(NULL); /* BLIS's fastest kernels for this CPU, as `patchgrad bench` */
  int64_t B = argc > 1 ? atoll(argv[1]) : 16, T = argc > 2 ? atoll(argv[2]) : 256;
  int64_t h = argc > 3 ? atoll(argv[3]) : 384;
  int heads = argc > 4 ? atoi(argv[4]) : 6, reps = argc > 5 ? atoi(argv[5]) : 10;
  if (B < 1 || T < 1 || h < 1 || heads < 1 || h % heads || reps < 1) {
    fprintf(stderr, "usage: time_attention [B T h heads reps] (heads must divide h)\n");
    return 2;
  }
  pg_set_threads(0);
  int64_t hd = h / heads, M = B * T, pairs = B * heads;
  pg_rng rng;
  pg_rng_seed(&rng, 1);
  pg_params ps;
  pg_params_init(&ps);
  pg_attention attn;
  if (pg_attention_init(&attn, &ps, "attn", h, heads, true, PG_LINEAR_INIT_XAVIER_UNIFORM, 0, &rng)) {
    fprintf(stderr, "%s\n", pg_last_error());
    return 1;
  }
  pg_tensor *x = pg_tensor_new(PG_SHAPE(B, T, h), true);
  pg_fill_normal(x, 0, 1, &rng);
  float *grad = malloc((size_t)(M * h) * sizeof(float));
  for (int64_t i = 0; i < M * h; i++) grad[i] = pg_rng_normal(&rng);
  pg_ctx *ctx = pg_ctx_new(0);

  /* the same GEMMs alone, on buffers of the same layouts */
  float *qkv = calloc((size_t)(M * 3 * h), sizeof(float)), *dqkv = calloc((size_t)(M * 3 * h), sizeof(float));
  float *heads_out = calloc((size_t)(M * h), sizeof(float)), *dheads = calloc((size_t)(M * h), sizeof(float));
  float *y = calloc((size_t)(M * h), sizeof(float)), *dx = calloc((size_t)(M * h), sizeof(float));
  float *probs = calloc((size_t)(pairs * T * T), sizeof(float));
  float *dw_qkv = calloc((size_t)(3 * h * h), sizeof(float)), *dw_proj = calloc((size_t)(h * h), sizeof(float));
  const float *wq = attn.qkv.weight->data, *wp = attn.proj.weight->data;

  /* The layer and its GEMMs alternate, so that both see the same machine
   * load; the best of each is kept (after one warm-up round). */
  double best_layer = 1e30, best_fwd = 1e30, best_gemm = 1e30;
  for (int r = 0; r < reps + 1; r++) {
    pg_ctx_reset(ctx);
    double t0 = now();
    pg_tensor *out = pg_attention_forward(ctx, &attn, x, false, NULL);
    double t1 = now();
    if (!out || pg_backward_with(ctx, out, grad)) {
      fprintf(stderr, "attention failed: %s\n", pg_last_error());
      return 1;
    }
    double t2 = now();
    if (r > 0 && t2 - t0 < best_layer) best_layer = t2 - t0, best_fwd = t1 - t0;

    t0 = now();
    pg_gemm(false, true, M, 3 * h, h, 1, x->data, h, wq, h, 0, qkv, 3 * h);
    per_head(pairs, heads, T, hd, h, qkv, probs, heads_out, NULL, NULL, false);
    pg_gemm(false, true, M, h, h, 1, heads_out, h, wp, h, 0, y, h);
    pg_gemm(false, false, M, h, h, 1, grad, h, wp, h, 0, dheads, h);
    pg_gemm(true, false, h, h, M, 1, grad, h, heads_out, h, 0, dw_proj, h);
    per_head(pairs, heads, T, hd, h, qkv, probs, heads_out, dheads, dqkv, true);
    pg_gemm(false, false, M, h, 3 * h, 1, dqkv, 3 * h, wq, h, 0, dx, h);
    pg_gemm(true, false, 3 * h, h, M, 1, dqkv, 3 * h, x->data, h, 0, dw_qkv, h);
    t1 = now();
    if (r > 0 && t1 - t0 < best_gemm) best_gemm = t1 - t0;
  }
  double flops_linear = 2.0 * M * h * (3 * h + h) * 3; /* forward, dX, dW */
  double flops_heads = 2.0 * pairs * T * T * hd * 6;   /* 2 forward, 4 backward */
  double gflop = (flops_linear + flops_heads) * 1e-9;
  printf("attention B=%lld T=%lld h=%lld heads=%d, %d threads, best of %d\n", (long long)B,
         (long long)T, (long long)h, heads, pg_get_threads(), reps);
  printf("  layer forward+backward  %8.2f ms  (forward %.2f ms)\n", best_layer * 1e3, best_fwd * 1e3);
  printf("  its GEMMs alone         %8.2f ms  (%.2f GFLOP, %.1f GFLOP/s)\n", best_gemm * 1e3, gflop,
         gflop / best_gemm);
  printf("  ratio layer / GEMMs     %8.3f\n", best_layer / best_gemm);
  free(qkv); free(dqkv); free(heads_out); free(dheads); free(y); free(dx); free(probs);
  free(dw_qkv); free(dw_proj); free(grad);
  pg_tensor_free(x);
  pg_ctx_free(ctx);
  pg_params_free(&ps);
  return 0;
}
