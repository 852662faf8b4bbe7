#include "patchgrad/dit/diffusion.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "patchgrad/autograd/ops.h"

/* Nichol and Dhariwal's f(u) of the cosine schedule, offset s = 0.008. */
static double cosine_f(double u) {
  const double half_pi = 1.57079632679489661923;
  const double c = cos((u + 0.008) / 1.008 * half_pi);
  return c * c;
}

void pg_diffusion_init(pg_diffusion *d) { pg_diffusion_init_with(d, PG_NOISE_LINEAR, 0); }

pg_status pg_diffusion_init_with(pg_diffusion *d, pg_noise_schedule schedule, double min_snr_gamma) {
  double abar = 1.0;
  for (int t = 0; t < PG_DIFFUSION_T; t++) {
    if (schedule == PG_NOISE_COSINE) {
      const double b = 1.0 - cosine_f((t + 1.0) / PG_DIFFUSION_T) / cosine_f((double)t / PG_DIFFUSION_T);
      d->beta[t] = b < 0.999 ? b : 0.999;
    } else {
      d->beta[t] = 1e-4 + (0.02 - 1e-4) * t / (PG_DIFFUSION_T - 1);
    }
    abar *= 1.0 - d->beta[t];
    d->alpha_bar[t] = abar;
  }
  d->schedule = schedule;
  d->min_snr_gamma = 0;
  if (!(min_snr_gamma >= 0) || !isfinite(min_snr_gamma))
    return pg_fail(PG_ERR_ARG, "diffusion: min-SNR gamma must be a finite number >= 0 (0: off), got %g",
                   min_snr_gamma);
  d->min_snr_gamma = min_snr_gamma;
  return PG_OK;
}

const char *pg_noise_schedule_name(pg_noise_schedule s) { return s == PG_NOISE_COSINE ? "cosine" : "linear"; }

pg_status pg_noise_schedule_parse(const char *name, pg_noise_schedule *s) {
  if (!strcmp(name, "linear")) *s = PG_NOISE_LINEAR;
  else if (!strcmp(name, "cosine")) *s = PG_NOISE_COSINE;
  else return pg_fail(PG_ERR_ARG, "noise schedule '%s' is not linear or cosine", name);
  return PG_OK;
}

pg_status pg_diffusion_to_kv(const pg_diffusion *d, pg_kv *kv) {
  pg_status st = PG_OK;
  if (d->schedule != PG_NOISE_LINEAR) st = pg_kv_set_string(kv, "noise_schedule", pg_noise_schedule_name(d->schedule));
  if (!st && d->min_snr_gamma > 0) st = pg_kv_set_double(kv, "min_snr_gamma", d->min_snr_gamma);
  return st;
}

pg_status pg_diffusion_from_kv(const pg_kv *kv, const char *who, pg_diffusion *d) {
  const char *name = "linear";
  double gamma = 0;
  pg_noise_schedule s = PG_NOISE_LINEAR;
  if (pg_kv_get_string(kv, "noise_schedule", &name) < 0 || pg_kv_get_double(kv, "min_snr_gamma", &gamma) < 0 ||
      pg_noise_schedule_parse(name, &s) || pg_diffusion_init_with(d, s, gamma)) {
    char why[1024];
    snprintf(why, sizeof why, "%s", pg_last_error());
    return pg_fail(pg_last_status(), "%s: config: %s", who, why);
  }
  return PG_OK;
}

void pg_diffusion_q_sample(const pg_diffusion *d, const float *x0, const float *eps,
                           const float *t, int64_t batch, int64_t n, float *xt) {
  for (int64_t b = 0; b < batch; b++) {
    double ab = d->alpha_bar[(int)t[b]];
    float a = (float)sqrt(ab), s = (float)sqrt(1.0 - ab);
    for (int64_t i = 0; i < n; i++) xt[b * n + i] = a * x0[b * n + i] + s * eps[b * n + i];
  }
}

