#include "patchgrad/io/checkpoint.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/io/h5util.h"

#define FORMAT_NAME "patchgrad checkpoint"
#define FORMAT_VERSION 1

static const char *kind_name(pg_param_kind k) {
  switch (k) {
    case PG_PARAM_WEIGHT: return "weight";
    case PG_PARAM_BIAS: return "bias";
    case PG_PARAM_NORM: return "norm";
    case PG_PARAM_EMBEDDING: return "embedding";
    default: return "buffer";
  }
}

static void file_name(hid_t file, char *buf, size_t cap) {
  if (H5Fget_name(file, buf, cap) < 0) snprintf(buf, cap, "(checkpoint)");
}

/* ---- One group of named tensors ---- */

pg_status pg_params_save_group(hid_t file, const char *group, const pg_params *ps) {
  char fname[1024];
  file_name(file, fname, sizeof fname);
  for (int i = 0; i < ps->count; i++) {
    const char *name = ps->items[i].name;
    if (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
      return pg_fail(PG_ERR_ARG, "%s: cannot save '%s/%s': a tensor name must be non-empty "
                                 "without '/'", fname, group, name);
    /* never write a checkpoint that loading would refuse */
    const pg_tensor *t = ps->items[i].tensor;
    for (int64_t k = 0; k < t->numel; k++)
      if (!isfinite(t->data[k]))
        return pg_fail(PG_ERR_ARG, "%s: cannot save '%s/%s': element %lld is %g (a checkpoint's "
                                   "tensors must be finite)", fname, group, name, (long long)k,
                       t->data[k]);
  }
  hid_t g = pg_h5_create_group(file, group);
  if (g < 0) return pg_error_prefix(fname);
  pg_status st = PG_OK;
  for (int i = 0; !st && i < ps->count; i++) {
    const pg_param *p = &ps->items[i];
    const pg_tensor *t = p->tensor;
    st = pg_h5_write_floats(g, p->name, t->ndim, t->shape, t->data, 0);
    hid_t d = st ? -1 : H5Dopen2(g, p->name, H5P_DEFAULT);
    if (d >= 0) {
      st = pg_h5_set_attr_string(d, "kind", kind_name(p->kind));
      H5Dclose(d);
    }
    if (st) {
      char where[1200];
      snprintf(where, sizeof where, "%s: group '%s'", fname, group);
      pg_error_prefix(where);
    }
  }
  H5Gclose(g);
  return st;
}

/* The mismatches of one group, collected into a list for one message. */
typedef struct {
  char text[4096];
  int len;
  int missing, unexpected, shape, dtype, other;
} problems;

static void add_problem(problems *pr, int *counter, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_problem(problems *pr, int *counter, const char *fmt, ...) {
  (*counter)++;
  if (pr->len >= (int)sizeof pr->text - 1) return;
  if (pr->len) pr->len += snprintf(pr->text + pr->len, sizeof pr->text - (size_t)pr->len, "; ");
  if (pr->len >= (int)sizeof pr->text - 1) return;
  va_list ap;
  va_start(ap, fmt);
  pr->len += vsnprintf(pr->text + pr->len, sizeof pr->text - (size_t)pr->len, fmt, ap);
  va_end(ap);
}

typedef struct {
  const pg_params *ps;
  problems *pr;
} unexpected_visit;

static herr_t find_unexpected(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  unexpected_visit *v = data;
  if (info->type != H5L_TYPE_HARD && info->type != H5L_TYPE_SOFT) {
    add_problem(v->pr, &v->pr->other, "'%s' is a link to another file (not followed)", name);
    return 0;
  }
  if (pg_params_find(v->ps, name)) return 0;
  H5O_info_t oi;
  if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) >= 0 && oi.type == H5O_TYPE_DATASET) {
    int nd;
    int64_t shape[PG_MAX_DIMS];
    char s[128] = "";
    if (!pg_h5_dataset_shape(g, name, "", &nd, shape)) pg_h5_shape_str(s, sizeof s, nd, shape);
    add_problem(v->pr, &v->pr->unexpected, "unexpected '%s' %s", name, s);
  } else {
    add_problem(v->pr, &v->pr->unexpected, "unexpected object '%s' (not a dataset)", name);
  }
  return 0;
}

