#include "check_model.h"

#include <stdio.h>
#include <string.h>

void pg_case_read_fields(pg_case *c, int n, const pg_config_field *fields, void *config) {
  for (int i = 0; i < n; i++) {
    const pg_config_field *f = &fields[i];
    if (!(f->where & PG_FIELD_CASE)) continue;
    void *member = (char *)config + f->offset;
    const double fallback = f->required ? 0 : f->def;
    if (f->type == PG_FIELD_FLOAT) *(float *)member = (float)pg_case_attr_double(c, f->key, fallback);
    else if (f->type == PG_FIELD_INT) *(int64_t *)member = pg_case_attr_int(c, f->key, (int64_t)fallback);
    else *(bool *)member = pg_case_attr_int(c, f->key, (int64_t)fallback) != 0;
  }
}

void pg_case_load_params(pg_case *c, pg_params *ps) {
  for (int i = 0; i < ps->count && !c->error; i++) {
    pg_param *p = &ps->items[i];
    char path[PG_PARAM_NAME_MAX + 8];
    snprintf(path, sizeof path, "params/%s", p->name);
    if (p->kind == PG_PARAM_BUFFER) {
      pg_case_compare(c, path, p->tensor);
      continue;
    }
    pg_tensor *src = pg_case_array(c, path);
    if (!src) break;
    if (!pg_same_shape(src, p->tensor)) {
      pg_case_fail(c, "array '%s' has shape %s, the model's parameter is %s", path,
                   pg_shape_of(src), pg_shape_of(p->tensor));
      break;
    }
    memcpy(p->tensor->data, src->data, (size_t)src->numel * sizeof(float));
  }
}

void pg_case_compare_param_grads(pg_case *c, const pg_params *ps) {
  if (c->error || !pg_case_wants_grads(c)) return;
  for (int i = 0; i < ps->count; i++) {
    const pg_param *p = &ps->items[i];
    if (p->kind == PG_PARAM_BUFFER) continue;
    char path[PG_PARAM_NAME_MAX + 16];
    snprintf(path, sizeof path, "grad/params/%s", p->name);
    pg_case_compare_raw(c, path, p->tensor->grad, p->tensor->ndim, p->tensor->shape);
  }
}
