/* The diffusion objective and samplers of docs/dit.md: T = 1000, betas
 * linear from 1e-4 to 0.02 (computed in double, as DiT does), epsilon
 * prediction trained with MSE; DDPM ancestral sampling over all T steps and
 * DDIM (eta 0) over K steps, with classifier-free guidance. */
#ifndef PG_DIFFUSION_H
#define PG_DIFFUSION_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/dit/dit.h"

#define PG_DIFFUSION_T 1000

typedef struct {
  double beta[PG_DIFFUSION_T];
  double alpha_bar[PG_DIFFUSION_T]; /* prod_{s<=t} (1 - beta_s) */
} pg_diffusion;

PG_API void pg_diffusion_init(pg_diffusion *d);

/* x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, per sample (n values each). */
PG_API void pg_diffusion_q_sample(const pg_diffusion *d, const float *x0, const float *eps,
                           const float *t, int64_t batch, int64_t n, float *xt);

/* One training loss on the tape: draws t uniform in {0..T-1} and eps ~ N(0, I)
 * from rng (or takes them when t_given / eps_given are non-NULL), replaces each
 * label by the null class with probability cfg.class_dropout when `training`,
 * and returns mean((eps - model(x_t, t, y))^2). */
PG_API pg_tensor *pg_diffusion_loss(pg_ctx *ctx, pg_dit *m, const pg_diffusion *d, pg_tensor *x0,
                             const int64_t *y, bool training, pg_rng *rng,
                             const float *t_given, const float *eps_given);

typedef enum { PG_SAMPLER_DDPM, PG_SAMPLER_DDIM } pg_sampler_kind;

typedef struct {
  pg_sampler_kind kind;
  int steps;         /* DDIM only: number of steps K (DDPM uses all T) */
  float cfg_scale;   /* 1: plain conditional; > 1: guidance; ignored when unconditional */
  uint64_t seed;
} pg_sampler_opts;

/* The model's noise prediction for one sampling step at timestep t, into eps
 * [batch, H, W, C]. A conditional model with cfg_scale != 1 runs the labels
 * and the null class as one batch of 2 * batch and returns
 * eps_null + cfg_scale * (eps_cond - eps_null); at scale 1 that is the
 * conditional prediction, computed in one pass. No tape is recorded. */
PG_API pg_status pg_diffusion_eps(pg_ctx *ctx, pg_dit *m, const float *x, int64_t batch, float t,
                           const int64_t *y, float cfg_scale, float *eps);

/* Draws `batch` samples into out [batch, H, W, C]; y may be NULL for an
 * unconditional model. Uses ctx as scratch (reset between steps). Calls
 * progress(step, total, user) after each step when non-NULL. */
PG_API pg_status pg_diffusion_sample(pg_ctx *ctx, pg_dit *m, const pg_diffusion *d,
                              const pg_sampler_opts *opts, int64_t batch, const int64_t *y,
                              float *out, void (*progress)(int, int, void *), void *user);

#endif
