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
/* Seeds a generator for one sample of one training step, so that a draw
 * depends on (seed, step, index) alone and not on which process or which
 * part of a batch makes it (data-parallel runs draw the same numbers for
 * the same sample whatever the number of ranks). The key is
 *   k = mix(mix(mix(seed) ^ step) ^ index),  mix = splitmix64's finalizer
 *   (z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27;
 *    z *= 0x94d049bb133111eb; z ^= z >> 31),
 * and the generator is pg_rng_seed(rng, k). step counts updates from 0;
 * index is the sample's place in the global batch. */
PG_API void pg_rng_seed_keyed(pg_rng *rng, uint64_t seed, uint64_t step, uint64_t index);
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
