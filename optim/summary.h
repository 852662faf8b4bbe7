/* Parameter counts per module, for the summary a training run prints at its
 * start: what PyTorch users read from torchinfo's summary or from summing
 * p.numel() over model.named_children().
 *
 * A module is a prefix of the parameter names: the name without its last
 * component (the tensor's own name: weight, bias, ...), cut to `depth`
 * components, where a component that is a number (a ModuleList or
 * Sequential index) stays with the one before it and does not count. So at
 * depth 1 "blocks.3.attn.qkv.weight" belongs to "blocks.3" and
 * "x_embedder.proj.weight" to "x_embedder"; at depth 2 they belong to
 * "blocks.3.attn" and "x_embedder.proj". A name of one component
 * ("pos_embed") is its own module.
 *
 * Trainable elements: those of entries the optimizer updates, i.e. not
 * PG_PARAM_BUFFER and requires_grad on (frozen tensors and buffers count as
 * non-trainable, as torchinfo counts requires_grad=False parameters). The
 * counts depend only on the parameter list (autograd/params.h). */
#ifndef PG_OPTIM_SUMMARY_H
#define PG_OPTIM_SUMMARY_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>
#include <stdio.h>

#include "patchgrad/autograd/params.h"

typedef struct {
  char name[PG_PARAM_NAME_MAX]; /* the module prefix, e.g. "blocks.0" */
  int tensors;                  /* entries of the list in it */
  int64_t params;               /* elements of all of them */
  int64_t trainable;            /* elements of those requiring grad (not buffers) */
} pg_module_count;

/* The modules of ps at that depth (>= 1), in order of first appearance, into
 * out[0..cap) (out may be NULL when cap is 0). Returns how many modules
 * there are, which may exceed cap (call again with more room); -1 with a
 * message when depth < 1 or ps is NULL. */
PG_API int pg_params_count_modules(const pg_params *ps, int depth, pg_module_count *out, int cap);

/* Prints one line per module and torchinfo's three totals to f:
 *   module            params   trainable
 *   x_embedder         1,088       1,088
 *   blocks.0          74,496      74,496
 *   ...
 *   Total params: 1,234,567
 *   Trainable params: 1,230,000
 *   Non-trainable params: 4,567
 * Errors: those of pg_params_count_modules, out of memory, a write error. */
PG_API pg_status pg_params_print_summary(const pg_params *ps, int depth, FILE *f);

#endif
