#include "patchgrad/io/kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/io/h5util.h"

void pg_kv_init(pg_kv *kv) { *kv = (pg_kv){0}; }

void pg_kv_free(pg_kv *kv) {
  free(kv->items);
  *kv = (pg_kv){0};
}

void pg_kv_clear(pg_kv *kv) { kv->count = 0; }

const pg_kv_entry *pg_kv_find(const pg_kv *kv, const char *key) {
  for (int i = 0; i < kv->count; i++)
    if (!strcmp(kv->items[i].key, key)) return &kv->items[i];
  return NULL;
}

/* The entry for key, created (zeroed) when absent. */
static pg_kv_entry *slot(pg_kv *kv, const char *key) {
  size_t len = strlen(key);
  if (len == 0 || len >= PG_KV_KEY_MAX || strchr(key, '/')) {
    pg_fail(PG_ERR_ARG, "pg_kv: key '%s' must be 1..%d characters without '/'", key,
            PG_KV_KEY_MAX - 1);
    return NULL;
  }
  pg_kv_entry *e = (pg_kv_entry *)pg_kv_find(kv, key);
  if (e) return e;
  if (kv->count == kv->cap) {
    int cap = kv->cap ? 2 * kv->cap : 16;
    pg_kv_entry *items = realloc(kv->items, (size_t)cap * sizeof *items);
    if (!items) {
      pg_fail(PG_ERR_MEMORY, "pg_kv: out of memory adding '%s'", key);
      return NULL;
    }
    kv->items = items;
    kv->cap = cap;
  }
  e = &kv->items[kv->count++];
  memset(e, 0, sizeof *e);
  memcpy(e->key, key, len + 1);
  return e;
}

pg_status pg_kv_set_int(pg_kv *kv, const char *key, int64_t value) {
  pg_kv_entry *e = slot(kv, key);
  if (!e) return pg_last_status();
  e->type = PG_KV_INT;
  e->i = value;
  return PG_OK;
}

pg_status pg_kv_set_double(pg_kv *kv, const char *key, double value) {
  pg_kv_entry *e = slot(kv, key);
  if (!e) return pg_last_status();
  e->type = PG_KV_DOUBLE;
  e->d = value;
  return PG_OK;
}

pg_status pg_kv_set_string(pg_kv *kv, const char *key, const char *value) {
  if (strlen(value) >= PG_KV_STRING_MAX)
    return pg_fail(PG_ERR_ARG, "pg_kv: value of '%s' is longer than %d characters", key,
                   PG_KV_STRING_MAX - 1);
  pg_kv_entry *e = slot(kv, key);
  if (!e) return pg_last_status();
  e->type = PG_KV_STRING;
  snprintf(e->s, sizeof e->s, "%s", value);
  return PG_OK;
}

static const char *type_name(pg_kv_type t) {
  return t == PG_KV_INT ? "int" : t == PG_KV_DOUBLE ? "double" : "string";
}

static int typed(const pg_kv *kv, const char *key, pg_kv_type want, const pg_kv_entry **out) {
  const pg_kv_entry *e = pg_kv_find(kv, key);
  if (!e) return 0;
  bool ok = e->type == want || (want == PG_KV_DOUBLE && e->type == PG_KV_INT);
  if (!ok) {
    pg_fail(PG_ERR_FORMAT, "setting '%s' is a %s, expected a %s", key, type_name(e->type),
            type_name(want));
    return -1;
  }
  *out = e;
  return 1;
}

int pg_kv_get_int(const pg_kv *kv, const char *key, int64_t *value) {
  const pg_kv_entry *e;
  int rc = typed(kv, key, PG_KV_INT, &e);
  if (rc == 1) *value = e->i;
  return rc;
}

int pg_kv_get_double(const pg_kv *kv, const char *key, double *value) {
  const pg_kv_entry *e;
  int rc = typed(kv, key, PG_KV_DOUBLE, &e);
  if (rc == 1) *value = e->type == PG_KV_INT ? (double)e->i : e->d;
  return rc;
}

int pg_kv_get_string(const pg_kv *kv, const char *key, const char **value) {
  const pg_kv_entry *e;
  int rc = typed(kv, key, PG_KV_STRING, &e);
  if (rc == 1) *value = e->s;
  return rc;
}

