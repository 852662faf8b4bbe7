#include "patchgrad/autograd/gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/tape.h"

/* <f(inputs), r> in double; the context is reset first. */
static pg_status eval_dot(pg_ctx *ctx, pg_fn f, void *user, pg_tensor *const *inputs,
                          const float *r, int64_t n, double *dot) {
  pg_ctx_reset(ctx);
  pg_tensor *out = f(ctx, inputs, user);
  if (!out) return pg_last_status() ? pg_last_status() : pg_fail(PG_ERR_ARG, "pg_gradcheck: f returned NULL");
  if (out->numel != n) return pg_fail(PG_ERR_ARG, "pg_gradcheck: f's output changed size");
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)out->data[i] * r[i];
  *dot = s;
  return PG_OK;
}

pg_status pg_gradcheck(pg_fn f, void *user, int n_inputs, pg_tensor *const *inputs,
                       const pg_gradcheck_opts *opts, pg_gradcheck_result *res) {
  pg_gradcheck_opts o = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2, .seed = 1234};
  if (opts) {
    if (opts->eps > 0) o.eps = opts->eps;
    if (opts->atol > 0) o.atol = opts->atol;
    if (opts->rtol > 0) o.rtol = opts->rtol;
    if (opts->seed) o.seed = opts->seed;
  }
  memset(res, 0, sizeof *res);
  for (int i = 0; i < n_inputs; i++)
    if (!inputs[i] || !inputs[i]->heap || !inputs[i]->requires_grad)
      return pg_fail(PG_ERR_ARG, "pg_gradcheck: input %d must be a heap tensor with requires_grad", i);

  /* Small chunks: checks are small, and a huge chunk costs a page-fault pass. */
  pg_ctx *ctx = pg_ctx_new((size_t)1 << 20);
  if (!ctx) return PG_ERR_MEMORY;
  pg_status st = PG_OK;
  float *r = NULL;

  /* Analytic pass: forward with grad, backward seeded with r. */
  pg_tensor *out = f(ctx, inputs, user);
  if (!out) {
    st = pg_last_status() ? pg_last_status() : pg_fail(PG_ERR_ARG, "pg_gradcheck: f returned NULL");
    goto done;
  }
  int64_t n = out->numel;
  r = malloc((size_t)(n ? n : 1) * sizeof *r);
  if (!r) {
    st = pg_fail(PG_ERR_MEMORY, "pg_gradcheck: out of memory");
    goto done;
  }
  pg_rng rng;
  pg_rng_seed(&rng, o.seed);
  for (int64_t i = 0; i < n; i++) r[i] = pg_rng_normal(&rng);
  for (int i = 0; i < n_inputs; i++) pg_tensor_zero_grad(inputs[i]);
  if ((st = pg_backward_with(ctx, out, r))) goto done;

  bool was = pg_set_grad_enabled(ctx, false);
  res->ok = true;
  for (int i = 0; i < n_inputs; i++) {
    pg_tensor *x = inputs[i];
    for (int64_t j = 0; j < x->numel; j++) {
      float keep = x->data[j];
      double plus, minus;
      x->data[j] = (float)(keep + o.eps);
      double h_plus = (double)x->data[j] - keep; /* the step actually taken */
      st = eval_dot(ctx, f, user, inputs, r, n, &plus);
      x->data[j] = (float)(keep - o.eps);
      double h_minus = keep - (double)x->data[j];
      if (!st) st = eval_dot(ctx, f, user, inputs, r, n, &minus);
      x->data[j] = keep;
      if (st) goto done;
      double numeric = (plus - minus) / (h_plus + h_minus);
      double analytic = x->grad[j];
      double err = fabs(analytic - numeric);
      double excess = err / (o.atol + o.rtol * fabs(numeric));
      res->checked++;
      if (err > res->max_abs_err) res->max_abs_err = err;
      if (excess > res->max_excess || res->checked == 1) {
        res->max_excess = excess;
        res->worst_input = i;
        res->worst_index = j;
        res->worst_analytic = analytic;
        res->worst_numeric = numeric;
      }
      if (!(excess <= 1.0)) res->ok = false;
    }
  }
  pg_set_grad_enabled(ctx, was);
done:
  free(r);
  pg_ctx_free(ctx);
  return st;
}