pg_status pg_params_check_group(hid_t file, const char *group, const pg_params *ps) {
  char fname[1024];
  file_name(file, fname, sizeof fname);
  if (!pg_h5_exists(file, group))
    return pg_fail(PG_ERR_FORMAT, "%s: missing group '%s' (%d tensors expected, e.g. '%s')",
                   fname, group, ps->count, ps->count ? ps->items[0].name : "");
  hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
  if (g < 0) return pg_fail(PG_ERR_FORMAT, "%s: '%s' is not a group", fname, group);
  problems pr = {0};
  for (int i = 0; i < ps->count; i++) {
    const pg_param *p = &ps->items[i];
    char want[128], got[128];
    pg_h5_shape_str(want, sizeof want, p->tensor->ndim, p->tensor->shape);
    if (!pg_h5_exists(g, p->name)) {
      add_problem(&pr, &pr.missing, "missing '%s' %s", p->name, want);
      continue;
    }
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, p->name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET) {
      add_problem(&pr, &pr.other, "'%s' is not a dataset", p->name);
      continue;
    }
    pg_h5_dtype dt;
    int nd;
    int64_t shape[PG_MAX_DIMS];
    if (pg_h5_dataset_dtype(g, p->name, "", &dt) || pg_h5_dataset_shape(g, p->name, "", &nd, shape)) {
      add_problem(&pr, &pr.other, "'%s' cannot be read", p->name);
      continue;
    }
    if (dt.cls != H5T_FLOAT || dt.size != 4)
      add_problem(&pr, &pr.dtype, "'%s' has dtype %s, expected float32", p->name, dt.name);
    bool same = nd == p->tensor->ndim;
    for (int k = 0; same && k < nd; k++) same = shape[k] == p->tensor->shape[k];
    if (!same)
      add_problem(&pr, &pr.shape, "'%s' has shape %s in the file, the model has %s", p->name,
                  pg_h5_shape_str(got, sizeof got, nd, shape), want);
  }
  unexpected_visit v = {ps, &pr};
  hsize_t idx = 0;
  if (H5Literate(g, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, find_unexpected, &v) < 0) {
    idx = 0; /* groups written by other tools may not track creation order */
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, find_unexpected, &v);
  }
  H5Gclose(g);
  int total = pr.missing + pr.unexpected + pr.shape + pr.dtype + pr.other;
  if (total == 0) return PG_OK;
  char head[1300];
  snprintf(head, sizeof head,
           "%s: group '%s' does not match (%d problems: %d missing, %d unexpected, %d wrong "
           "shape, %d wrong dtype, %d other): ",
           fname, group, total, pr.missing, pr.unexpected, pr.shape, pr.dtype, pr.other);
  /* pg_last_error holds 1024 characters: shorten the list at a "; " and say so */
  int room = 1000 - (int)strlen(head);
  if (room < 40) room = 40;
  if (pr.len > room) {
    int cut = room - 24;
    while (cut > 0 && strncmp(pr.text + cut, "; ", 2)) cut--;
    int shown = 1;
    for (int k = 0; k < cut; k++)
      if (!strncmp(pr.text + k, "; ", 2)) shown++;
    snprintf(pr.text + cut, sizeof pr.text - (size_t)cut, "; ... (%d more)", total - shown);
  }
  return pg_fail(PG_ERR_FORMAT, "%s%s", head, pr.text);
}

/* Reads every tensor of a checked group into dst (each its own buffer), or
 * when check_only, one at a time into scratch to be checked: HDF5 verifies
 * each dataset's checksum as it reads it, and every value must be finite. */