pg_tensor *pg_diffusion_loss(pg_ctx *ctx, pg_dit *m, const pg_diffusion *d, pg_tensor *x0,
                             const int64_t *y, bool training, pg_rng *rng,
                             const float *t_given, const float *eps_given) {
  if (!x0) return NULL;
  const int64_t B = x0->shape[0], n = x0->numel / (B ? B : 1);
  float *t = pg_ctx_alloc(ctx, (size_t)B * sizeof *t);
  int64_t *labels = y ? pg_ctx_alloc(ctx, (size_t)B * sizeof *labels) : NULL;
  pg_tensor *eps = pg_empty(ctx, x0->ndim, x0->shape);
  pg_tensor *xt = pg_empty(ctx, x0->ndim, x0->shape);
  if (!t || (y && !labels) || !eps || !xt) return NULL;
  for (int64_t b = 0; b < B; b++)
    t[b] = t_given ? t_given[b] : (float)pg_rng_below(rng, PG_DIFFUSION_T);
  if (eps_given) memcpy(eps->data, eps_given, (size_t)eps->numel * sizeof(float));
  else
    for (int64_t i = 0; i < eps->numel; i++) eps->data[i] = pg_rng_normal(rng);
  /* Classifier-free guidance needs the model to know the null class too. */
  for (int64_t b = 0; y && b < B; b++) {
    labels[b] = y[b];
    if (training && m->cfg.class_dropout > 0 && pg_rng_uniform(rng) < m->cfg.class_dropout)
      labels[b] = m->cfg.num_classes;
  }
  pg_diffusion_q_sample(d, x0->data, eps->data, t, B, n, xt->data);
  pg_tensor *pred = pg_dit_forward(ctx, m, xt, t, labels);
  if (!(d->min_snr_gamma > 0)) return pg_mse(ctx, pred, eps);
  /* min-SNR: mean over the batch of w_b times the sample's mean squared error */
  int64_t wshape[PG_MAX_DIMS] = {B};
  for (int i = 1; i < x0->ndim; i++) wshape[i] = 1;
  pg_tensor *w = pg_empty(ctx, x0->ndim, wshape);
  if (!w) return NULL;
  for (int64_t b = 0; b < B; b++) {
    const double ab = d->alpha_bar[(int)t[b]], snr = ab / (1.0 - ab);
    w->data[b] = (float)((snr < d->min_snr_gamma ? snr : d->min_snr_gamma) / snr);
  }
  pg_tensor *diff = pg_sub(ctx, pred, eps);
  return pg_mean(ctx, pg_mul(ctx, pg_mul(ctx, diff, diff), w), 0, NULL, false);
}

pg_status pg_diffusion_eps(pg_ctx *ctx, pg_dit *m, const float *x, int64_t batch, float t,
                           const int64_t *y, float cfg_scale, float *eps) {
  const pg_dit_config *c = &m->cfg;
  const int64_t n = c->input_size * c->input_size * c->in_channels;
  if (c->num_classes > 0 && !y)
    return pg_fail(PG_ERR_ARG, "sample: the model is conditional: labels are needed");
  /* Guidance at scale 1 is the conditional model: no null half. */
  bool guided = c->num_classes > 0 && cfg_scale != 1.0f;
  int64_t rows = guided ? 2 * batch : batch;
  pg_tensor *xin = pg_empty(ctx, 4, (int64_t[]){rows, c->input_size, c->input_size, c->in_channels});
  float *tt = pg_ctx_alloc(ctx, (size_t)rows * sizeof *tt);
  int64_t *yy = c->num_classes > 0 ? pg_ctx_alloc(ctx, (size_t)rows * sizeof *yy) : NULL;
  if (!xin || !tt || (c->num_classes > 0 && !yy)) return pg_last_status();
  for (int64_t r = 0; r < rows; r++) {
    memcpy(xin->data + r * n, x + (r % batch) * n, (size_t)n * sizeof(float));
    tt[r] = t;
    if (yy) yy[r] = r < batch ? y[r] : c->num_classes;
  }
  pg_tensor *out = pg_dit_forward(ctx, m, xin, tt, yy);
  if (!out) return pg_last_status();
  if (!guided) {
    memcpy(eps, out->data, (size_t)(batch * n) * sizeof(float));
    return PG_OK;
  }
  const float *cond = out->data, *null = out->data + batch * n;
  for (int64_t i = 0; i < batch * n; i++) eps[i] = null[i] + cfg_scale * (cond[i] - null[i]);
  return PG_OK;
}

