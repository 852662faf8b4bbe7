/* The parameter list: every trainable tensor (and saved buffer) of a model,
 * under its PyTorch name, in registration order. Layers register into it;
 * optimizers and checkpoints see nothing else.
 *
 * The list owns its tensors (heap tensors, freed by pg_params_free); a layer
 * struct only points at them, so parameters live exactly as long as the list. */
#ifndef PG_PARAMS_H
#define PG_PARAMS_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/tensor.h"

#define PG_PARAM_NAME_MAX 96

typedef enum {
  PG_PARAM_WEIGHT,    /* matrices and kernels: weight decay applies */
  PG_PARAM_BIAS,      /* biases: no weight decay in the default grouping */
  PG_PARAM_NORM,      /* norm scales and shifts: no weight decay */
  PG_PARAM_EMBEDDING, /* embedding tables, learned position embeddings: no weight decay */
  PG_PARAM_BUFFER,    /* saved with the model, never trained (fixed sin-cos tables) */
} pg_param_kind;

typedef struct {
  char name[PG_PARAM_NAME_MAX];
  pg_param_kind kind;
  pg_tensor *tensor; /* requires_grad unless kind is PG_PARAM_BUFFER */
} pg_param;

typedef struct {
  pg_param *items;
  int count, cap;
} pg_params;

PG_API void pg_params_init(pg_params *ps);
PG_API void pg_params_free(pg_params *ps);

/* Allocates a zeroed heap tensor and registers it under the printf-formatted
 * name. NULL (with an error) when the name is taken or too long. */
PG_API pg_tensor *pg_params_add(pg_params *ps, pg_param_kind kind, int ndim, const int64_t *shape,
                         const char *name_fmt, ...) __attribute__((format(printf, 5, 6)));

/* The entry with that name, or NULL. */
PG_API pg_param *pg_params_find(const pg_params *ps, const char *name);
PG_API void pg_params_zero_grad(pg_params *ps);
/* Elements over all entries (trainable_only: skip buffers). */
PG_API int64_t pg_params_numel(const pg_params *ps, bool trainable_only);
PG_API bool pg_param_trainable(const pg_param *p);

#endif