static pg_status read_group(hid_t file, const char *group, pg_params *ps, bool check_only) {
  char fname[1024];
  file_name(file, fname, sizeof fname);
  int64_t most = 1;
  for (int i = 0; i < ps->count; i++)
    if (ps->items[i].tensor->numel > most) most = ps->items[i].tensor->numel;
  float *scratch = check_only ? malloc((size_t)most * sizeof *scratch) : NULL;
  if (check_only && !scratch)
    return pg_fail(PG_ERR_MEMORY, "%s: out of memory checking group '%s'", fname, group);
  char where[1200];
  snprintf(where, sizeof where, "%s: group '%s'", fname, group);
  hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
  pg_status st = g < 0 ? pg_fail(PG_ERR_FORMAT, "%s: cannot open group '%s' (%s)", fname, group,
                                 pg_h5_damage())
                       : PG_OK;
  for (int i = 0; !st && i < ps->count; i++) {
    pg_tensor *t = ps->items[i].tensor;
    const char *name = ps->items[i].name;
    float *dst = check_only ? scratch : t->data;
    hid_t d = pg_h5_open_dataset(g, name, where);
    if (d < 0) st = pg_last_status();
    else if (t->numel > 0 && pg_h5_check_storage(d, name, where)) st = pg_last_status();
    else if (t->numel > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
      st = pg_fail(PG_ERR_FORMAT, "%s: cannot read '%s/%s' (%s)", fname, group, name,
                   pg_h5_damage());
    for (int64_t k = 0; !st && check_only && k < t->numel; k++)
      if (!isfinite(dst[k]))
        st = pg_fail(PG_ERR_FORMAT, "%s: '%s/%s' holds %g at element %lld (every value of a "
                                    "checkpoint's tensors must be finite)", fname, group, name,
                     dst[k], (long long)k);
    if (d >= 0) H5Dclose(d);
  }
  if (g >= 0) H5Gclose(g);
  free(scratch);
  return st;
}

pg_status pg_params_load_group(hid_t file, const char *group, pg_params *ps) {
  if (pg_params_check_group(file, group, ps) || read_group(file, group, ps, true))
    return pg_last_status();
  return read_group(file, group, ps, false);
}

/* ---- The whole checkpoint ---- */

static pg_status check_before_save(const char *path, const pg_checkpoint *ck) {
  if (ck->optim_config && pg_kv_find(ck->optim_config, "step"))
    return pg_fail(PG_ERR_ARG, "%s: optim_config may not hold a key 'step' (the optimizer's "
                               "step is saved under that name)", path);
  if ((ck->optim_step || ck->optim_config) && !ck->optim_state)
    return pg_fail(PG_ERR_ARG, "%s: optim_step and optim_config need optim_state", path);
  return PG_OK;
}

/* A line per part present, for readers of `h5dump -H`. */
static void describe_contents(const pg_checkpoint *ck, char *buf, size_t cap) {
  int n = 0;
  buf[0] = '\0';
#define PART(cond, text) \
  if ((cond) && n < (int)cap) n += snprintf(buf + n, cap - (size_t)n, "%s%s", n ? "; " : "", text)
  PART(ck->config, "config: model configuration (attributes)");
  PART(ck->params, "params/: model parameters, PyTorch names and layouts, float32");
  PART(ck->ema, "ema/: exponential moving average of the parameters, same names");
  PART(ck->optim_state, "optim/: optimizer state tensors <param>.<buffer> as in PyTorch's "
                        "state_dict, attributes step and hyper-parameters");
  PART(ck->rng, "rng_state: the 4 uint64 words of the run's xoshiro256** generator");
  PART(ck->loader, "loader: data loader seed, epoch and position within the epoch");
  PART(ck->run, "run: the run's settings that shape its trajectory (attributes)");
#undef PART
}

/* A group holding kv as its attributes. */
static pg_status save_kv_group(hid_t f, const char *name, const pg_kv *kv) {
  hid_t g = pg_h5_create_group(f, name);
  pg_status st = g < 0 ? pg_last_status() : pg_kv_write_attrs(kv, g);
  if (g >= 0) H5Gclose(g);
  return st;
}

static pg_status save_parts(hid_t f, const pg_checkpoint *ck) {
  char contents[1024];
  describe_contents(ck, contents, sizeof contents);
  pg_status st = pg_h5_set_attr_string(f, "format", FORMAT_NAME);
  if (!st) st = pg_h5_set_attr_int(f, "format_version", FORMAT_VERSION);
  if (!st) st = pg_h5_set_attr_string(f, "contents", contents);
  if (!st && ck->step) st = pg_h5_set_attr_int(f, "step", *ck->step);
  if (!st && ck->config) st = save_kv_group(f, "config", ck->config);
  if (!st && ck->params) st = pg_params_save_group(f, "params", ck->params);
  if (!st && ck->ema) st = pg_params_save_group(f, "ema", ck->ema);
  if (!st && ck->optim_state) {
    st = pg_params_save_group(f, "optim", ck->optim_state);
    hid_t g = st ? -1 : H5Gopen2(f, "optim", H5P_DEFAULT);
    if (g >= 0) {
      if (ck->optim_step) st = pg_h5_set_attr_int(g, "step", *ck->optim_step);
      if (!st && ck->optim_config) st = pg_kv_write_attrs(ck->optim_config, g);
      H5Gclose(g);
    }
  }
  if (!st && ck->run) st = save_kv_group(f, "run", ck->run);
  if (!st && ck->rng) {
    st = pg_h5_write_uint64(f, "rng_state", 1, (int64_t[]){4}, ck->rng->s);
    hid_t d = st ? -1 : H5Dopen2(f, "rng_state", H5P_DEFAULT);
    if (d >= 0) {
      st = pg_h5_set_attr_string(d, "description", "pg_rng (xoshiro256**) state words s[0..3]");
      H5Dclose(d);
    }
  }
  if (!st && ck->loader) {
    hid_t g = pg_h5_create_group(f, "loader");
    st = g < 0 ? pg_last_status() : pg_h5_set_attr_uint64(g, "seed", ck->loader->seed);
    if (!st) st = pg_h5_set_attr_int(g, "epoch", ck->loader->epoch);
    if (!st) st = pg_h5_set_attr_int(g, "position", ck->loader->position);
    if (g >= 0) H5Gclose(g);
  }
  return st;
}

pg_status pg_checkpoint_save(const char *path, const pg_checkpoint *ck) {
  if (check_before_save(path, ck)) return pg_last_status();
  /* assembled in memory, then written to PATH.tmp and renamed (h5util.h) */
  hid_t f = pg_h5_create_in_memory(path);
  if (f < 0) return pg_last_status();
  if (save_parts(f, ck)) {
    H5Fclose(f);
    return pg_last_status();
  }
  return pg_h5_commit_image(f, path);
}

/* An int64 attribute that must be present. */
static pg_status need_int(hid_t obj, const char *path, const char *where, const char *name,
                          int64_t *v) {
  int rc = pg_h5_attr_int(obj, name, v);
  if (rc == 0)
    return pg_fail(PG_ERR_FORMAT, "%s: missing attribute '%s' of %s", path, name, where);
  if (rc < 0) return pg_error_prefix(path);
  return PG_OK;
}

/* Everything that can be checked without changing the caller's objects;
 * the small values are read into the locals of pg_checkpoint_load. */
typedef struct {
  int64_t step, optim_step;
  pg_rng rng;
  pg_loader_state loader;
  pg_kv config, optim_config, run;
} loaded_values;

/* The attributes format and format_version. */
static pg_status check_format(hid_t f, const char *path) {
  char format[64] = "";
  int rc = pg_h5_attr_string(f, "format", format, sizeof format);
  if (rc <= 0 || strcmp(format, FORMAT_NAME))
    return pg_fail(PG_ERR_FORMAT, "%s: not a patchgrad checkpoint (attribute format is '%s', "
                                  "expected '%s')", path, rc == 1 ? format : "absent",
                   FORMAT_NAME);
  int64_t version;
  if (need_int(f, path, "the file", "format_version", &version)) return pg_last_status();
  if (version != FORMAT_VERSION)
    return pg_fail(PG_ERR_FORMAT, "%s: checkpoint format_version %lld (this build reads %d)",
                   path, (long long)version, FORMAT_VERSION);
  return PG_OK;
}

/* The attributes of group `name` into kv; what names the group in messages. */
static pg_status read_kv_group(hid_t f, const char *path, const char *name, const char *what,
                               pg_kv *kv) {
  if (!pg_h5_exists(f, name))
    return pg_fail(PG_ERR_FORMAT, "%s: missing group '%s' (%s)", path, name, what);
  hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
  pg_status st = pg_kv_read_attrs(kv, g, NULL);
  H5Gclose(g);
  return st ? pg_error_prefix(path) : PG_OK;
}

static pg_status check_and_read_small(hid_t f, const char *path, const pg_checkpoint *ck,
                                      loaded_values *v) {
  if (check_format(f, path)) return pg_last_status();
  int rc;
  if (ck->step && need_int(f, path, "the file", "step", &v->step)) return pg_last_status();
  if (ck->step && (v->step < 0 || v->step > PG_CHECKPOINT_MAX_STEP))
    return pg_fail(PG_ERR_FORMAT, "%s: attribute 'step' = %lld is outside [0, %lld]", path,
                   (long long)v->step, (long long)PG_CHECKPOINT_MAX_STEP);
  if (ck->config && read_kv_group(f, path, "config", "model configuration", &v->config))
    return pg_last_status();
  if (ck->run && read_kv_group(f, path, "run", "the run's settings", &v->run))
    return pg_last_status();
  /* names, shapes and dtypes of every group first, then every value */
  if (ck->params && pg_params_check_group(f, "params", ck->params)) return pg_last_status();
  if (ck->ema && pg_params_check_group(f, "ema", ck->ema)) return pg_last_status();
  if (ck->optim_state && pg_params_check_group(f, "optim", ck->optim_state))
    return pg_last_status();
  if ((ck->params && read_group(f, "params", ck->params, true)) ||
      (ck->ema && read_group(f, "ema", ck->ema, true)) ||
      (ck->optim_state && read_group(f, "optim", ck->optim_state, true)))
    return pg_last_status();
  if (ck->optim_step || ck->optim_config) {
    if (!pg_h5_exists(f, "optim"))
      return pg_fail(PG_ERR_FORMAT, "%s: missing group 'optim' (optimizer state)", path);
    hid_t g = H5Gopen2(f, "optim", H5P_DEFAULT);
    pg_status st = ck->optim_step ? need_int(g, path, "group 'optim'", "step", &v->optim_step)
                                  : PG_OK;
    if (!st && ck->optim_step && (v->optim_step < 0 || v->optim_step > PG_CHECKPOINT_MAX_STEP))
      st = pg_fail(PG_ERR_FORMAT, "%s: attribute 'step' of group 'optim' = %lld is outside "
                                  "[0, %lld]", path, (long long)v->optim_step,
                   (long long)PG_CHECKPOINT_MAX_STEP);
    if (!st && ck->optim_config && pg_kv_read_attrs(&v->optim_config, g, "step"))
      st = pg_error_prefix(path);
    H5Gclose(g);
    if (st) return st;
  }
  if (ck->rng) {
    if (pg_h5_read_uint64(f, "rng_state", path, 4, v->rng.s)) return pg_last_status();
    if (!(v->rng.s[0] | v->rng.s[1] | v->rng.s[2] | v->rng.s[3]))
      return pg_fail(PG_ERR_FORMAT, "%s: dataset 'rng_state' is all zeros (not a valid "
                                    "xoshiro256** state)", path);
  }
  if (ck->loader) {
    if (!pg_h5_exists(f, "loader"))
      return pg_fail(PG_ERR_FORMAT, "%s: missing group 'loader' (data loader position)", path);
    hid_t g = H5Gopen2(f, "loader", H5P_DEFAULT);
    pg_status st = PG_OK;
    rc = pg_h5_attr_uint64(g, "seed", &v->loader.seed);
    if (rc == 0) st = pg_fail(PG_ERR_FORMAT, "%s: missing attribute 'seed' of group 'loader'", path);
    else if (rc < 0) st = pg_error_prefix(path);
    if (!st) st = need_int(g, path, "group 'loader'", "epoch", &v->loader.epoch);
    if (!st) st = need_int(g, path, "group 'loader'", "position", &v->loader.position);
    if (!st && (v->loader.epoch < 0 || v->loader.position < 0 ||
                v->loader.epoch > PG_CHECKPOINT_MAX_STEP || v->loader.position > PG_CHECKPOINT_MAX_STEP))
      st = pg_fail(PG_ERR_FORMAT, "%s: loader epoch %lld, position %lld must lie in [0, %lld]",
                   path, (long long)v->loader.epoch, (long long)v->loader.position,
                   (long long)PG_CHECKPOINT_MAX_STEP);
    H5Gclose(g);
    if (st) return st;
  }
  return PG_OK;
}

/* pg_kv has no swap: copy src's entries over dst's. */
static pg_status replace_kv(pg_kv *dst, const pg_kv *src) {
  pg_kv_clear(dst);
  for (int i = 0; i < src->count; i++) {
    const pg_kv_entry *e = &src->items[i];
    pg_status st = e->type == PG_KV_INT      ? pg_kv_set_int(dst, e->key, e->i)
                   : e->type == PG_KV_DOUBLE ? pg_kv_set_double(dst, e->key, e->d)
                                             : pg_kv_set_string(dst, e->key, e->s);
    if (st) return st;
  }
  return PG_OK;
}

pg_status pg_checkpoint_load(const char *path, const pg_checkpoint *ck) {
  hid_t f = pg_h5_open(path, false);
  if (f < 0) return pg_last_status();
  loaded_values v = {0};
  pg_kv_init(&v.config);
  pg_kv_init(&v.optim_config);
  pg_kv_init(&v.run);
  pg_status st = check_and_read_small(f, path, ck, &v);
  /* Everything is validated: only now are the caller's objects written. */
  if (!st && ck->params) st = read_group(f, "params", ck->params, false);
  if (!st && ck->ema) st = read_group(f, "ema", ck->ema, false);
  if (!st && ck->optim_state) st = read_group(f, "optim", ck->optim_state, false);
  if (!st && ck->config) st = replace_kv(ck->config, &v.config);
  if (!st && ck->optim_config) st = replace_kv(ck->optim_config, &v.optim_config);
  if (!st && ck->run) st = replace_kv(ck->run, &v.run);
  if (!st) {
    if (ck->step) *ck->step = v.step;
    if (ck->optim_step) *ck->optim_step = v.optim_step;
    if (ck->rng) *ck->rng = v.rng;
    if (ck->loader) *ck->loader = v.loader;
  }
  pg_kv_free(&v.config);
  pg_kv_free(&v.optim_config);
  pg_kv_free(&v.run);
  H5Fclose(f);
  return st;
}

/* ---- Non-strict loading ---- */

void pg_load_report_free(pg_load_report *rep) {
  char **lists[] = {rep->missing, rep->unexpected, rep->mismatched, rep->mismatch_detail};
  const int counts[] = {rep->n_missing, rep->n_unexpected, rep->n_mismatched, rep->n_mismatched};
  for (int l = 0; l < 4; l++) {
    for (int i = 0; lists[l] && i < counts[l]; i++) free(lists[l][i]);
    free(lists[l]);
  }
  memset(rep, 0, sizeof *rep);
}

/* Appends a copy of name to a list of the report; false when out of memory. */
static bool add_name(char ***list, int *n, const char *name) {
  char **p = realloc(*list, (size_t)(*n + 1) * sizeof *p);
  if (!p) return false;
  *list = p;
  if (!(p[*n] = strdup(name))) return false;
  (*n)++;
  return true;
}

typedef struct {
  const pg_params *ps;
  pg_load_report *rep;
  bool oom;
} matching_visit;

static herr_t list_unexpected(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g, (void)info;
  matching_visit *v = data;
  if (!pg_params_find(v->ps, name) && !add_name(&v->rep->unexpected, &v->rep->n_unexpected, name))
    v->oom = true;
  return 0;
}

pg_status pg_checkpoint_load_matching(const char *path, const char *group, pg_params *ps,
                                      pg_load_report *rep) {
  memset(rep, 0, sizeof *rep);
  hid_t f = pg_h5_open(path, false);
  if (f < 0) return pg_last_status();
  pg_status st = check_format(f, path);
  if (!st && !pg_h5_exists(f, group))
    st = pg_fail(PG_ERR_FORMAT, "%s: missing group '%s'", path, group);
  hid_t g = st ? -1 : H5Gopen2(f, group, H5P_DEFAULT);
  if (!st && g < 0) st = pg_fail(PG_ERR_FORMAT, "%s: '%s' is not a group", path, group);
  /* the entries that match, as a list that shares ps's tensors */
  pg_params view = {.items = st ? NULL : malloc((size_t)(ps->count ? ps->count : 1) * sizeof *view.items)};
  bool oom = !st && !view.items;
  for (int i = 0; !st && !oom && i < ps->count; i++) {
    const pg_param *p = &ps->items[i];
    const pg_tensor *t = p->tensor;
    H5O_info_t oi;
    pg_h5_dtype dt;
    int nd;
    int64_t shape[PG_MAX_DIMS];
    if (!pg_h5_exists(g, p->name) || H5Oget_info_by_name(g, p->name, &oi, H5P_DEFAULT) < 0 ||
        oi.type != H5O_TYPE_DATASET || pg_h5_dataset_dtype(g, p->name, "", &dt) ||
        pg_h5_dataset_shape(g, p->name, "", &nd, shape)) {
      oom = !add_name(&rep->missing, &rep->n_missing, p->name);
      continue;
    }
    bool same = nd == t->ndim && dt.cls == H5T_FLOAT && dt.size == 4;
    for (int k = 0; same && k < nd; k++) same = shape[k] == t->shape[k];
    if (same) {
      view.items[view.count++] = *p;
      continue;
    }
    char got[128], want[128], detail[320];
    pg_h5_shape_str(got, sizeof got, nd, shape);
    pg_h5_shape_str(want, sizeof want, t->ndim, t->shape);
    snprintf(detail, sizeof detail, "%s%s%s in the file, %s in the model", got,
             dt.cls == H5T_FLOAT && dt.size == 4 ? "" : " ", dt.cls == H5T_FLOAT && dt.size == 4 ? "" : dt.name,
             want);
    int n = rep->n_mismatched;
    oom = !add_name(&rep->mismatched, &rep->n_mismatched, p->name) ||
          !add_name(&rep->mismatch_detail, &n, detail);
  }
  if (!st && !oom) {
    matching_visit v = {ps, rep, false};
    hsize_t idx = 0;
    if (H5Literate(g, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, list_unexpected, &v) < 0) {
      idx = 0; /* groups written by other tools may not track creation order */
      H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_unexpected, &v);
    }
    oom = v.oom;
  }
  if (g >= 0) H5Gclose(g);
  if (!st && oom) st = pg_fail(PG_ERR_MEMORY, "%s: out of memory listing the tensors of '%s'", path, group);
  /* every matching tensor checked, then read in place */
  if (!st && view.count) st = read_group(f, group, &view, true);
  if (!st && view.count) st = read_group(f, group, &view, false);
  if (!st) rep->loaded = view.count;
  free(view.items);
  H5Fclose(f);
  return st;
}

pg_status pg_checkpoint_load_model(const char *path, bool ema, const pg_checkpoint_model *model) {
  pg_kv config;
  pg_kv_init(&config);
  /* the config first: the model is built from it, then its tensors are read */
  pg_status st = pg_checkpoint_load(path, &(pg_checkpoint){.config = &config});
  pg_params *params = st ? NULL : model->build(model->self, &config, path);
  pg_kv_free(&config);
  if (st || !params) return st ? st : pg_last_status();
  pg_checkpoint weights = {0};
  if (ema) weights.ema = params; /* the EMA copy, read into the model */
  else weights.params = params;
  if ((st = pg_checkpoint_load(path, &weights))) model->unbuild(model->self);
  return st;
}
