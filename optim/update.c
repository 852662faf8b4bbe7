#include "update.h"

#include <math.h>

/* a * b + c rounded once, as PyTorch's AVX2 kernels compute `x.add_(y,
 * alpha=a)` and `addcmul_` (one FMA instruction). The product of two floats
 * is exact in double, so only the final double -> float rounding remains
 * (plus a double-rounding tie once in ~2^29), and the loop still vectorises
 * without hardware FMA. */
static inline float fused(float a, float b, float c) { return (float)((double)a * b + c); }

void pg_sgd_update(const pg_optim_config *cfg, double weight_decay, int64_t step, int64_t n,
                   float *restrict param, const float *restrict grad,
                   float *restrict momentum_buffer) {
  const float wd = (float)weight_decay;
  const float momentum = (float)cfg->momentum;
  const float keep = (float)(1.0 - cfg->dampening); /* alpha = 1 - dampening */
  const float neg_lr = (float)-cfg->lr;             /* alpha = -lr */
  const bool decay = weight_decay != 0, use_momentum = cfg->momentum != 0;
  const bool first = step == 0, nesterov = cfg->nesterov;
  float *restrict buf = momentum_buffer;
#pragma omp parallel for schedule(static) if (n >= PG_OPTIM_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    float d_p = grad[i];
    if (decay) d_p = fused(param[i], wd, d_p); /* d_p = d_p.add(param, alpha=wd) */
    if (use_momentum) {
      /* first step: buf = clone(d_p); then buf.mul_(momentum).add_(d_p, alpha=1-dampening) */
      float b = first ? d_p : fused(d_p, keep, buf[i] * momentum);
      buf[i] = b;
      d_p = nesterov ? fused(b, momentum, d_p) : b; /* d_p.add(buf, alpha=momentum) */
    }
    param[i] = fused(d_p, neg_lr, param[i]); /* param.add_(d_p, alpha=-lr) */
  }
}

/* torch.maximum: NaN wins, so a NaN never hides in the running maximum. */
static inline float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }

void pg_adam_update(const pg_optim_config *cfg, double weight_decay, int64_t step, int64_t n,
                    float *restrict param, const float *restrict grad, float *restrict exp_avg,
                    float *restrict exp_avg_sq, float *restrict max_exp_avg_sq) {
  const bool adamw = cfg->kind == PG_OPTIM_ADAMW;
  const bool l2 = !adamw && weight_decay != 0;
  const float wd = (float)weight_decay;
  /* AdamW: param.mul_(1 - lr * weight_decay), the factor computed in double */
  const float shrink = (float)(1.0 - cfg->lr * weight_decay);
  const float beta1 = (float)cfg->beta1, beta2 = (float)cfg->beta2;
  const float one_minus_beta1 = (float)(1.0 - cfg->beta1);
  const float one_minus_beta2 = (float)(1.0 - cfg->beta2);
  /* Python scalars, in double: bias_correction1 = 1 - beta1 ** step, ... */
  const double bias_correction1 = 1.0 - pow(cfg->beta1, (double)step);
  const double bias_correction2 = 1.0 - pow(cfg->beta2, (double)step);
  const float neg_step_size = (float)-(cfg->lr / bias_correction1);
  const float bias_correction2_sqrt = (float)sqrt(bias_correction2);
  const float eps = (float)cfg->eps;
  const bool amsgrad = cfg->amsgrad;
  float *restrict max_sq = max_exp_avg_sq;
#pragma omp parallel for schedule(static) if (n >= PG_OPTIM_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    float g = grad[i], p = param[i];
    if (l2) g = fused(p, wd, g); /* grad = grad.add(param, alpha=weight_decay) */
    if (adamw) p = p * shrink;
    /* exp_avg.mul_(beta1).add_(grad, alpha=1-beta1) */
    float m = fused(g, one_minus_beta1, exp_avg[i] * beta1);
    /* exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2) */
    float v = fused(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    if (amsgrad) v = max_sq[i] = nan_max(max_sq[i], v);
    /* denom = (v.sqrt() / bias_correction2_sqrt).add_(eps) */
    float denom = sqrtf(v) / bias_correction2_sqrt + eps;
    /* param.addcdiv_(exp_avg, denom, value=-step_size) */
    param[i] = p + neg_step_size * m / denom;
  }
}
