#include "patchgrad/optim/clip.h"

#include <math.h>

#include "patchgrad/autograd/parallel.h"
#include "patchgrad/optim/update.h"

/* sum |g|^p over n elements in double (max |g| for p = inf); p = 2 first
 * because it is the case that matters for speed. OpenMP only for large
 * tensors (the threading policy of autograd/parallel.h). */
static double power_sum(const float *restrict g, int64_t n, double p) {
  double acc = 0;
  if (isinf(p)) {
    for (int64_t i = 0; i < n; i++) {
      double a = fabs((double)g[i]);
      if (a > acc || a != a) acc = a; /* NaN propagates, as torch's max does */
    }
  } else if (p == 2.0 && pg_parallel_worth(n)) {
#pragma omp parallel for reduction(+ : acc) schedule(static)
    for (int64_t i = 0; i < n; i++) acc += (double)g[i] * g[i];
  } else if (p == 2.0) {
    for (int64_t i = 0; i < n; i++) acc += (double)g[i] * g[i];
  } else {
    for (int64_t i = 0; i < n; i++) acc += pow(fabs((double)g[i]), p);
  }
  return acc;
}

typedef struct {
  float *g;
  float coef, clip;
} scale_args;

static void scale_range(void *user, int64_t lo, int64_t hi) {
  const scale_args *a = user;
  float *restrict g = a->g;
  const float coef = a->coef;
  for (int64_t i = lo; i < hi; i++) g[i] *= coef;
}

/* clamp to [-clip, clip]; NaN fails both tests and stays NaN */
static void clamp_range(void *user, int64_t lo, int64_t hi) {
  const scale_args *a = user;
  float *restrict g = a->g;
  const float hi_v = a->clip, lo_v = -a->clip;
  for (int64_t i = lo; i < hi; i++) g[i] = g[i] < lo_v ? lo_v : (g[i] > hi_v ? hi_v : g[i]);
}

double pg_clip_grad_norm(pg_params *ps, double max_norm, double norm_type) {
  if (!ps) return pg_fail(PG_ERR_ARG, "pg_clip_grad_norm: params is NULL"), -1.0;
  if (!(max_norm >= 0))
    return pg_fail(PG_ERR_ARG, "pg_clip_grad_norm: max_norm = %g must be >= 0", max_norm), -1.0;
  if (!(norm_type > 0))
    return pg_fail(PG_ERR_ARG, "pg_clip_grad_norm: norm_type = %g must be > 0 (or INFINITY)",
                   norm_type), -1.0;
  /* PyTorch: norms = [torch.norm(g, p)] (each a float32), then the norm of
   * those; the sums run in double here. */
  double total = 0;
  for (int i = 0; i < ps->count; i++) {
    const pg_tensor *t = ps->items[i].tensor;
    if (!pg_optim_param_active(&ps->items[i])) continue;
    double s = power_sum(t->grad, t->numel, norm_type);
    if (isinf(norm_type)) {
      float norm = (float)s;
      if (norm > total || norm != norm) total = norm;
    } else {
      float norm = (float)pow(s, 1.0 / norm_type);
      total += isinf(norm) ? INFINITY : pow((double)norm, norm_type);
    }
  }
  float total_norm = isinf(norm_type) ? (float)total : (float)pow(total, 1.0 / norm_type);
  /* clip_coef = max_norm / (total_norm + 1e-6): PyTorch evaluates the
   * division as reciprocal() * max_norm on a float32 tensor. */
  float clip_coef = (1.0f / (total_norm + 1e-6f)) * (float)max_norm;
  if (clip_coef > 1.0f) clip_coef = 1.0f; /* clamp(max=1.0) keeps NaN */
  for (int i = 0; i < ps->count; i++) {
    pg_tensor *t = ps->items[i].tensor;
    if (!pg_optim_param_active(&ps->items[i])) continue;
    scale_args a = {.g = t->grad, .coef = clip_coef};
    pg_optim_parallel(t->numel, scale_range, &a);
  }
  return total_norm;
}

pg_status pg_clip_grad_value(pg_params *ps, double clip_value) {
  if (!ps) return pg_fail(PG_ERR_ARG, "pg_clip_grad_value: params is NULL");
  if (!(clip_value >= 0))
    return pg_fail(PG_ERR_ARG, "pg_clip_grad_value: clip_value = %g must be >= 0", clip_value);
  for (int i = 0; i < ps->count; i++) {
    pg_tensor *t = ps->items[i].tensor;
    if (!pg_optim_param_active(&ps->items[i])) continue;
    scale_args a = {.g = t->grad, .clip = (float)clip_value};
    pg_optim_parallel(t->numel, clamp_range, &a);
  }
  return PG_OK;
}
