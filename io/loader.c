#include "patchgrad/io/loader.h"

#include <stdlib.h>

#include "patchgrad/autograd/rng.h"

struct pg_loader {
  pg_latents *ds;
  pg_loader_opts opts;
  int64_t *perm;       /* [N]: the order of epoch perm_epoch */
  int64_t perm_epoch;  /* -1: perm not built yet */
  pg_loader_state state;
};

void pg_loader_opts_init(pg_loader_opts *o) {
  *o = (pg_loader_opts){.batch_size = 64, .drop_last = false, .shuffle = true,
                        .in_memory = false, .seed = 0};
}

pg_loader *pg_loader_open(const char *path, const pg_loader_opts *opts) {
  if (opts->batch_size < 1) {
    pg_fail(PG_ERR_ARG, "pg_loader_open: batch_size %lld must be >= 1", (long long)opts->batch_size);
    return NULL;
  }
  const int64_t ranks = opts->ranks > 1 ? opts->ranks : 1;
  if (ranks > 1 && (!opts->drop_last || opts->batch_size % ranks || opts->rank < 0 || opts->rank >= ranks)) {
    pg_fail(PG_ERR_ARG,
            "pg_loader_open: the global batch %lld must be divisible by the %lld ranks (rank %lld, drop_last %s)",
            (long long)opts->batch_size, (long long)ranks, (long long)opts->rank,
            opts->drop_last ? "on" : "off (needed)");
    return NULL;
  }
  pg_latents *ds = pg_latents_open_with(path, opts->data, opts->in_memory);
  if (!ds) return NULL;
  int64_t n = ds->info.n;
  if (opts->drop_last && opts->batch_size > n) {
    pg_fail(PG_ERR_ARG, "%s: drop_last with batch_size %lld > N = %lld samples would give no "
                        "batch", path, (long long)opts->batch_size, (long long)n);
    pg_latents_close(ds);
    return NULL;
  }
  pg_loader *l = calloc(1, sizeof *l);
  if (l) l->perm = malloc((size_t)n * sizeof *l->perm);
  if (!l || !l->perm) {
    pg_fail(PG_ERR_MEMORY, "%s: out of memory opening the loader", path);
    if (l) {
      free(l->perm);
      free(l);
    }
    pg_latents_close(ds);
    return NULL;
  }
  l->ds = ds;
  l->opts = *opts;
  l->perm_epoch = -1;
  l->state = (pg_loader_state){.seed = opts->seed, .epoch = 0, .position = 0};
  return l;
}

void pg_loader_close(pg_loader *l) {
  if (!l) return;
  pg_latents_close(l->ds);
  free(l->perm);
  free(l);
}

const pg_latents_info *pg_loader_info(const pg_loader *l) { return &l->ds->info; }

/* splitmix64's finalizer: a bijection, so distinct epochs give distinct seeds. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void build_permutation(pg_loader *l) {
  int64_t n = l->ds->info.n;
  for (int64_t i = 0; i < n; i++) l->perm[i] = i;
  if (l->opts.shuffle) {
    pg_rng rng;
    pg_rng_seed(&rng, l->state.seed ^ mix64((uint64_t)l->state.epoch + 1));
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
      int64_t j = (int64_t)pg_rng_below(&rng, (uint64_t)(i + 1));
      int64_t t = l->perm[i];
      l->perm[i] = l->perm[j];
      l->perm[j] = t;
    }
  }
  l->perm_epoch = l->state.epoch;
}

pg_status pg_loader_next(pg_loader *l, float *x, int64_t *labels, int64_t *indices,
                         int64_t *count) {
  const pg_latents *ds = l->ds;
  int64_t n = ds->info.n, b = l->opts.batch_size, per = ds->sample_numel;
  *count = 0;
  if (labels && !ds->labels)
    return pg_fail(PG_ERR_ARG, "%s: labels asked for, but the file has no dataset 'labels'",
                   ds->path);
  int64_t left = n - l->state.position;
  if (left <= 0 || (l->opts.drop_last && left < b)) {
    l->state.epoch++;
    l->state.position = 0;
  }
  if (l->perm_epoch != l->state.epoch) build_permutation(l);
  int64_t pos = l->state.position, m = n - pos < b ? n - pos : b;
  /* this rank's slice of the global batch (all of it with one rank) */
  const int64_t ranks = l->opts.ranks > 1 ? l->opts.ranks : 1, share = m / ranks,
                from = pos + (ranks > 1 ? l->opts.rank * share : 0);
  for (int64_t k = 0; k < share; k++) {
    int64_t i = l->perm[from + k];
    if (pg_latents_read(ds, i, 1, x + k * per)) return pg_last_status(); /* disk or RAM */
    if (labels) labels[k] = ds->labels[i];
    if (indices) indices[k] = i;
  }
  l->state.position = pos + m;
  *count = share;
  return PG_OK;
}

pg_loader_state pg_loader_get_state(const pg_loader *l) { return l->state; }

pg_status pg_loader_set_state(pg_loader *l, const pg_loader_state *s) {
  if (s->epoch < 0 || s->position < 0 || s->position > l->ds->info.n)
    return pg_fail(PG_ERR_ARG, "%s: loader state epoch %lld, position %lld outside [0, N = %lld]",
                   l->ds->path, (long long)s->epoch, (long long)s->position,
                   (long long)l->ds->info.n);
  l->state = *s;
  l->perm_epoch = -1; /* the seed may have changed too */
  return PG_OK;
}

int64_t pg_loader_batches_per_epoch(const pg_loader *l) {
  int64_t n = l->ds->info.n, b = l->opts.batch_size;
  return l->opts.drop_last ? n / b : (n + b - 1) / b;
}
