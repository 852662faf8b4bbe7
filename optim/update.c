#include "patchgrad/optim/update.h"

#include <math.h>

#include "patchgrad/autograd/parallel.h"
#include "patchgrad/autograd/vector_clones.h"

/* The library's one threading policy decides (autograd/parallel.h). */
bool pg_optim_use_threads(int64_t n) { return pg_parallel_worth(n); }

void pg_optim_parallel(int64_t n, void (*range)(void *user, int64_t lo, int64_t hi), void *user) {
  pg_parallel_ranges(n, range, user);
}

/* a * b + c rounded once, as PyTorch's AVX2 kernels compute `x.add_(y,
 * alpha=a)` and `addcmul_` (one FMA instruction). The product of two floats
 * is exact in double, so only the final double -> float rounding remains
 * (plus a double-rounding tie once in ~2^29), and the loop still vectorises
 * without hardware FMA. */
static inline float fused(float a, float b, float c) { return (float)((double)a * b + c); }

/* The update loops are compiled for AVX-512, AVX2 and the baseline
 * (PG_VECTOR_CLONES); the loader picks the widest this CPU runs. Without
 * contraction (ISO C: fp-contract off) every variant computes the same bits. */

/* ---- SGD ---- */

typedef struct {
  float *param, *buf;
  const float *grad;
  float wd, momentum, keep, neg_lr;
  bool decay, use_momentum, first, nesterov;
} sgd_args;

PG_VECTOR_CLONES static void sgd_range(void *user, int64_t lo, int64_t hi) {
  const sgd_args a = *(const sgd_args *)user;
  float *restrict param = a.param, *restrict buf = a.buf;
  const float *restrict grad = a.grad;
  for (int64_t i = lo; i < hi; i++) {
    float d_p = grad[i];
    if (a.decay) d_p = fused(param[i], a.wd, d_p); /* d_p = d_p.add(param, alpha=wd) */
    if (a.use_momentum) {
      /* first step: buf = clone(d_p); then buf.mul_(momentum).add_(d_p, alpha=1-dampening) */
      float b = a.first ? d_p : fused(d_p, a.keep, buf[i] * a.momentum);
      buf[i] = b;
      d_p = a.nesterov ? fused(b, a.momentum, d_p) : b; /* d_p.add(buf, alpha=momentum) */
    }
    param[i] = fused(d_p, a.neg_lr, param[i]); /* param.add_(d_p, alpha=-lr) */
  }
}

void pg_sgd_update(const pg_optim_config *cfg, double weight_decay, int64_t step, int64_t n,
                   float *param, const float *grad, float *momentum_buffer) {
  sgd_args a = {
      .param = param,
      .buf = momentum_buffer,
      .grad = grad,
      .wd = (float)weight_decay,
      .momentum = (float)cfg->momentum,
      .keep = (float)(1.0 - cfg->dampening), /* alpha = 1 - dampening */
      .neg_lr = (float)-cfg->lr,             /* alpha = -lr */
      .decay = weight_decay != 0,
      .use_momentum = cfg->momentum != 0,
      .first = step == 0,
      .nesterov = cfg->nesterov,
  };
  pg_optim_parallel(n, sgd_range, &a);
}

/* ---- Adam, AdamW ---- */

typedef struct {
  float *param, *exp_avg, *exp_avg_sq, *max_sq;
  const float *grad;
  float wd, shrink, beta1, beta2, one_minus_beta1, one_minus_beta2;
  float neg_step_size, bias_correction2_sqrt, eps;
  bool l2, adamw, amsgrad;
} adam_args;

/* torch.maximum: NaN wins, so a NaN never hides in the running maximum. */
static inline float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

PG_VECTOR_CLONES static void adam_range(void *user, int64_t lo, int64_t hi) {
  const adam_args a = *(const adam_args *)user;
  float *restrict param = a.param, *restrict exp_avg = a.exp_avg;
  float *restrict exp_avg_sq = a.exp_avg_sq, *restrict max_sq = a.max_sq;
  const float *restrict grad = a.grad;
  for (int64_t i = lo; i < hi; i++) {
    float g = grad[i], p = param[i];
    if (a.l2) g = fused(p, a.wd, g); /* grad = grad.add(param, alpha=weight_decay) */
    if (a.adamw) p = p * a.shrink;   /* param.mul_(1 - lr * weight_decay) */
    /* exp_avg.mul_(beta1).add_(grad, alpha=1-beta1) */
    float m = fused(g, a.one_minus_beta1, exp_avg[i] * a.beta1);
    /* exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2) */
    float v = fused(a.one_minus_beta2 * g, g, exp_avg_sq[i] * a.beta2);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    if (a.amsgrad) v = max_sq[i] = nan_max(max_sq[i], v);
    /* denom = (v.sqrt() / bias_correction2_sqrt).add_(eps) */
    float denom = sqrtf(v) / a.bias_correction2_sqrt + a.eps;
    /* param.addcdiv_(exp_avg, denom, value=-step_size): p + (value * m) / denom */
    param[i] = p + a.neg_step_size * m / denom;
  }
}

void pg_adam_update(const pg_optim_config *cfg, double weight_decay, int64_t step, int64_t n,
                    float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                    float *max_exp_avg_sq) {
  /* Python scalars, in double: bias_correction1 = 1 - beta1 ** step, ... */
  const double bias_correction1 = 1.0 - pow(cfg->beta1, (double)step);
  const double bias_correction2 = 1.0 - pow(cfg->beta2, (double)step);
  const bool adamw = cfg->kind == PG_OPTIM_ADAMW;
  adam_args a = {
      .param = param,
      .exp_avg = exp_avg,
      .exp_avg_sq = exp_avg_sq,
      .max_sq = max_exp_avg_sq,
      .grad = grad,
      .wd = (float)weight_decay,
      .shrink = (float)(1.0 - cfg->lr * weight_decay), /* computed in double, as in Python */
      .beta1 = (float)cfg->beta1,
      .beta2 = (float)cfg->beta2,
      .one_minus_beta1 = (float)(1.0 - cfg->beta1),
      .one_minus_beta2 = (float)(1.0 - cfg->beta2),
      .neg_step_size = (float)-(cfg->lr / bias_correction1),
      .bias_correction2_sqrt = (float)sqrt(bias_correction2),
      .eps = (float)cfg->eps,
      .l2 = !adamw && weight_decay != 0,
      .adamw = adamw,
      .amsgrad = cfg->amsgrad,
  };
  pg_optim_parallel(n, adam_range, &a);
}
