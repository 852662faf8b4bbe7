/* The parameters of a whole-model case of `patchgrad check` (ops `dit` and
 * `vit`): the file gives every parameter under params/<name> (PyTorch's
 * names) and, with gradients, grad/params/<name>. */
#ifndef PG_CHECK_MODEL_H
#define PG_CHECK_MODEL_H

#include "patchgrad/io/casefile.h"
#include "patchgrad/autograd/params.h"

/* Copies params/<name> into each parameter of ps; a missing array or one of
 * another shape marks the case. A buffer (PG_PARAM_BUFFER, e.g. a fixed
 * sin-cos position table) is built by the model itself, so it is compared
 * with the file's instead (clarification 6). */
void pg_case_load_params(pg_case *c, pg_params *ps);
/* Compares grad/params/<name> with the gradient of each trained parameter
 * (every one but the buffers), when the case expects gradients. */
void pg_case_compare_param_grads(pg_case *c, const pg_params *ps);

#endif
