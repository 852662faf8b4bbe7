/* A small key/value list of ints, doubles and strings: a model's or an
 * optimizer's configuration as it is stored in a checkpoint (one HDF5
 * attribute per key, so `h5dump -H` shows them by name). Keys keep their
 * insertion order; setting an existing key replaces its value. */
#ifndef PG_KV_H
#define PG_KV_H

#include "patchgrad/autograd/api.h"

#include <hdf5.h>
#include <stdbool.h>
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

/* One setting of a model's config struct, described once so that a single
 * table serves the checkpoint's keys (here), the command line's flags
 * (cli/args.h) and the case files of `patchgrad check` (cli/check_model.h):
 *
 *   static const pg_config_field fields[] = {
 *     {"hidden", PG_FIELD_INT, offsetof(my_config, hidden), PG_FIELD_CKPT | PG_FIELD_CASE,
 *      .required = true, .flag = "--hidden", .metavar = "H", .min = 1, .max = 1 << 16},
 *     ...
 *   };
 *
 * The struct member is an int64_t (PG_FIELD_INT), a float (PG_FIELD_FLOAT,
 * stored as a double) or a bool (PG_FIELD_BOOL, a switch on the command line
 * and 0/1 in a case file). */
typedef enum { PG_FIELD_INT, PG_FIELD_FLOAT, PG_FIELD_BOOL } pg_field_type;

enum {
  PG_FIELD_CKPT = 1, /* a key of the checkpoint's config */
  PG_FIELD_CASE = 2, /* an attribute of a case file */
};

typedef struct {
  const char *key;     /* checkpoint key and case-file attribute, e.g. "patch_size" */
  pg_field_type type;
  size_t offset;       /* offsetof(config, member) */
  unsigned where;      /* PG_FIELD_CKPT | PG_FIELD_CASE: the files that hold it */
  bool required;       /* a checkpoint must hold it; a case file that leaves it
                        * out reads 0, which the model's config check names */
  double def;          /* otherwise: the value when a file leaves it out */
  const char *flag;    /* command-line flag ("--patch"); NULL: not a flag (from the data) */
  const char *metavar; /* the flag's value in usage lines ("P") */
  double min, max;     /* the flag's accepted range */
  const char *help;    /* the flag's own usage line; NULL: listed on the model's
                        * shared line of flags */
} pg_config_field;

/* Sets the fields marked PG_FIELD_CKPT under their keys, in table order
 * (floats as doubles, bools as 0/1 integers). */
PG_API pg_status pg_kv_set_fields(pg_kv *kv, const void *config, int n, const pg_config_field *fields);
/* Reads the fields marked PG_FIELD_CKPT into config: a required one that is
 * absent or not an integer is an error naming its key ("checkpoint config:
 * missing integer 'hidden'"); an optional one takes `def` when absent. */
PG_API pg_status pg_kv_get_fields(const pg_kv *kv, void *config, int n, const pg_config_field *fields);

/* Every entry as a scalar attribute of obj (int64, float64, UTF-8 string). */
PG_API pg_status pg_kv_write_attrs(const pg_kv *kv, hid_t obj);
/* Every scalar attribute of obj appended to kv (integers as ints, floats as
 * doubles, strings as strings), in creation order; `skip` (may be NULL) names
 * one attribute to leave out. Other attributes (arrays) are an error. */
PG_API pg_status pg_kv_read_attrs(pg_kv *kv, hid_t obj, const char *skip);

#endif
