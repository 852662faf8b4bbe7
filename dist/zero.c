/* Sharded optimizer state, ZeRO stage 1 (zero.h). */
#include "patchgrad/dist/zero.h"
#include "mpi_error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PG_HAVE_MPI
#include <mpi.h>
#endif

/* Rank r's first element of the n: ranks get n / k or n / k + 1, in order. */
static int64_t range_begin(int64_t n, int k, int r) {
  return (int64_t)r * (n / k) + (r < n % k ? r : n % k);
}

/* Rank r's range of the layout, clipped to the flat buffer: what it
 * contributes to the parameters' allgather. */
static void flat_range(const pg_zero *z, int r, int64_t *b, int64_t *e) {
  const int k = z->dist->size;
  *b = range_begin(z->total, k, r);
  *e = range_begin(z->total, k, r + 1);
  if (*b > z->numel) *b = z->numel;
  if (*e > z->numel) *e = z->numel;
}

/* The largest count of one MPI call: z->piece within [1, INT_MAX]. */
static int64_t piece_of(const pg_zero *z) {
  return z->piece < 1 ? 1 : z->piece > INT_MAX ? INT_MAX : z->piece;
}

/* The optimizer's state tensors of a slot, in the order pg_optimizer_init
 * creates them (a slot has SGD's or Adam's, never both). */
enum { N_KINDS = 4 };

static pg_tensor *slot_state(const pg_optim_slot *s, int kind) {
  switch (kind) {
  case 0: return s->momentum_buffer;
  case 1: return s->exp_avg;
  case 2: return s->exp_avg_sq;
  default: return s->max_exp_avg_sq;
  }
}

/* The model's entry behind a slot of z->opt (a slot points at its shard). */
static int entry_of_slot(const pg_zero *z, const pg_optim_slot *s) {
  return (int)(s->param - z->shards.items);
}

static void release(pg_zero *z) {
  pg_optimizer_free(&z->opt);
  free(z->shards.items);
  free(z->shard_tensors);
  free(z->flat);
  free(z->offset);
  free(z->part_lo);
  free(z->counts);
  free(z->displs);
  memset(z, 0, sizeof *z);
}

/* Gives every adopted parameter a buffer of its own again. */
static void give_back(pg_zero *z) {
  const int64_t *offset = z->reducer->offset;
  for (int i = 0; i < z->params_count; i++) {
    if (offset[i] < 0) continue;
    pg_tensor *t = z->params->items[i].tensor;
    float *own = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (own) memcpy(own, t->data, sizeof(float) * (size_t)t->numel);
    t->data = own; /* NULL only if out of memory */
  }
}

