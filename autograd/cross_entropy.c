/* Softmax cross-entropy, fused: torch.nn.functional.cross_entropy(logits,
 * labels, label_smoothing=s) with the default mean reduction.
 *
 * Per row i of logits [N, K], with lse_i = log sum_k exp(x_ik) computed as
 * m + log sum_k exp(x_ik - m), m the row's maximum (so no exp overflows):
 *   loss_i = lse_i - (1 - s) x_{i,y_i} - (s / K) sum_k x_ik
 * (with s = 0 the plain -log softmax(x_i)[y_i]); out = mean_i loss_i.
 *
 * Backward needs nothing but the softmax p_i = exp(x_i - lse_i), which the
 * forward saves ([N, K] in the arena):
 *   dx_ik = g / N * (p_ik - (1 - s) [k == y_i] - s / K)
 * one pass, no log or exp: the stable, fused form of softmax + log + nll. */
#include <math.h>

#include "patchgrad/autograd/kernels.h"
#include "patchgrad/autograd/op_util.h"
#include "patchgrad/autograd/ops.h"

/* One row: writes p (the softmax, kernels.h's row) and returns the row's
 * loss, in double. */
static double cross_entropy_row(const float *restrict x, float *restrict p, int64_t K,
                                int64_t label, double smoothing) {
  const double lse = pg_softmax_row(x, p, K);
  /* the smoothing term only when on: 0 * sum_x would be NaN for a -inf
   * logit of a class other than the label, where PyTorch's loss is finite */
  if (smoothing == 0) return lse - (double)x[label];
  double sum_x = 0;
  for (int64_t k = 0; k < K; k++) sum_x += x[k];
  return lse - (1.0 - smoothing) * (double)x[label] - smoothing / (double)K * sum_x;
}

typedef struct {
  const int64_t *labels; /* [N], a copy */
  const float *p;        /* [N, K], the softmax of the logits */
  float smoothing;
} cross_entropy_saved;

static void cross_entropy_backward(pg_ctx *ctx, pg_node *node) {
  const cross_entropy_saved *s = node->saved;
  pg_tensor *logits = node->in[0];
  bool fresh;
  float *dx = pg_grad_dest(ctx, logits, &fresh);
  if (!dx) return;
  const int64_t N = logits->shape[0], K = logits->shape[1];
  const int64_t *labels = s->labels;
  const float *p = s->p;
  const float smoothing = s->smoothing;
  const float scale = node->out->grad[0] / (float)N, off = smoothing / (float)K;
  PG_FOR(N * K, i, N, {
    const float *pi = p + i * K;
    float *di = dx + i * K;
    for (int64_t k = 0; k < K; k++) {
      const float target = (k == labels[i] ? 1.0f - smoothing : 0.0f) + off;
      const float g = scale * (pi[k] - target);
      di[k] = fresh ? g : di[k] + g;
    }
  });
}

pg_tensor *pg_cross_entropy_smoothed(pg_ctx *ctx, pg_tensor *logits, const int64_t *labels,
                                     float label_smoothing) {
  if (!logits) return NULL;
  if (logits->ndim != 2) {
    pg_fail(PG_ERR_ARG, "pg_cross_entropy: logits must be [N, K] (samples, classes), got %s",
            pg_shape_of(logits));
    return NULL;
  }
  const int64_t N = logits->shape[0], K = logits->shape[1];
  if (K < 1) {
    pg_fail(PG_ERR_ARG, "pg_cross_entropy: logits %s have no class", pg_shape_of(logits));
    return NULL;
  }
  if (!labels && N > 0) {
    pg_fail(PG_ERR_ARG, "pg_cross_entropy: labels must not be NULL");
    return NULL;
  }
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f)) {
    pg_fail(PG_ERR_ARG, "pg_cross_entropy: label_smoothing must be in [0, 1], got %g",
            (double)label_smoothing);
    return NULL;
  }
  for (int64_t i = 0; i < N; i++)
    if (labels[i] < 0 || labels[i] >= K) {
      pg_fail(PG_ERR_ARG, "pg_cross_entropy: label %lld of sample %lld is outside [0, %lld) (logits %s)",
              (long long)labels[i], (long long)i, (long long)K, pg_shape_of(logits));
      return NULL;
    }
  pg_tensor *out = pg_empty(ctx, 0, NULL);
  /* saved for backward: a copy of the labels and the softmax [N, K] */
  int64_t *saved_labels = pg_scratch(ctx, (size_t)N * sizeof(int64_t));
  float *p = pg_scratch(ctx, (size_t)(N * K) * sizeof(float));
  double *row_loss = pg_scratch(ctx, (size_t)N * sizeof(double));
  if (!out || !saved_labels || !p || !row_loss) return NULL;
  for (int64_t i = 0; i < N; i++) saved_labels[i] = labels[i];
  PG_FOR(N * K, i, N,
         row_loss[i] = cross_entropy_row(logits->data + i * K, p + i * K, K, labels[i],
                                         (double)label_smoothing));
  double total = 0;
  for (int64_t i = 0; i < N; i++) total += row_loss[i];
  out->data[0] = (float)(total / (double)N); /* NaN for N == 0, as in PyTorch */
  pg_node *node = pg_tape_record(ctx, "pg_cross_entropy", cross_entropy_backward, out, 1, &logits);
  PG_SAVE(ctx, node, cross_entropy_saved, .labels = saved_labels, .p = p,
          .smoothing = label_smoothing);
  return out;
}

pg_tensor *pg_cross_entropy(pg_ctx *ctx, pg_tensor *logits, const int64_t *labels) {
  return pg_cross_entropy_smoothed(ctx, logits, labels, 0.0f);
}
