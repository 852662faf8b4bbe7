#include "patchgrad/autograd/params.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pg_params_init(pg_params *ps) { *ps = (pg_params){0}; }

void pg_params_free(pg_params *ps) {
  for (int i = 0; i < ps->count; i++) pg_tensor_free(ps->items[i].tensor);
  free(ps->items);
  *ps = (pg_params){0};
}

bool pg_param_trainable(const pg_param *p) { return p->kind != PG_PARAM_BUFFER; }

pg_param *pg_params_find(const pg_params *ps, const char *name) {
  for (int i = 0; i < ps->count; i++)
    if (!strcmp(ps->items[i].name, name)) return &ps->items[i];
  return NULL;
}

pg_tensor *pg_params_add(pg_params *ps, pg_param_kind kind, int ndim, const int64_t *shape,
                         const char *name_fmt, ...) {
  char name[PG_PARAM_NAME_MAX];
  va_list ap;
  va_start(ap, name_fmt);
  int len = vsnprintf(name, sizeof name, name_fmt, ap);
  va_end(ap);
  if (len < 0 || len >= PG_PARAM_NAME_MAX) {
    pg_fail(PG_ERR_ARG, "pg_params_add: name '%s...' is longer than %d characters", name,
            PG_PARAM_NAME_MAX - 1);
    return NULL;
  }
  if (pg_params_find(ps, name)) {
    pg_fail(PG_ERR_ARG, "pg_params_add: a parameter named '%s' exists already", name);
    return NULL;
  }
  if (ps->count == ps->cap) {
    int cap = ps->cap ? 2 * ps->cap : 32;
    pg_param *items = realloc(ps->items, (size_t)cap * sizeof *items);
    if (!items) {
      pg_fail(PG_ERR_MEMORY, "pg_params_add: out of memory");
      return NULL;
    }
    ps->items = items;
    ps->cap = cap;
  }
  pg_tensor *t = pg_tensor_new(ndim, shape, kind != PG_PARAM_BUFFER);
  if (!t) return NULL;
  pg_param *p = &ps->items[ps->count++];
  memcpy(p->name, name, (size_t)len + 1);
  p->kind = kind;
  p->tensor = t;
  return t;
}

void pg_params_zero_grad(pg_params *ps) {
  for (int i = 0; i < ps->count; i++) pg_tensor_zero_grad(ps->items[i].tensor);
}

int64_t pg_params_numel(const pg_params *ps, bool trainable_only) {
  int64_t n = 0;
  for (int i = 0; i < ps->count; i++)
    if (!trainable_only || pg_param_trainable(&ps->items[i])) n += ps->items[i].tensor->numel;
  return n;
}