pg_status pg_zero_init(pg_zero *z, pg_reducer *reducer, const pg_optim_config *cfg,
                       const pg_param_group *groups, int n_groups) {
  if (!z) return pg_fail(PG_ERR_ARG, "pg_zero_init: z is NULL");
  memset(z, 0, sizeof *z);
  if (!reducer || !reducer->params || !reducer->dist)
    return pg_fail(PG_ERR_ARG, "pg_zero_init: the reducer is not initialised");
  pg_params *params = reducer->params;
  const int n = params->count;
  const pg_dist *d = reducer->dist;
  z->dist = d;
  z->reducer = reducer;
  z->params = params;
  z->params_count = n;
  z->numel = reducer->numel;
  z->piece = INT_MAX;
  for (int i = 0; i < n; i++)
    if (reducer->offset[i] >= 0 && params->items[i].tensor->grad != reducer->flat + reducer->offset[i])
      return pg_fail(PG_ERR_ARG,
                     "pg_zero_init: parameter '%s' has a gradient outside the reducer's buffer "
                     "(replaced since the reducer was built)",
                     params->items[i].name);
  z->offset = calloc((size_t)(n ? n : 1), sizeof *z->offset);
  z->shards.items = calloc((size_t)(n ? n : 1), sizeof *z->shards.items);
  z->shard_tensors = calloc((size_t)(n ? n : 1), sizeof *z->shard_tensors);
  z->part_lo = calloc((size_t)(n ? n : 1), sizeof *z->part_lo);
  z->counts = calloc((size_t)d->size, sizeof *z->counts);
  z->displs = calloc((size_t)d->size, sizeof *z->displs);
  if (!z->offset || !z->shards.items || !z->shard_tensors || !z->part_lo || !z->counts || !z->displs ||
      posix_memalign((void **)&z->flat, 64, sizeof(float) * (size_t)(z->numel ? z->numel : 1))) {
    z->flat = NULL;
    release(z);
    return pg_fail(PG_ERR_MEMORY, "pg_zero_init: out of memory for %d parameters", n);
  }
  /* the layout: the reducer's buffer, then the trainable entries outside it */
  z->total = z->numel;
  for (int i = 0; i < n; i++) {
    z->offset[i] = reducer->offset[i];
    if (z->offset[i] < 0 && pg_param_trainable(&params->items[i])) {
      z->offset[i] = z->total;
      z->total += params->items[i].tensor->numel;
    }
  }
  z->begin = range_begin(z->total, d->size, d->rank);
  z->end = range_begin(z->total, d->size, d->rank + 1);
  /* the allgather: each rank's range within the flat buffer (used when
   * numel <= piece <= INT_MAX, so they fit) */
  for (int r = 0; r < d->size; r++) {
    int64_t b, e;
    flat_range(z, r, &b, &e);
    z->counts[r] = (int)(e - b < INT_MAX ? e - b : INT_MAX);
    z->displs[r] = (int)(b < INT_MAX ? b : INT_MAX);
  }
  /* the shards: this rank's part of every trainable entry, as a 1-D tensor */
  for (int i = 0; i < n; i++) {
    const pg_param *p = &params->items[i];
    const pg_tensor *t = p->tensor;
    const int64_t o = z->offset[i];
    int64_t lo = 0, hi = 0;
    if (o >= 0) { /* the overlap of [o, o + numel) with this rank's range */
      lo = (z->begin > o ? z->begin : o) - o;
      hi = (z->end < o + t->numel ? z->end : o + t->numel) - o;
      if (hi < lo) lo = hi = 0;
    }
    pg_tensor *s = &z->shard_tensors[i];
    s->ndim = 1;
    s->shape[0] = s->numel = hi - lo;
    s->requires_grad = pg_param_trainable(p) && t->requires_grad;
    s->grad = reducer->offset[i] >= 0 ? t->grad + lo : NULL;
    z->part_lo[i] = lo;
    pg_param *sp = &z->shards.items[i];
    memcpy(sp->name, p->name, sizeof sp->name);
    sp->kind = p->kind;
    sp->tensor = s;
  }
  z->shards.count = z->shards.cap = n;
  pg_status st = pg_optimizer_init_groups(&z->opt, &z->shards, cfg, groups, n_groups);
  if (st) {
    release(z);
    return st;
  }
  /* nothing can fail from here: adopt the values, freeze the frozen groups */
  for (int i = 0; i < n; i++) {
    pg_tensor *t = params->items[i].tensor;
    pg_tensor *s = &z->shard_tensors[i];
    const int64_t o = reducer->offset[i];
    if (o >= 0) { /* trained: its values move into the flat buffer */
      memcpy(z->flat + o, t->data, sizeof(float) * (size_t)t->numel);
      free(t->data);
      t->data = z->flat + o;
    }
    s->data = t->data + z->part_lo[i];
    if (pg_param_trainable(&params->items[i]) && !s->requires_grad)
      (void)pg_tensor_set_requires_grad(t, false); /* turning off cannot fail */
  }
  return PG_OK;
}

void pg_zero_free(pg_zero *z) {
  if (!z || !z->params) return;
  give_back(z);
  release(z);
}

void pg_zero_zero_grad(pg_zero *z) {
  if (z && z->params) pg_params_zero_grad(z->params);
}

int64_t pg_zero_state_numel(const pg_zero *z) { return pg_params_numel(&z->opt.state, false); }

/* ---- communication ---- */

/* Every rank's part of buf (laid out as flat) sent to every rank. */
static pg_status allgather(pg_zero *z, float *buf) {
  const pg_dist *d = z->dist;
  if (d->size == 1) return PG_OK;
#ifdef PG_HAVE_MPI
  MPI_Comm comm = *(MPI_Comm *)d->comm;
  const int64_t piece = piece_of(z);
  if (z->numel <= piece) {
    const int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, z->counts, z->displs,
                                  MPI_FLOAT, comm);
    return rc == MPI_SUCCESS ? PG_OK : pg_dist_mpi_fail(rc, "MPI_Allgatherv");
  }
  /* counts or displacements beyond an int: each rank broadcasts its part */
  for (int r = 0; r < d->size; r++) {
    int64_t b, e;
    flat_range(z, r, &b, &e);
    for (int64_t at = b; at < e; at += piece) {
      const int64_t len = e - at < piece ? e - at : piece;
      const int rc = MPI_Bcast(buf + at, (int)len, MPI_FLOAT, r, comm);
      if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Bcast (allgather in pieces)");
    }
  }
  return PG_OK;