pg_status pg_diffusion_sample(pg_ctx *ctx, pg_dit *m, const pg_diffusion *d,
                              const pg_sampler_opts *opts, int64_t batch, const int64_t *y,
                              float *out, void (*progress)(int, int, void *), void *user) {
  const pg_dit_config *c = &m->cfg;
  const int64_t n = c->input_size * c->input_size * c->in_channels, total = batch * n;
  if (opts->kind == PG_SAMPLER_DDIM && (opts->steps < 1 || opts->steps > PG_DIFFUSION_T))
    return pg_fail(PG_ERR_ARG, "sample: DDIM steps must be in 1..%d, got %d", PG_DIFFUSION_T, opts->steps);
  pg_rng rng;
  pg_rng_seed(&rng, opts->seed);
  for (int64_t i = 0; i < total; i++) out[i] = pg_rng_normal(&rng);

  bool was_grad = pg_set_grad_enabled(ctx, false), was_train = pg_set_training(ctx, false);
  int K = opts->kind == PG_SAMPLER_DDPM ? PG_DIFFUSION_T : opts->steps;
  pg_status st = PG_OK;
  for (int i = 0; i < K && !st; i++) {
    int t;
    double ab_prev;
    if (opts->kind == PG_SAMPLER_DDPM) {
      t = PG_DIFFUSION_T - 1 - i;
      ab_prev = t > 0 ? d->alpha_bar[t - 1] : 1.0;
    } else {
      /* timesteps round(linspace(T-1, 0, K)); rint rounds half to even like numpy */
      double step = K > 1 ? (double)(PG_DIFFUSION_T - 1) / (K - 1) : 0;
      t = (int)rint((PG_DIFFUSION_T - 1) - i * step);
      ab_prev = i + 1 < K ? d->alpha_bar[(int)rint((PG_DIFFUSION_T - 1) - (i + 1) * step)] : 1.0;
    }
    pg_ctx_reset(ctx);
    float *eps = pg_ctx_alloc(ctx, (size_t)total * sizeof *eps);
    if (!eps) {
      st = pg_last_status();
      break;
    }
    st = pg_diffusion_eps(ctx, m, out, batch, (float)t, y, opts->cfg_scale, eps);
    if (st) break;
    const double ab = d->alpha_bar[t];
    const double sa = sqrt(ab), s1a = sqrt(1.0 - ab);
    if (opts->kind == PG_SAMPLER_DDIM) {
      const double sp = sqrt(ab_prev), s1p = sqrt(1.0 - ab_prev);
      for (int64_t j = 0; j < total; j++) {
        double x0 = (out[j] - s1a * eps[j]) / sa;
        out[j] = (float)(sp * x0 + s1p * eps[j]);
      }
    } else {
      const double beta = d->beta[t];
      const double c0 = beta * sqrt(ab_prev) / (1.0 - ab), c1 = (1.0 - ab_prev) * sqrt(1.0 - beta) / (1.0 - ab);
      const double sigma = sqrt(beta * (1.0 - ab_prev) / (1.0 - ab));
      for (int64_t j = 0; j < total; j++) {
        double x0 = (out[j] - s1a * eps[j]) / sa;
        double mean = c0 * x0 + c1 * out[j];
        out[j] = (float)(t > 0 ? mean + sigma * pg_rng_normal(&rng) : mean);
      }
    }
    if (progress) progress(i + 1, K, user);
  }
  pg_set_grad_enabled(ctx, was_grad);
  pg_set_training(ctx, was_train);
  pg_ctx_reset(ctx);
  return st;
}
