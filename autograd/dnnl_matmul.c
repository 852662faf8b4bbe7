/* oneDNN's matmul primitives, created once per product and kept
 * (dnnl_matmul.h). */
#include "patchgrad/autograd/dnnl_matmul.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PG_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>

typedef struct {
  bool used;
  pg_dnnl_product key;
  uint32_t alpha_bits, beta_bits;
  dnnl_primitive_t prim;
  dnnl_memory_t mem_a, mem_b, mem_c, mem_scratch;
} entry;

static struct {
  pthread_mutex_t lock;
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  pg_status availability;
  char why[160];
  entry entries[PG_DNNL_TABLE_SIZE];
  int next_victim;
  void *scratch;
  size_t cap_scratch; /* bytes */
  int64_t created[2]; /* float32, bf16 */
} dn = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t dn_once = PTHREAD_ONCE_INIT;

static void dn_init(void) {
  if (dnnl_engine_create(&dn.engine, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&dn.stream, dn.engine, dnnl_stream_default_flags) != dnnl_success) {
    snprintf(dn.why, sizeof dn.why, "oneDNN could not create its CPU engine and stream");
    dn.availability = PG_ERR_STATE;
    return;
  }
  dn.availability = PG_OK;
}

pg_status pg_dnnl_available(void) {
  pthread_once(&dn_once, dn_init);
  if (dn.availability) return pg_fail(dn.availability, "%s", dn.why);
  return PG_OK;
}

static uint32_t bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

static bool same(const entry *e, const pg_dnnl_product *p) {
  const pg_dnnl_product *q = &e->key;
  return e->used && q->bf16 == p->bf16 && q->trans_a == p->trans_a && q->trans_b == p->trans_b && q->m == p->m &&
         q->n == p->n && q->k == p->k && q->lda == p->lda && q->ldb == p->ldb && q->ldc == p->ldc &&
         e->alpha_bits == bits(p->alpha) && e->beta_bits == bits(p->beta);
}

static void destroy_entry(entry *e) {
  if (e->prim) dnnl_primitive_destroy(e->prim);
  dnnl_memory_t mems[4] = {e->mem_a, e->mem_b, e->mem_c, e->mem_scratch};
  for (int i = 0; i < 4; i++)
    if (mems[i]) dnnl_memory_destroy(mems[i]);
  memset(e, 0, sizeof *e);
}

/* Makes e the primitive of p, growing the scratchpad to its need. False
 * (e cleared) when oneDNN refuses or memory runs out. Called locked. */
static bool create(entry *e, const pg_dnnl_product *p) {
  const dnnl_data_type_t in_type = p->bf16 ? dnnl_bf16 : dnnl_f32;
  /* op(A) [m, k] as stored: A^T is a [k, m] block read with strides (1, lda) */
  dnnl_memory_desc_t md_a, md_b, md_c;
  dnnl_dims_t dims_a = {p->m, p->k}, dims_b = {p->k, p->n}, dims_c = {p->m, p->n};
  dnnl_dims_t str_a = {p->trans_a ? 1 : p->lda, p->trans_a ? p->lda : 1};
  dnnl_dims_t str_b = {p->trans_b ? 1 : p->ldb, p->trans_b ? p->ldb : 1};
  dnnl_dims_t str_c = {p->ldc, 1};
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t post = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_matmul_desc_t desc;
  bool ok = dnnl_memory_desc_init_by_strides(&md_a, 2, dims_a, in_type, str_a) == dnnl_success &&
            dnnl_memory_desc_init_by_strides(&md_b, 2, dims_b, in_type, str_b) == dnnl_success &&
            dnnl_memory_desc_init_by_strides(&md_c, 2, dims_c, dnnl_f32, str_c) == dnnl_success &&
            dnnl_matmul_desc_init(&desc, &md_a, &md_b, NULL, &md_c) == dnnl_success &&
            dnnl_primitive_attr_create(&attr) == dnnl_success &&
            dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
  if (ok && p->alpha != 1.0f) ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &p->alpha) == dnnl_success;
  if (ok && p->beta != 0.0f)
    ok = dnnl_post_ops_create(&post) == dnnl_success && dnnl_post_ops_append_sum(post, p->beta) == dnnl_success &&
         dnnl_primitive_attr_set_post_ops(attr, post) == dnnl_success;
  if (ok) ok = dnnl_primitive_desc_create(&pd, &desc, attr, dn.engine, NULL) == dnnl_success;
  if (ok) ok = dnnl_primitive_create(&e->prim, pd) == dnnl_success;
  const dnnl_memory_desc_t *md_s = ok ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
  if (ok) ok = md_s != NULL;
  const size_t need = ok ? dnnl_memory_desc_get_size(md_s) : 0;
  if (ok && (need > dn.cap_scratch || !dn.scratch)) {
    void *s = NULL;
    ok = posix_memalign(&s, 64, need ? need : 64) == 0;
    if (ok) {
      free(dn.scratch);
      dn.scratch = s;
      dn.cap_scratch = need;
    }
  }
  if (ok)
    ok = dnnl_memory_create(&e->mem_a, &md_a, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->mem_b, &md_b, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->mem_c, &md_c, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->mem_scratch, md_s, dn.engine, DNNL_MEMORY_NONE) == dnnl_success;
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (post) dnnl_post_ops_destroy(post);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) {
    destroy_entry(e);
    return false;
  }
  e->used = true;
  e->key = *p;
  e->alpha_bits = bits(p->alpha);
  e->beta_bits = bits(p->beta);
  dn.created[p->bf16]++;
  return true;
}