#else
  (void)buf;
  return PG_OK;
#endif
}

/* Every rank's range of the layout sent to rank 0: rank 0's own is
 * already in place in all (total floats); the others send theirs from
 * mine. */
static pg_status gather(pg_zero *z, const float *mine, float *all) {
  const pg_dist *d = z->dist;
  const int k = d->size;
  if (k == 1) return PG_OK;
#ifdef PG_HAVE_MPI
  MPI_Comm comm = *(MPI_Comm *)d->comm;
  const int64_t len = z->end - z->begin, piece = piece_of(z);
  if (z->total <= piece) {
    int rc;
    if (d->rank > 0) {
      rc = MPI_Gatherv(mine, (int)len, MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, comm);
    } else {
      int *counts = malloc(2 * sizeof(int) * (size_t)k);
      if (!counts) return pg_fail(PG_ERR_MEMORY, "pg_zero_gather_state: out of memory");
      for (int r = 0; r < k; r++) {
        counts[k + r] = (int)range_begin(z->total, k, r);
        counts[r] = (int)range_begin(z->total, k, r + 1) - counts[k + r];
      }
      rc = MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all, counts, counts + k, MPI_FLOAT, 0, comm);
      free(counts);
    }
    return rc == MPI_SUCCESS ? PG_OK : pg_dist_mpi_fail(rc, "MPI_Gatherv");
  }
  /* beyond an int: point to point, in pieces */
  if (d->rank > 0) {
    for (int64_t at = 0; at < len; at += piece) {
      const int64_t n = len - at < piece ? len - at : piece;
      const int rc = MPI_Send(mine + at, (int)n, MPI_FLOAT, 0, 0, comm);
      if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Send (gather in pieces)");
    }
    return PG_OK;
  }
  for (int r = 1; r < k; r++) {
    const int64_t b = range_begin(z->total, k, r), e = range_begin(z->total, k, r + 1);
    for (int64_t at = b; at < e; at += piece) {
      const int64_t n = e - at < piece ? e - at : piece;
      const int rc = MPI_Recv(all + at, (int)n, MPI_FLOAT, r, 0, comm, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Recv (gather in pieces)");
    }
  }
  return PG_OK;
#else
  (void)mine, (void)all;
  return PG_OK;
#endif
}

/* ---- the step ---- */

pg_status pg_zero_step(pg_zero *z) {
  if (!z || !z->params) return pg_fail(PG_ERR_STATE, "pg_zero_step: not initialised");
  if (z->params->count != z->params_count)
    return pg_fail(PG_ERR_STATE,
                   "pg_zero_step: the parameter list has %d entries, %d at init "
                   "(register every parameter before creating the optimizer)",
                   z->params->count, z->params_count);
  for (int i = 0; i < z->params_count; i++) {
    const pg_param *p = &z->params->items[i];
    if (!pg_param_trainable(p)) continue;
    if (z->reducer->offset[i] < 0 && pg_optim_param_active(p))
      return pg_fail(PG_ERR_STATE,
                     "pg_zero_step: parameter '%s' takes part, but it did not require grad when "
                     "the reducer was built, so its gradient is not averaged over ranks",
                     p->name);
  }
  /* freezing follows the model's tensors, step by step */
  for (int i = 0; i < z->params_count; i++)
    z->shard_tensors[i].requires_grad =
        pg_param_trainable(&z->params->items[i]) && z->params->items[i].tensor->requires_grad;
  pg_status st = pg_optimizer_step(&z->opt);
  return st ? st : allgather(z, z->flat);
}

/* ---- the whole state ---- */

/* The name pg_optimizer gives a slot's state tensor of that kind. */
static const char *const kind_names[N_KINDS] = {"momentum_buffer", "exp_avg", "exp_avg_sq",
                                                "max_exp_avg_sq"};

/* Checks that full holds every state entry with its parameter's size;
 * fills at[slot * N_KINDS + kind] with the matching tensors (NULL where the
 * slot has no such state). */