pg_status pg_kv_set_fields(pg_kv *kv, const void *config, int n, const pg_config_field *fields) {
  for (int i = 0; i < n; i++) {
    const pg_config_field *f = &fields[i];
    if (!(f->where & PG_FIELD_CKPT)) continue;
    const void *member = (const char *)config + f->offset;
    pg_status st = f->type == PG_FIELD_INT     ? pg_kv_set_int(kv, f->key, *(const int64_t *)member)
                   : f->type == PG_FIELD_FLOAT ? pg_kv_set_double(kv, f->key, *(const float *)member)
                                               : pg_kv_set_int(kv, f->key, *(const bool *)member);
    if (st) return st;
  }
  return PG_OK;
}

pg_status pg_kv_get_fields(const pg_kv *kv, void *config, int n, const pg_config_field *fields) {
  for (int i = 0; i < n; i++) {
    const pg_config_field *f = &fields[i];
    if (!(f->where & PG_FIELD_CKPT)) continue;
    void *member = (char *)config + f->offset;
    if (f->type == PG_FIELD_FLOAT) {
      double d = f->def;
      int rc = pg_kv_get_double(kv, f->key, &d);
      if (rc < 0 || (rc == 0 && f->required))
        return pg_fail(PG_ERR_FORMAT, "checkpoint config: missing number '%s'", f->key);
      *(float *)member = (float)d;
    } else {
      int64_t v = (int64_t)f->def;
      int rc = pg_kv_get_int(kv, f->key, &v);
      if (rc < 0 || (rc == 0 && f->required))
        return pg_fail(PG_ERR_FORMAT, "checkpoint config: missing integer '%s'", f->key);
      if (f->type == PG_FIELD_INT) *(int64_t *)member = v;
      else *(bool *)member = v != 0;
    }
  }
  return PG_OK;
}

pg_status pg_kv_write_attrs(const pg_kv *kv, hid_t obj) {
  for (int i = 0; i < kv->count; i++) {
    const pg_kv_entry *e = &kv->items[i];
    pg_status st = e->type == PG_KV_INT      ? pg_h5_set_attr_int(obj, e->key, e->i)
                   : e->type == PG_KV_DOUBLE ? pg_h5_set_attr_double(obj, e->key, e->d)
                                             : pg_h5_set_attr_string(obj, e->key, e->s);
    if (st) return st;
  }
  return PG_OK;
}

typedef struct {
  pg_kv *kv;
  const char *skip;
  pg_status st;
} read_visit;

static herr_t read_one(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  read_visit *v = data;
  if (v->skip && !strcmp(name, v->skip)) return 0;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t t = H5Aget_type(a);
  H5T_class_t cls = H5Tget_class(t);
  H5Tclose(t);
  H5Aclose(a);
  int rc;
  if (cls == H5T_INTEGER) {
    int64_t x;
    rc = pg_h5_attr_int(obj, name, &x);
    if (rc == 1) v->st = pg_kv_set_int(v->kv, name, x);
  } else if (cls == H5T_FLOAT) {
    double x;
    rc = pg_h5_attr_double(obj, name, &x);
    if (rc == 1) v->st = pg_kv_set_double(v->kv, name, x);
  } else if (cls == H5T_STRING) {
    char s[PG_KV_STRING_MAX];
    rc = pg_h5_attr_string(obj, name, s, sizeof s);
    if (rc == 1) v->st = pg_kv_set_string(v->kv, name, s);
  } else {
    rc = -1;
    pg_fail(PG_ERR_FORMAT, "attribute '%s' is not a number or a string", name);
  }
  if (rc != 1 && !v->st) v->st = pg_last_status() ? pg_last_status() : PG_ERR_FORMAT;
  return v->st ? -1 : 0;
}

pg_status pg_kv_read_attrs(pg_kv *kv, hid_t obj, const char *skip) {
  read_visit v = {kv, skip, PG_OK};
  /* creation order when the object tracks it, else by name */
  hsize_t idx = 0;
  herr_t e = H5Aiterate2(obj, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, read_one, &v);
  if (e < 0 && !v.st) {
    idx = 0;
    e = H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, read_one, &v);
  }
  if (v.st) return v.st;
  if (e < 0) return pg_fail(PG_ERR_FORMAT, "cannot list the attributes");
  return PG_OK;
}
