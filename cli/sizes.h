/* The DiT's size presets, one vocabulary for `patchgrad train --size` and
 * `patchgrad bench --size`: tiny, small, medium. A preset fixes the model's
 * width, depth and heads (patch 2, mlp_ratio 4) and the batch; `train` takes
 * the input size, channels and classes from its data, `bench` from the
 * preset's own bench_input (random latents, 4 channels, 10 classes). */
#ifndef PG_CLI_SIZES_H
#define PG_CLI_SIZES_H

#include <stdint.h>

#include "args.h"

typedef struct {
  const char *name;
  int64_t hidden, depth, heads, batch;
  int64_t bench_input, bench_steps; /* bench: latent height = width, timed steps */
} pg_cli_dit_size;

/* The names, as usage lines show them: "tiny|small|medium". */
#define PG_CLI_DIT_SIZES "tiny|small|medium"

/* The preset called name; NULL after "patchgrad CMD: --size 'x' is not one
 * of tiny, small, medium" (a.failed set). */
const pg_cli_dit_size *pg_cli_dit_size_find(pg_args *a, const char *name);

#endif