static pg_status match_full(const pg_zero *z, const pg_params *full, pg_tensor **at, const char *who) {
  if (!full) return pg_fail(PG_ERR_ARG, "%s: the full state is NULL", who);
  for (int k = 0; k < z->opt.n_slots; k++) {
    const pg_optim_slot *s = &z->opt.slots[k];
    const pg_tensor *real = z->params->items[entry_of_slot(z, s)].tensor;
    for (int kind = 0; kind < N_KINDS; kind++) {
      at[k * N_KINDS + kind] = NULL;
      if (!slot_state(s, kind)) continue;
      char name[2 * PG_PARAM_NAME_MAX];
      snprintf(name, sizeof name, "%s.%s", s->param->name, kind_names[kind]);
      const pg_param *f = pg_params_find(full, name);
      if (!f) return pg_fail(PG_ERR_ARG, "%s: the full state has no entry '%s'", who, name);
      if (f->tensor->numel != real->numel)
        return pg_fail(PG_ERR_ARG, "%s: '%s' has %lld elements, its parameter %lld", who, name,
                       (long long)f->tensor->numel, (long long)real->numel);
      at[k * N_KINDS + kind] = f->tensor;
    }
  }
  return PG_OK;
}

pg_status pg_zero_full_state(const pg_zero *z, pg_params *full) {
  pg_params_init(full);
  /* slots in parameter order, kinds in creation order: pg_optimizer's order */
  for (int k = 0; k < z->opt.n_slots; k++) {
    const pg_optim_slot *s = &z->opt.slots[k];
    const pg_tensor *real = z->params->items[entry_of_slot(z, s)].tensor;
    for (int kind = 0; kind < N_KINDS; kind++)
      if (slot_state(s, kind) &&
          !pg_params_add(full, PG_PARAM_BUFFER, real->ndim, real->shape, "%s.%s", s->param->name,
                         kind_names[kind])) {
        pg_params_free(full);
        return pg_last_status();
      }
  }
  return PG_OK;
}

pg_status pg_zero_gather_state(pg_zero *z, pg_params *full) {
  const pg_dist *d = z->dist;
  const bool root = d->rank == 0;
  const int n_at = z->opt.n_slots * N_KINDS;
  pg_tensor **at = calloc((size_t)(n_at ? n_at : 1), sizeof *at);
  const int64_t len = z->end - z->begin;
  /* rank 0 assembles the whole layout; the others pack their range */
  const int64_t size = root ? z->total : len;
  float *buf = malloc(sizeof(float) * (size_t)(size ? size : 1));
  pg_status st = at && buf ? PG_OK
                           : pg_fail(PG_ERR_MEMORY, "pg_zero_gather_state: out of memory for %lld floats",
                                     (long long)size);
  if (!st && root) st = match_full(z, full, at, "pg_zero_gather_state");
  st = pg_dist_agree(d, st);
  for (int kind = 0; !st && kind < N_KINDS; kind++) {
    bool any = false;
    for (int k = 0; k < z->opt.n_slots; k++) any = any || slot_state(&z->opt.slots[k], kind);
    if (!any) continue; /* the same on every rank: the slots follow the groups */
    float *mine = root ? buf + z->begin : buf;
    memset(mine, 0, sizeof(float) * (size_t)len);
    for (int k = 0; k < z->opt.n_slots; k++) {
      const pg_tensor *part = slot_state(&z->opt.slots[k], kind);
      const int i = entry_of_slot(z, &z->opt.slots[k]);
      if (!part || !part->numel) continue;
      memcpy(mine + (z->offset[i] + z->part_lo[i] - z->begin), part->data, sizeof(float) * (size_t)part->numel);
    }
    if ((st = gather(z, mine, buf))) break;
    if (!root) continue;
    for (int k = 0; k < z->opt.n_slots; k++) {
      pg_tensor *whole = at[k * N_KINDS + kind];
      if (whole)
        memcpy(whole->data, buf + z->offset[entry_of_slot(z, &z->opt.slots[k])],
               sizeof(float) * (size_t)whole->numel);
    }
  }
  free(buf);
  free(at);
  return st;
}

pg_status pg_zero_scatter_state(pg_zero *z, const pg_params *full) {
  const int n_at = z->opt.n_slots * N_KINDS;
  pg_tensor **at = calloc((size_t)(n_at ? n_at : 1), sizeof *at);
  if (!at) return pg_fail(PG_ERR_MEMORY, "pg_zero_scatter_state: out of memory");
  pg_status st = match_full(z, full, at, "pg_zero_scatter_state");
  for (int k = 0; !st && k < z->opt.n_slots; k++) {
    const int i = entry_of_slot(z, &z->opt.slots[k]);
    for (int kind = 0; kind < N_KINDS; kind++) {
      pg_tensor *part = slot_state(&z->opt.slots[k], kind);
      if (part && part->numel)
        memcpy(part->data, at[k * N_KINDS + kind]->data + z->part_lo[i],
               sizeof(float) * (size_t)part->numel);
    }
  }
  free(at);
  return st;
}
