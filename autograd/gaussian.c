/* The reparameterisation and the KL divergence to N(0, I) (gaussian.h).
 * Forward and backward side by side, written with the op kit (op.h); exp is
 * the library's one (kernels.h). Neither op keeps state of its own: the
 * tape's record holds the inputs, eps among them. */
#include "patchgrad/autograd/gaussian.h"

#include "patchgrad/autograd/kernels.h"
#include "patchgrad/autograd/op.h"

static bool same_shapes(const char *op, const pg_tensor *mean, const pg_tensor *logvar,
                        const pg_tensor *eps) {
  if (pg_same_shape(mean, logvar) && (!eps || pg_same_shape(mean, eps))) return true;
  if (eps)
    pg_fail(PG_ERR_ARG, "%s: mean %s, logvar %s and eps %s must have the same shape", op,
            pg_shape_of(mean), pg_shape_of(logvar), pg_shape_of(eps));
  else
    pg_fail(PG_ERR_ARG, "%s: mean %s and logvar %s must have the same shape", op,
            pg_shape_of(mean), pg_shape_of(logvar));
  return false;
}

/* ---- reparameterisation: z = mean + exp(0.5 logvar) eps ---- */

static void reparameterize_backward(pg_ctx *ctx, pg_node *node) {
  pg_tensor *mean = node->in[0], *logvar = node->in[1], *eps = node->in[2];
  const float *g = node->out->grad, *lv = logvar->data, *e = eps->data;
  const int64_t n = mean->numel;
  bool fresh;
  float *gm = pg_grad_dest(ctx, mean, &fresh);
  if (gm)
    for (int64_t i = 0; i < n; i++) gm[i] = fresh ? g[i] : gm[i] + g[i];
  float *gl = pg_grad_dest(ctx, logvar, &fresh);
  if (gl)
    for (int64_t i = 0; i < n; i++) {
      const float d = g[i] * 0.5f * pg_expf(0.5f * lv[i]) * e[i];
      gl[i] = fresh ? d : gl[i] + d;
    }
  float *ge = pg_grad_dest(ctx, eps, &fresh);
  if (ge)
    for (int64_t i = 0; i < n; i++) {
      const float d = g[i] * pg_expf(0.5f * lv[i]);
      ge[i] = fresh ? d : ge[i] + d;
    }
}

pg_tensor *pg_reparameterize_eps(pg_ctx *ctx, pg_tensor *mean, pg_tensor *logvar, pg_tensor *eps) {
  if (!mean || !logvar || !eps) return NULL;
  if (!same_shapes("pg_reparameterize_eps", mean, logvar, eps)) return NULL;
  pg_tensor *z = pg_empty(ctx, mean->ndim, mean->shape);
  if (!z) return NULL;
  const float *m = mean->data, *lv = logvar->data, *e = eps->data;
  for (int64_t i = 0; i < z->numel; i++) z->data[i] = m[i] + pg_expf(0.5f * lv[i]) * e[i];
  pg_tape_record(ctx, "pg_reparameterize_eps", reparameterize_backward, z, 3,
                 (pg_tensor *[]){mean, logvar, eps});
  return z;
}

pg_tensor *pg_reparameterize(pg_ctx *ctx, pg_tensor *mean, pg_tensor *logvar, pg_rng *rng) {
  if (!mean || !logvar) return NULL;
  if (!same_shapes("pg_reparameterize", mean, logvar, NULL)) return NULL;
  if (!rng) {
    pg_fail(PG_ERR_ARG, "pg_reparameterize: rng is NULL (mean %s needs a generator for eps)",
            pg_shape_of(mean));
    return NULL;
  }
  /* eps is a step tensor of its own: the tape keeps it for backward */
  return pg_reparameterize_eps(ctx, mean, logvar, pg_normal(ctx, mean->ndim, mean->shape, 0.0f, 1.0f, rng));
}

/* ---- KL(N(mean, exp(logvar)) || N(0, I)), summed per sample, mean over the batch ---- */

static void kl_normal_backward(pg_ctx *ctx, pg_node *node) {
  pg_tensor *mean = node->in[0], *logvar = node->in[1];
  const int64_t n = mean->numel;
  const float s = node->out->grad[0] / (float)mean->shape[0];
  const float *m = mean->data, *lv = logvar->data;
  bool fresh;
  float *gm = pg_grad_dest(ctx, mean, &fresh);
  if (gm)
    for (int64_t i = 0; i < n; i++) gm[i] = fresh ? s * m[i] : gm[i] + s * m[i];
  float *gl = pg_grad_dest(ctx, logvar, &fresh);
  if (gl)
    for (int64_t i = 0; i < n; i++) {
      const float d = s * 0.5f * (pg_expf(lv[i]) - 1.0f);
      gl[i] = fresh ? d : gl[i] + d;
    }
}

pg_tensor *pg_kl_normal(pg_ctx *ctx, pg_tensor *mean, pg_tensor *logvar) {
  if (!mean || !logvar) return NULL;
  if (!same_shapes("pg_kl_normal", mean, logvar, NULL)) return NULL;
  if (mean->ndim < 1) {
    pg_fail(PG_ERR_ARG, "pg_kl_normal: mean and logvar are 0-d; they need a batch axis first");
    return NULL;
  }
  pg_tensor *out = pg_empty(ctx, 0, NULL);
  if (!out) return NULL;
  const float *m = mean->data, *lv = logvar->data;
  double sum = 0;
  for (int64_t i = 0; i < mean->numel; i++)
    sum += 1.0 + (double)lv[i] - (double)m[i] * m[i] - (double)pg_expf(lv[i]);
  out->data[0] = (float)(-0.5 * sum / (double)mean->shape[0]); /* NaN for B = 0 */
  pg_tape_record(ctx, "pg_kl_normal", kl_normal_backward, out, 2, (pg_tensor *[]){mean, logvar});
  return out;
}
