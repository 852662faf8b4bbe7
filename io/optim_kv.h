/* An optimizer's hyper-parameters (pg_optim_config) as a key/value list, so
 * that checkpoints store them as attributes of /optim with torch.optim's
 * names (lr, weight_decay, beta1, ...), and a resumed run gets them back. */
#ifndef PG_OPTIM_KV_H
#define PG_OPTIM_KV_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/io/kv.h"
#include "patchgrad/optim/optimizer.h"

/* Replaces kv's content with every field of cfg ("optimizer" holds the kind
 * name; booleans are ints 0/1). */
PG_API pg_status pg_optim_config_to_kv(const pg_optim_config *cfg, pg_kv *kv);
/* The inverse; a missing or mistyped key, or an unknown one, is an error
 * naming it, and the result is checked with pg_optim_config_check. */
PG_API pg_status pg_optim_config_from_kv(const pg_kv *kv, pg_optim_config *cfg);

#endif