/* The primitive of p, created on first use (replacing the oldest when the
 * table is full); NULL when it cannot be created. Called locked. */
static entry *entry_for(const pg_dnnl_product *p) {
  for (int i = 0; i < PG_DNNL_TABLE_SIZE; i++)
    if (same(&dn.entries[i], p)) return &dn.entries[i];
  entry *e = NULL;
  for (int i = 0; i < PG_DNNL_TABLE_SIZE && !e; i++)
    if (!dn.entries[i].used) e = &dn.entries[i];
  if (!e) {
    e = &dn.entries[dn.next_victim];
    dn.next_victim = (dn.next_victim + 1) % PG_DNNL_TABLE_SIZE;
    destroy_entry(e);
  }
  return create(e, p) ? e : NULL;
}

pg_status pg_dnnl_matmul(const pg_dnnl_product *p, const void *a, const void *b, float *c) {
  const pg_status avail = pg_dnnl_available();
  if (avail) return avail;
  pthread_mutex_lock(&dn.lock);
  pg_status st = PG_OK;
  entry *e = entry_for(p);
  if (!e) {
    st = pg_fail(PG_ERR_STATE, "oneDNN has no %s matmul for m %lld n %lld k %lld (or memory ran out)",
                 p->bf16 ? "bf16" : "float32", (long long)p->m, (long long)p->n, (long long)p->k);
  } else {
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->mem_a},
                               {DNNL_ARG_WEIGHTS, e->mem_b},
                               {DNNL_ARG_DST, e->mem_c},
                               {DNNL_ARG_SCRATCHPAD, e->mem_scratch}};
    if (dnnl_memory_set_data_handle(e->mem_a, (void *)a) != dnnl_success ||
        dnnl_memory_set_data_handle(e->mem_b, (void *)b) != dnnl_success ||
        dnnl_memory_set_data_handle(e->mem_c, c) != dnnl_success ||
        dnnl_memory_set_data_handle(e->mem_scratch, dn.scratch) != dnnl_success ||
        dnnl_primitive_execute(e->prim, dn.stream, 4, args) != dnnl_success ||
        dnnl_stream_wait(dn.stream) != dnnl_success)
      st = pg_fail(PG_ERR_STATE, "oneDNN failed to run the %s matmul m %lld n %lld k %lld",
                   p->bf16 ? "bf16" : "float32", (long long)p->m, (long long)p->n, (long long)p->k);
  }
  pthread_mutex_unlock(&dn.lock);
  return st;
}

int64_t pg_dnnl_primitives_created(bool bf16) {
  pthread_mutex_lock(&dn.lock);
  const int64_t n = dn.created[bf16];
  pthread_mutex_unlock(&dn.lock);
  return n;
}

void pg_dnnl_release(bool bf16) {
  pthread_mutex_lock(&dn.lock);
  bool empty = true;
  for (int i = 0; i < PG_DNNL_TABLE_SIZE; i++) {
    entry *e = &dn.entries[i];
    if (e->used && e->key.bf16 == bf16) destroy_entry(e);
    empty = empty && !e->used;
  }
  if (empty) {
    free(dn.scratch);
    dn.scratch = NULL;
    dn.cap_scratch = 0;
  }
  pthread_mutex_unlock(&dn.lock);
}

#else /* built without oneDNN */

pg_status pg_dnnl_available(void) {
  return pg_fail(PG_ERR_STATE, "this patchgrad was built without oneDNN "
                               "(install libdnnl-dev and run meson setup again)");
}

pg_status pg_dnnl_matmul(const pg_dnnl_product *p, const void *a, const void *b, float *c) {
  (void)p, (void)a, (void)b, (void)c;
  return pg_dnnl_available();
}

int64_t pg_dnnl_primitives_created(bool bf16) {
  (void)bf16;
  return 0;
}

void pg_dnnl_release(bool bf16) { (void)bf16; }

#endif
