/* The sample-quality score of a class-conditional generator: a trained
 * classifier looks at samples that were asked for a given class and says
 * which class it sees. The score is the fraction it assigns to the class
 * asked for (the classifier's "agreement", an accuracy with the asked-for
 * labels as truth), and its mean confidence (the mean top softmax
 * probability). Scored on real held-out data with their true labels, the
 * agreement is the classifier's test accuracy: the ceiling to read a
 * generator's score against.
 *
 * Input: the HDF5 file `patchgrad sample` writes next to its PNG (grid.h5:
 * `samples` [N, H, W, C] float latents, `labels` [N] int, attributes
 * sampler, steps, cfg_scale), or a latent dataset (`latents` + `labels`). */
#ifndef PG_SCORE_H
#define PG_SCORE_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/vit/classify.h"

typedef struct {
  pg_classify_stats all;
  int64_t num_classes;
  int64_t *per_class_n;     /* [num_classes]: samples asked for class k */
  int64_t *per_class_agree; /* [num_classes]: of those, classified as k */
  /* from the file's attributes when present ("" / 0 / NAN otherwise) */
  char sampler[16];
  int64_t steps;
  double cfg_scale;
} pg_score_result;

/* Reads the samples, classifies them in batches of `batch` and scores them.
 * Errors (each naming the file and the value): no `samples`/`latents`, no
 * `labels`, a shape other than the classifier's input, a label outside its
 * classes, a non-finite sample. Free the result with pg_score_result_free. */
PG_API pg_status pg_score_samples(pg_ctx *ctx, pg_vit *m, const char *samples_path, int64_t batch,
                           pg_score_result *out);
PG_API void pg_score_result_free(pg_score_result *r);

#endif
