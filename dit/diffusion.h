/* The diffusion objective and samplers of docs/dit.md: T = 1000, betas
 * linear from 1e-4 to 0.02 (computed in double, as DiT does), epsilon
 * prediction trained with MSE; DDPM ancestral sampling over all T steps and
 * DDIM (eta 0) over K steps, with classifier-free guidance. Two options of
 * the field, both off by default: the cosine noise schedule of Nichol and
 * Dhariwal ("Improved Denoising Diffusion Probabilistic Models", 2021, eq.
 * 17) and the min-SNR loss weighting of Hang et al. ("Efficient Diffusion
 * Training via Min-SNR Weighting Strategy", 2023). */
#ifndef PG_DIFFUSION_H
#define PG_DIFFUSION_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/dit/dit.h"
#include "patchgrad/io/kv.h"

#define PG_DIFFUSION_T 1000

typedef enum {
  PG_NOISE_LINEAR, /* beta_t = 1e-4 + (0.02 - 1e-4) t / (T - 1) */
  PG_NOISE_COSINE, /* abar(u) = f(u) / f(0), f(u) = cos(((u + 0.008) / 1.008) pi / 2)^2,
                    * beta_t = min(1 - abar((t + 1) / T) / abar(t / T), 0.999) */
} pg_noise_schedule;

typedef struct {
  double beta[PG_DIFFUSION_T];
  double alpha_bar[PG_DIFFUSION_T]; /* prod_{s<=t} (1 - beta_s) */
  pg_noise_schedule schedule;
  /* > 0: each sample's squared error is weighted by min(SNR_t, gamma) /
   * SNR_t, SNR_t = abar_t / (1 - abar_t) (min-SNR-gamma for epsilon
   * prediction; the paper's gamma is 5); 0: plain MSE */
  double min_snr_gamma;
} pg_diffusion;

/* The linear schedule, no loss weighting. */
PG_API void pg_diffusion_init(pg_diffusion *d);
/* Another schedule and weighting; an error names a gamma that is not a
 * finite number >= 0. */
PG_API pg_status pg_diffusion_init_with(pg_diffusion *d, pg_noise_schedule schedule, double min_snr_gamma);
/* "linear" / "cosine", and back (an error names any other word). */
PG_API const char *pg_noise_schedule_name(pg_noise_schedule s);
PG_API pg_status pg_noise_schedule_parse(const char *name, pg_noise_schedule *s);
/* The checkpoint config's keys (io/kv.h) of the options that are not the
 * defaults: noise_schedule (string) and min_snr_gamma (double); a config
 * without them is the linear schedule without weighting. from_kv: an
 * error names the key (`who` begins the message). */
PG_API pg_status pg_diffusion_to_kv(const pg_diffusion *d, pg_kv *kv);
PG_API pg_status pg_diffusion_from_kv(const pg_kv *kv, const char *who, pg_diffusion *d);

/* x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, per sample (n values each). */
PG_API void pg_diffusion_q_sample(const pg_diffusion *d, const float *x0, const float *eps,
                           const float *t, int64_t batch, int64_t n, float *xt);

/* One training loss on the tape: draws t uniform in {0..T-1} and eps ~ N(0, I)
 * from rng (or takes them when t_given / eps_given are non-NULL), replaces each
 * label by the null class with probability cfg.class_dropout when `training`,
 * and returns mean((eps - model(x_t, t, y))^2), or with d->min_snr_gamma
 * the mean of w_b (eps - model)^2, w_b the weight of sample b's t. */
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
