/* A seeded random generator of our own (xoshiro256**, seeded by splitmix64),
 * so the same seed gives the same numbers on every machine and its whole
 * state fits in four integers that a checkpoint can save. */
#ifndef PG_RNG_H
#define PG_RNG_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

typedef struct {
  uint64_t s[4];
} pg_rng;

PG_API void pg_rng_seed(pg_rng *rng, uint64_t seed);
PG_API uint64_t pg_rng_next(pg_rng *rng);
/* Uniform in [0, 1) with 24 random bits (exact in float32). */
PG_API float pg_rng_uniform(pg_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
PG_API double pg_rng_uniform_double(pg_rng *rng);
/* Standard normal by Box-Muller (two uniforms per draw, no cached spare, so
 * the stream position depends only on the number of draws). */
PG_API float pg_rng_normal(pg_rng *rng);
/* Uniform integer in [0, n). */
PG_API uint64_t pg_rng_below(pg_rng *rng, uint64_t n);

#endif
