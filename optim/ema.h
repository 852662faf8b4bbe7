/* Exponential moving average of a model's parameters (DiT keeps one with
 * decay 0.9999 and samples with it).
 *
 * `shadow` is a pg_params list holding one copy of EVERY entry of the model's
 * list (buffers included, so it is a complete state dict) under the SAME
 * names, so a checkpoint can save and load it as is (under "ema/"). Shadow
 * tensors are PG_PARAM_BUFFER entries: they are never trained and carry no
 * gradient buffer.
 *
 *   pg_ema_init(&ema, &model_params, 0.9999);   // shadow = copy of the model
 *   after each optimizer step: pg_ema_update(&ema);
 *   to evaluate: pg_ema_swap(&ema); ... run the model ...; pg_ema_swap(&ema);
 *
 * Warm-up (off unless `warmup` is set): update n (n = 0, 1, ..., the
 * updates made before it) uses the decay min(decay, (1 + n) / (10 + n)),
 * TensorFlow's ExponentialMovingAverage with num_updates (timm's
 * ModelEmaV3 use_warmup), so that the average of a short run does not keep
 * its first weights: 0.1 at the first update, 0.5 at the 9th, 0.9 at the
 * 81st, 0.99 at the 891st. */
#ifndef PG_EMA_H
#define PG_EMA_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/params.h"

typedef struct {
  double decay;
  bool warmup;       /* the decay rises to `decay` over the first updates (above) */
  int64_t updates;   /* updates made (pg_ema_init: 0; a resumed run sets it) */
  pg_params shadow;  /* owned: the averaged weights, the model's names */
  pg_params *model;  /* not owned; must outlive the EMA and keep its entries */
  bool swapped;      /* true while the model holds the EMA weights */
} pg_ema;

/* Copies every entry of model (0 <= decay <= 1). On error the EMA holds nothing. */
PG_API pg_status pg_ema_init(pg_ema *ema, pg_params *model, double decay);
PG_API void pg_ema_free(pg_ema *ema);

/* The decay update n uses: `decay`, or with warm-up min(decay, (1 + n) / (10 + n)). */
PG_API double pg_ema_decay_at(const pg_ema *ema, int64_t n);

/* For every trainable entry: ema = decay * ema + (1 - decay) * param, in
 * float32 as DiT's update_ema (ema.mul_(decay).add_(param, alpha=1-decay)).
 * A frozen entry (its tensor's requires_grad off) is copied instead, so its
 * shadow follows the frozen value exactly, bit for bit (the formula would
 * drift by an ulp now and then: decay * x + (1 - decay) * x is not always x
 * in float32; the average of a constant is that constant). Buffers are not
 * averaged (they are fixed). decay is pg_ema_decay_at(ema, ema->updates),
 * and updates is then counted. Refused while swapped. */
PG_API pg_status pg_ema_update(pg_ema *ema);

/* Exchanges model and shadow values in place (no allocation); call once to
 * evaluate with the EMA weights, once more to go back. */
PG_API pg_status pg_ema_swap(pg_ema *ema);

#endif
