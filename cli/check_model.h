/* A whole-model case of `patchgrad check` (ops `dit` and `vit`): the
 * model's config from the case's attributes (the model's field table), and
 * every parameter under params/<name> (PyTorch's names) and, with
 * gradients, grad/params/<name>. */
#ifndef PG_CHECK_MODEL_H
#define PG_CHECK_MODEL_H

#include "patchgrad/autograd/params.h"
#include "patchgrad/io/casefile.h"
#include "patchgrad/io/kv.h"

/* Reads the fields of a config table marked PG_FIELD_CASE from the case's
 * attributes into config: an absent one reads its default (0 when the
 * field is required, which the model's config check then names); a
 * wrongly typed one marks the case. */
void pg_case_read_fields(pg_case *c, int n, const pg_config_field *fields, void *config);

/* Copies params/<name> into each parameter of ps; a missing array or one of
 * another shape marks the case. A buffer (PG_PARAM_BUFFER, e.g. a fixed
 * sin-cos position table) is built by the model itself, so it is compared
 * with the file's instead (docs/casefile.md). */
void pg_case_load_params(pg_case *c, pg_params *ps);
/* Compares grad/params/<name> with the gradient of each trained parameter
 * (every one but the buffers), when the case expects gradients. */
void pg_case_compare_param_grads(pg_case *c, const pg_params *ps);

#endif
