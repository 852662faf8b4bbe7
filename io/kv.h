/* A small key/value list of ints, doubles and strings: a model's or an
 * optimizer's configuration as it is stored in a checkpoint (one HDF5
 * attribute per key, so `h5dump -H` shows them by name). Keys keep their
 * insertion order; setting an existing key replaces its value. */
#ifndef PG_KV_H
#define PG_KV_H

#include "patchgrad/autograd/api.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"

#define PG_KV_KEY_MAX 64
#define PG_KV_STRING_MAX 256

typedef enum { PG_KV_INT, PG_KV_DOUBLE, PG_KV_STRING } pg_kv_type;

typedef struct {
  char key[PG_KV_KEY_MAX];
  pg_kv_type type;
  int64_t i;
  double d;
  char s[PG_KV_STRING_MAX];
} pg_kv_entry;

typedef struct {
  pg_kv_entry *items;
  int count, cap;
} pg_kv;

PG_API void pg_kv_init(pg_kv *kv);
PG_API void pg_kv_free(pg_kv *kv);
PG_API void pg_kv_clear(pg_kv *kv);

/* Errors: a key empty, too long or holding '/', a string too long. */
PG_API pg_status pg_kv_set_int(pg_kv *kv, const char *key, int64_t value);
PG_API pg_status pg_kv_set_double(pg_kv *kv, const char *key, double value);
PG_API pg_status pg_kv_set_string(pg_kv *kv, const char *key, const char *value);

PG_API const pg_kv_entry *pg_kv_find(const pg_kv *kv, const char *key);
/* 1: found (value set); 0: absent; -1: present with another type (message
 * names the key and both types). get_double accepts an int entry. */
PG_API int pg_kv_get_int(const pg_kv *kv, const char *key, int64_t *value);
PG_API int pg_kv_get_double(const pg_kv *kv, const char *key, double *value);
PG_API int pg_kv_get_string(const pg_kv *kv, const char *key, const char **value);

/* A config struct's integer fields as a table, so that one list of keys
 * serves both directions: {"hidden", offsetof(my_config, hidden)}, ...
 * each field an int64_t. */
typedef struct {
  const char *key;
  size_t offset;
} pg_kv_int_field;

/* Sets each field of config under its key, in table order. */
PG_API pg_status pg_kv_set_int_fields(pg_kv *kv, const void *config, int n, const pg_kv_int_field *fields);
/* Reads each key into its field of config; an error names the first key
 * that is absent or not an integer ("checkpoint config: missing integer"). */
PG_API pg_status pg_kv_get_int_fields(const pg_kv *kv, void *config, int n, const pg_kv_int_field *fields);

/* Every entry as a scalar attribute of obj (int64, float64, UTF-8 string). */
PG_API pg_status pg_kv_write_attrs(const pg_kv *kv, hid_t obj);
/* Every scalar attribute of obj appended to kv (integers as ints, floats as
 * doubles, strings as strings), in creation order; `skip` (may be NULL) names
 * one attribute to leave out. Other attributes (arrays) are an error. */
PG_API pg_status pg_kv_read_attrs(pg_kv *kv, hid_t obj, const char *skip);

#endif
