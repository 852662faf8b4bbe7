#include "patchgrad/autograd/rng.h"

#include <math.h>

/* splitmix64's finalizer */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t splitmix64(uint64_t *x) { return mix64(*x += 0x9e3779b97f4a7c15ULL); }

void pg_rng_seed(pg_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

void pg_rng_seed_keyed(pg_rng *rng, uint64_t seed, uint64_t step, uint64_t index) {
  pg_rng_seed(rng, mix64(mix64(mix64(seed) ^ step) ^ index));
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pg_rng_next(pg_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float pg_rng_uniform(pg_rng *rng) {
  return (float)(pg_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

double pg_rng_uniform_double(pg_rng *rng) {
  return (double)(pg_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

float pg_rng_normal(pg_rng *rng) {
  /* 1 - u lies in (0, 1], so the log is finite. */
  double u1 = 1.0 - pg_rng_uniform_double(rng);
  double u2 = pg_rng_uniform_double(rng);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2));
}

uint64_t pg_rng_below(pg_rng *rng, uint64_t n) {
  /* Rejection keeps the draw exactly uniform. */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = pg_rng_next(rng);
  while (x >= limit);
  return x % n;
}
