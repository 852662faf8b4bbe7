#include "patchgrad/io/h5util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/io/atomic.h"
#include "patchgrad/io/limits.h"

void pg_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ---- What HDF5 said ---- */

typedef struct {
  const char *word;
  bool found;
} stack_search;

static herr_t search_entry(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  stack_search *s = data;
  if (!e->desc) return 0;
  size_t wl = strlen(s->word);
  for (const char *p = e->desc; *p && !s->found; p++) {
    size_t k = 0;
    while (k < wl && p[k] && tolower((unsigned char)p[k]) == s->word[k]) k++;
    s->found = k == wl;
  }
  return 0;
}

/* True when HDF5's current error stack (of this thread) mentions `word`
 * (lower case) in one of its descriptions. */
static bool error_stack_mentions(const char *word) {
  stack_search s = {word, false};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, search_entry, &s);
  return s.found;
}

const char *pg_h5_damage(void) {
  return error_stack_mentions("checksum") ? "damaged: its checksum does not match"
                                          : "damaged or truncated file?";
}

typedef struct {
  char last[256]; /* the object being looked at */
} visit_state;

static herr_t look_at(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
  (void)obj, (void)info;
  snprintf(((visit_state *)data)->last, sizeof ((visit_state *)data)->last, "%s", name);
  return 0;
}

/* Every object header of the file loaded once, whole, before anything is
 * read. HDF5 1.10 reports a damaged piece of an object header (a chunk whose
 * checksum fails) only the first time it loads it: afterwards the object
 * silently lacks what that piece held (its attributes then read as absent,
 * e.g. a latent file's mean and std). So the first load happens here, where
 * a failure refuses the file. */
static pg_status check_every_object(hid_t file, const char *path) {
  visit_state v = {"/"};
  if (H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_NATIVE, look_at, &v, H5O_INFO_ALL) < 0)
    return pg_fail(PG_ERR_FORMAT, "%s: HDF5 cannot read all of its objects (%s; the last read "
                                  "whole: '%s')", path,
                   error_stack_mentions("checksum") ? "damaged: a metadata checksum does not match"
                                                    : "damaged or truncated file", v.last);
  return PG_OK;
}

hid_t pg_h5_open(const char *path, bool writable) {
  if (pg_check_regular_file(path)) return -1;
  FILE *f = fopen(path, "rb");
  if (!f) {
    pg_fail(PG_ERR_IO, "%s: cannot open (no such file, or not readable)", path);
    return -1;
  }
  fclose(f);
  if (H5Fis_hdf5(path) <= 0) {
    pg_fail(PG_ERR_FORMAT, "%s: not an HDF5 file (or truncated)", path);
    return -1;
  }
  hid_t file = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0)
    pg_fail(PG_ERR_FORMAT, "%s: HDF5 cannot open it (%s)", path,
            error_stack_mentions("checksum") ? "damaged: a metadata checksum does not match"
                                             : "damaged or truncated file");
  else if (check_every_object(file, path)) {
    H5Fclose(file);
    return -1;
  }
  return file;
}

/* Links are followed only within the file: an external link (to another
 * file, which could be anything, a FIFO included) or a user-defined one is
 * never traversed. 1: a hard or soft link; 0: absent; -1: another kind. */
static int link_kind(hid_t loc, const char *name) {
  htri_t e = H5Lexists(loc, name, H5P_DEFAULT);
  if (e <= 0) return 0;
  H5L_info_t li;
  if (H5Lget_info(loc, name, &li, H5P_DEFAULT) < 0) return 0;
  return li.type == H5L_TYPE_HARD || li.type == H5L_TYPE_SOFT ? 1 : -1;
}

bool pg_h5_exists(hid_t loc, const char *path) {
  /* H5Lexists must be asked about each component in turn. */
  char buf[512];
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, path, len + 1);
  for (char *p = buf; (p = strchr(p, '/')); p++) {
    *p = '\0';
    int k = buf[0] ? link_kind(loc, buf) : 1;
    *p = '/';
    if (k <= 0) return false;
  }
  return link_kind(loc, buf) == 1 && H5Oexists_by_name(loc, buf, H5P_DEFAULT) > 0;
}

/* ---- Datasets: layout, shape and storage checked before any read ---- */

/* Refuses what this reader will not follow (data in external files, virtual
 * datasets) and filters the HDF5 library lacks (named, not "damaged"). */
static pg_status check_layout(hid_t d, const char *path, const char *what) {
  hid_t dcpl = H5Dget_create_plist(d);
  if (dcpl < 0) return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': cannot read its layout (%s)",
                               what, path, pg_h5_damage());
  pg_status st = PG_OK;
  H5D_layout_t layout = H5Pget_layout(dcpl);
  int external = H5Pget_external_count(dcpl);
  if (layout == H5D_VIRTUAL)
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' is a virtual dataset (its data lives in other "
                                "files, which are not followed)", what, path);
  else if (external > 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' keeps its data in %d external file(s), which "
                                "are not followed", what, path, external);
  int n = st ? 0 : H5Pget_nfilters(dcpl);
  for (int i = 0; !st && i < n; i++) {
    unsigned flags = 0, config = 0;
    size_t nvalues = 0;
    char name[64] = "";
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nvalues, NULL, sizeof name, name,
                                     &config);
    if (id < 0)
      st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': filter %d of its pipeline cannot be read (%s)",
                   what, path, i, pg_h5_damage());
    else if (H5Zfilter_avail(id) <= 0)
      st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' is compressed with HDF5 filter %d%s%s%s, which "
                                  "this HDF5 library does not have (install the filter's plugin "
                                  "and set HDF5_PLUGIN_PATH, or rewrite the file without it: "
                                  "h5repack -f NONE)", what, path, (int)id, name[0] ? " ('" : "",
                   name, name[0] ? "')" : "");
  }
  H5Pclose(dcpl);
  return st;
}

bool pg_h5_is_external_link(hid_t loc, const char *name) {
  return !strchr(name, '/') && link_kind(loc, name) < 0;
}

hid_t pg_h5_open_dataset(hid_t loc, const char *path, const char *what) {
  if (!pg_h5_exists(loc, path)) {
    if (pg_h5_is_external_link(loc, path))
      pg_fail(PG_ERR_FORMAT, "%s: '%s' is a link to another file (not followed)", what, path);
    else
      pg_fail(PG_ERR_FORMAT, "%s: missing dataset '%s'", what, path);
    return -1;
  }
  H5O_info_t oi;
  if (H5Oget_info_by_name(loc, path, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET) {
    pg_fail(PG_ERR_FORMAT, "%s: '%s' is not a dataset", what, path);
    return -1;
  }
  hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
  if (d < 0) {
    pg_fail(PG_ERR_FORMAT, "%s: cannot open dataset '%s' (%s)", what, path, pg_h5_damage());
    return -1;
  }
  if (check_layout(d, path, what)) {
    H5Dclose(d);
    return -1;
  }
  return d;
}

static pg_status space_shape(hid_t d, const char *path, const char *what, int *ndim,
                             int64_t shape[PG_MAX_DIMS]) {
  hid_t s = H5Dget_space(d);
  if (s < 0) return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': cannot read its shape (%s)", what,
                            path, pg_h5_damage());
  H5S_class_t cls = H5Sget_simple_extent_type(s);
  int nd = H5Sget_simple_extent_ndims(s);
  hsize_t dims[PG_MAX_DIMS];
  pg_status st = PG_OK;
  if (cls != H5S_SCALAR && cls != H5S_SIMPLE)
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has no dataspace (an empty 'null' dataset)", what,
                 path);
  else if (nd < 0 || nd > PG_MAX_DIMS)
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has rank %d (at most %d)", what, path, nd,
                 PG_MAX_DIMS);
  else if (H5Sget_simple_extent_dims(s, dims, NULL) < 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': cannot read its shape (%s)", what, path,
                 pg_h5_damage());
  H5Sclose(s);
  if (st) return st;
  for (int i = 0; i < nd; i++) {
    if (dims[i] > (hsize_t)INT64_MAX)
      return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': size %llu of axis %d is beyond 2^63", what,
                     path, (unsigned long long)dims[i], i);
    shape[i] = (int64_t)dims[i];
  }
  *ndim = nd;
  char where[1200];
  snprintf(where, sizeof where, "%s: dataset '%s'", what, path);
  /* 8 bytes an element: every product a reader forms then fits */
  return pg_shape_bytes(where, nd, shape, 8, NULL, NULL);
}

/* The data a dataset declares must be stored: a tiny file declaring 2^61
 * samples (chunked, nothing written) would otherwise read as fill values for
 * ever. Chunked: every chunk allocated; contiguous or compact: the whole
 * size, inside the file. */
pg_status pg_h5_check_storage(hid_t d, const char *path, const char *what) {
  int ndim;
  int64_t shape[PG_MAX_DIMS], numel;
  if (space_shape(d, path, what, &ndim, shape)) return pg_last_status();
  if (pg_shape_bytes(what, ndim, shape, 1, &numel, NULL)) return pg_last_status();
  if (numel == 0) return PG_OK;
  hid_t dcpl = H5Dget_create_plist(d), type = H5Dget_type(d), space = H5Dget_space(d);
  pg_status st = PG_OK;
  size_t elem = type >= 0 ? H5Tget_size(type) : 0;
  H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
  if (dcpl < 0 || type < 0 || space < 0 || elem == 0 || layout == H5D_LAYOUT_ERROR) {
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': cannot read its layout (%s)", what, path,
                 pg_h5_damage());
  } else if (layout == H5D_CHUNKED) {
    hsize_t chunk[PG_MAX_DIMS];
    int cr = H5Pget_chunk(dcpl, PG_MAX_DIMS, chunk);
    int64_t expected = 1;
    bool ok = cr == ndim;
    for (int i = 0; ok && i < ndim; i++) {
      ok = chunk[i] > 0 && chunk[i] <= (hsize_t)INT64_MAX;
      int64_t per_axis = ok ? (shape[i] + (int64_t)chunk[i] - 1) / (int64_t)chunk[i] : 0;
      ok = ok && pg_mul_i64(expected, per_axis, &expected);
    }
    hsize_t stored = 0;
    if (!ok || H5Dget_num_chunks(d, space, &stored) < 0)
      st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': its chunk layout cannot be read (%s)", what,
                   path, pg_h5_damage());
    else if ((int64_t)stored < expected)
      st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' declares %lld chunks but stores %llu (data "
                                  "never written, or a damaged file)", what, path,
                   (long long)expected, (unsigned long long)stored);
  } else {
    int64_t bytes;
    hsize_t stored = H5Dget_storage_size(d);
    haddr_t offset = layout == H5D_CONTIGUOUS ? H5Dget_offset(d) : 0;
    hsize_t file_size = 0;
    hid_t file = H5Iget_file_id(d);
    if (file >= 0) {
      H5Fget_filesize(file, &file_size);
      H5Fclose(file);
    }
    if (!pg_mul_i64(numel, (int64_t)elem, &bytes) || stored < (hsize_t)bytes)
      st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' declares %lld elements but stores %llu bytes "
                                  "(data never written, or a damaged file)", what, path,
                   (long long)numel, (unsigned long long)stored);
    else if (layout == H5D_CONTIGUOUS &&
             (offset == HADDR_UNDEF || offset > file_size || stored > file_size - offset))
      st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': its %llu bytes lie beyond the end of the "
                                  "file (truncated or damaged file)", what, path,
                   (unsigned long long)stored);
  }
  if (dcpl >= 0) H5Pclose(dcpl);
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  return st;
}

/* Opens a dataset to be read whole: shape, storage, and memory checked. */
static hid_t open_for_reading(hid_t loc, const char *path, const char *what, int64_t elem_bytes,
                              int *ndim, int64_t shape[PG_MAX_DIMS]) {
  hid_t d = pg_h5_open_dataset(loc, path, what);
  if (d < 0) return -1;
  int64_t bytes;
  char where[1200];
  snprintf(where, sizeof where, "%s: reading dataset '%s'", what, path);
  if (space_shape(d, path, what, ndim, shape) || pg_h5_check_storage(d, path, what) ||
      pg_shape_bytes(where, *ndim, shape, elem_bytes, NULL, &bytes) ||
      pg_check_memory(where, bytes)) {
    H5Dclose(d);
    return -1;
  }
  return d;
}

pg_status pg_h5_dataset_shape(hid_t loc, const char *path, const char *what, int *ndim,
                              int64_t shape[PG_MAX_DIMS]) {
  hid_t d = pg_h5_open_dataset(loc, path, what);
  if (d < 0) return pg_last_status();
  pg_status st = space_shape(d, path, what, ndim, shape);
  H5Dclose(d);
  return st;
}

static H5T_class_t dataset_class(hid_t d) {
  hid_t t = H5Dget_type(d);
  H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
  if (t >= 0) H5Tclose(t);
  return c;
}

static bool numeric_class(hid_t d) {
  H5T_class_t c = dataset_class(d);
  return c == H5T_FLOAT || c == H5T_INTEGER;
}

pg_status pg_h5_read_tensor(hid_t loc, const char *path, const char *what, pg_tensor **out) {
  *out = NULL;
  int ndim = 0;
  int64_t shape[PG_MAX_DIMS];
  hid_t d = open_for_reading(loc, path, what, sizeof(float), &ndim, shape);
  if (d < 0) return pg_last_status();
  pg_status st = PG_OK;
  if (!numeric_class(d)) st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' is not numeric", what, path);
  pg_tensor *t = st ? NULL : pg_tensor_new(ndim, shape, false);
  if (!st && !t) st = pg_last_status();
  if (!st && t->numel > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: cannot read dataset '%s' as float32 (%s)", what, path,
                 pg_h5_damage());
  H5Dclose(d);
  if (st) pg_tensor_free(t);
  else *out = t;
  return st;
}

/* The integer a double holds exactly, or false (NaN, Inf, a fraction, or
 * outside int64). */
static bool integral(double v, int64_t *out) {
  if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0) || v != floor(v)) return false;
  *out = (int64_t)v;
  return true;
}

pg_status pg_h5_read_int64(hid_t loc, const char *path, const char *what, int64_t **out,
                           int *ndim, int64_t shape[PG_MAX_DIMS]) {
  *out = NULL;
  hid_t d = open_for_reading(loc, path, what, 2 * sizeof(int64_t), ndim, shape);
  if (d < 0) return pg_last_status();
  pg_status st = PG_OK;
  H5T_class_t cls = dataset_class(d);
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' is not numeric", what, path);
  int64_t n = st ? 0 : pg_shape_numel(*ndim, shape);
  int64_t *v = st ? NULL : malloc((size_t)(n ? n : 1) * sizeof *v);
  double *dv = !st && cls == H5T_FLOAT ? malloc((size_t)(n ? n : 1) * sizeof *dv) : NULL;
  if (!st && (!v || (cls == H5T_FLOAT && !dv)))
    st = pg_fail(PG_ERR_MEMORY, "%s: out of memory reading '%s'", what, path);
  if (!st && n > 0 &&
      H5Dread(d, cls == H5T_FLOAT ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, H5S_ALL, H5S_ALL,
              H5P_DEFAULT, cls == H5T_FLOAT ? (void *)dv : (void *)v) < 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: cannot read dataset '%s' as integers (%s)", what, path,
                 pg_h5_damage());
  /* floats are accepted when they hold integers: 2.7 is refused, not cut to 2 */
  for (int64_t i = 0; !st && dv && i < n; i++)
    if (!integral(dv[i], &v[i]))
      st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s': element %lld is %g, not an integer", what,
                   path, (long long)i, dv[i]);
  free(dv);
  H5Dclose(d);
  if (st) free(v);
  else *out = v;
  return st;
}

/* ---- Attributes ---- */

/* 0: absent; -1: unreadable (message set); else the open attribute with its
 * class and number of values. */
static hid_t open_attr(hid_t obj, const char *name, H5T_class_t *cls, hssize_t *npoints) {
  htri_t e = H5Aexists(obj, name);
  if (e == 0) return 0;
  hid_t a = e > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  hid_t s = a >= 0 ? H5Aget_space(a) : -1;
  *cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
  *npoints = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
  if (t >= 0) H5Tclose(t);
  if (s >= 0) H5Sclose(s);
  if (a < 0 || t < 0 || s < 0 || *npoints < 0) {
    if (a >= 0) H5Aclose(a);
    pg_fail(PG_ERR_FORMAT, "attribute '%s' cannot be read (%s)", name, pg_h5_damage());
    return -1;
  }
  return a;
}

int pg_h5_attr_int(hid_t obj, const char *name, int64_t *value) {
  int count;
  return pg_h5_attr_int_array(obj, name, value, 1, &count);
}

int pg_h5_attr_int_array(hid_t obj, const char *name, int64_t *values, int cap, int *count) {
  H5T_class_t cls;
  hssize_t n;
  hid_t a = open_attr(obj, name, &cls, &n);
  if (a <= 0) return (int)a;
  int rc = -1;
  double *tmp = NULL;
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' is not a number", name);
  } else if (n < 1 || n > cap) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' has %lld values (expected 1..%d)", name, (long long)n, cap);
  } else if (cls == H5T_INTEGER) {
    if (H5Aread(a, H5T_NATIVE_INT64, values) < 0)
      pg_fail(PG_ERR_FORMAT, "attribute '%s' cannot be read as integers", name);
    else rc = 1;
  } else if (!(tmp = malloc((size_t)n * sizeof *tmp)) || H5Aread(a, H5T_NATIVE_DOUBLE, tmp) < 0) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' cannot be read", name);
  } else {
    /* floats are accepted when integral (some writers store 1.0 for true);
     * 2.5 is refused, not rounded */
    rc = 1;
    for (hssize_t i = 0; rc == 1 && i < n; i++)
      if (!integral(tmp[i], &values[i])) {
        if (n == 1) pg_fail(PG_ERR_FORMAT, "attribute '%s' is %g, not an integer", name, tmp[i]);
        else pg_fail(PG_ERR_FORMAT, "attribute '%s': value %lld is %g, not an integer", name,
                     (long long)i, tmp[i]);
        rc = -1;
      }
  }
  if (rc == 1) *count = (int)n;
  free(tmp);
  H5Aclose(a);
  return rc;
}

int pg_h5_attr_double(hid_t obj, const char *name, double *value) {
  H5T_class_t cls;
  hssize_t n;
  hid_t a = open_attr(obj, name, &cls, &n);
  if (a <= 0) return (int)a;
  int rc = 1;
  if ((cls != H5T_INTEGER && cls != H5T_FLOAT) || n != 1) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' is not a single number%s", name,
            cls == H5T_STRING ? " (it is a string)" : "");
    rc = -1;
  } else if (H5Aread(a, H5T_NATIVE_DOUBLE, value) < 0) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' cannot be read as a number", name);
    rc = -1;
  }
  H5Aclose(a);
  return rc;
}

/* Fixed-length strings longer than this are refused (a damaged size). */
#define MAX_STRING_ATTR ((size_t)1 << 20)

int pg_h5_attr_string(hid_t obj, const char *name, char *buf, size_t cap) {
  H5T_class_t cls;
  hssize_t n;
  hid_t a = open_attr(obj, name, &cls, &n);
  if (a <= 0) return (int)a;
  int rc = -1;
  hid_t t = -1, mt = -1;
  if (cls != H5T_STRING || n != 1) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' is not a string", name);
  } else if ((t = H5Aget_type(a)) < 0 || (mt = H5Tcopy(H5T_C_S1)) < 0) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' cannot be read", name);
  } else if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t));
    if (H5Aread(a, mt, &s) < 0) {
      pg_fail(PG_ERR_FORMAT, "attribute '%s' cannot be read as a string", name);
    } else {
      snprintf(buf, cap, "%s", s ? s : "");
      rc = 1;
    }
    H5free_memory(s);
  } else {
    size_t size = H5Tget_size(t);
    char *s = size > 0 && size <= MAX_STRING_ATTR ? calloc(size + 1, 1) : NULL;
    if (!s) {
      pg_fail(PG_ERR_FORMAT, "attribute '%s': a string of %zu bytes is refused (at most %zu)",
              name, size, MAX_STRING_ATTR);
    } else if (H5Tset_size(mt, size + 1) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
               H5Aread(a, mt, s) < 0) {
      pg_fail(PG_ERR_FORMAT, "attribute '%s' cannot be read as a string", name);
    } else {
      snprintf(buf, cap, "%s", s);
      rc = 1;
    }
    free(s);
  }
  if (mt >= 0) H5Tclose(mt);
  if (t >= 0) H5Tclose(t);
  H5Aclose(a);
  return rc;
}

static pg_status write_attr(hid_t obj, const char *name, hid_t type, hid_t space, const void *v) {
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = a < 0 ? -1 : H5Awrite(a, type, v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(space);
  return e < 0 ? pg_fail(PG_ERR_IO, "cannot write attribute '%s'", name) : PG_OK;
}

pg_status pg_h5_set_attr_int(hid_t obj, const char *name, int64_t value) {
  return write_attr(obj, name, H5T_NATIVE_INT64, H5Screate(H5S_SCALAR), &value);
}

pg_status pg_h5_set_attr_double(hid_t obj, const char *name, double value) {
  return write_attr(obj, name, H5T_NATIVE_DOUBLE, H5Screate(H5S_SCALAR), &value);
}

pg_status pg_h5_set_attr_int_array(hid_t obj, const char *name, const int64_t *values, int n) {
  hsize_t dim = (hsize_t)n;
  return write_attr(obj, name, H5T_NATIVE_INT64, H5Screate_simple(1, &dim, NULL), values);
}

pg_status pg_h5_set_attr_string(hid_t obj, const char *name, const char *value) {
  /* Fixed-length UTF-8: the bytes live in the attribute itself, inside the
   * object header and its checksum. A variable-length string would live in
   * HDF5's global heap, which has no checksum (a flipped bit there can send
   * HDF5 into an endless loop). h5py reads it as bytes. */
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(value) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  H5Tset_cset(t, H5T_CSET_UTF8);
  pg_status st = write_attr(obj, name, t, H5Screate(H5S_SCALAR), value);
  H5Tclose(t);
  return st;
}

/* ---- Datasets ---- */

/* Chunks of at most about this many bytes (HDF5's limit is 4 GB). */
#define CHUNK_BYTES ((hsize_t)1 << 20)

static pg_status write_dataset(hid_t loc, const char *path, int ndim, const int64_t *shape,
                               hid_t type, const void *data, int64_t chunk_rows) {
  hsize_t dims[PG_MAX_DIMS] = {0};
  hsize_t row = H5Tget_size(type); /* bytes of one row of the first axis */
  bool empty = false;
  for (int i = 0; i < ndim; i++) {
    dims[i] = (hsize_t)shape[i];
    empty = empty || dims[i] == 0;
    if (i > 0) row *= dims[i];
  }
  hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  /* Chunked, so that every dataset carries a Fletcher32 checksum that HDF5
   * verifies on each read (a 0-d or empty dataset holds nothing to check). */
  if (ndim > 0 && !empty && row <= CHUNK_BYTES * 1024) {
    hsize_t chunk[PG_MAX_DIMS];
    for (int i = 0; i < ndim; i++) chunk[i] = dims[i];
    hsize_t rows = chunk_rows > 0 ? (hsize_t)chunk_rows : CHUNK_BYTES / row;
    chunk[0] = rows < 1 ? 1 : rows < dims[0] ? rows : dims[0];
    H5Pset_chunk(dcpl, ndim, chunk);
    if (chunk_rows > 0) {
      H5Pset_shuffle(dcpl);
      H5Pset_deflate(dcpl, 4);
    }
    H5Pset_fletcher32(dcpl);
  }
  if (H5Lexists(loc, path, H5P_DEFAULT) > 0) H5Ldelete(loc, path, H5P_DEFAULT);
  hid_t d = H5Dcreate2(loc, path, type, space, lcpl, dcpl, H5P_DEFAULT);
  herr_t e = d < 0 ? -1 : H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (d >= 0) H5Dclose(d);
  H5Pclose(dcpl);
  H5Pclose(lcpl);
  H5Sclose(space);
  return e < 0 ? pg_fail(PG_ERR_IO, "cannot write dataset '%s'", path) : PG_OK;
}

pg_status pg_h5_write_floats(hid_t loc, const char *path, int ndim, const int64_t *shape,
                             const float *data, int64_t chunk_rows) {
  return write_dataset(loc, path, ndim, shape, H5T_NATIVE_FLOAT, data, chunk_rows);
}

pg_status pg_h5_write_int64(hid_t loc, const char *path, int ndim, const int64_t *shape,
                            const int64_t *data) {
  return write_dataset(loc, path, ndim, shape, H5T_NATIVE_INT64, data, 0);
}

/* ---- Files written atomically ---- */

/* Attributes and links stay in the group's object header (which carries a
 * checksum) instead of moving to "dense" storage past 8 of them, whose
 * fractal heap blocks HDF5 does not checksum: a flipped bit in a config
 * value would otherwise go unnoticed. */
static void keep_in_object_header(hid_t gcpl) {
  H5Pset_attr_phase_change(gcpl, 65535, 0);
  H5Pset_link_phase_change(gcpl, 65535, 0);
}

hid_t pg_h5_create_in_memory(const char *name) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, (size_t)16 << 20, false); /* grow by 16 MB, never touch the disk */
  /* The 1.10 file format: every piece of metadata (superblock, object
   * headers, group indexes, chunk indexes) carries a checksum that HDF5
   * verifies when it reads it. Readable by HDF5 1.10 and later. */
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
  /* no 2 KB metadata blocks: the file holds no padding nobody reads */
  H5Pset_meta_block_size(fapl, 0);
  H5Pset_small_data_block_size(fapl, 0);
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  keep_in_object_header(fcpl); /* the root group's */
  hid_t file = H5Fcreate(name, H5F_ACC_TRUNC, fcpl, fapl);
  H5Pclose(fcpl);
  H5Pclose(fapl);
  if (file < 0) pg_fail(PG_ERR_MEMORY, "%s: cannot create the file in memory", name);
  return file;
}

/* HDF5's metadata checksum: Bob Jenkins' lookup3 hashlittle, initial value
 * 0, read byte by byte (as H5_checksum_lookup3 does). */
#define ROT(x, k) (((x) << (k)) ^ ((x) >> (32 - (k))))
static uint32_t lookup3(const uint8_t *k, size_t length) {
  uint32_t a, b, c;
  a = b = c = 0xdeadbeef + (uint32_t)length;
  for (; length > 12; length -= 12, k += 12) {
    a += k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
    b += k[4] | (uint32_t)k[5] << 8 | (uint32_t)k[6] << 16 | (uint32_t)k[7] << 24;
    c += k[8] | (uint32_t)k[9] << 8 | (uint32_t)k[10] << 16 | (uint32_t)k[11] << 24;
    a -= c; a ^= ROT(c, 4);  c += b;
    b -= a; b ^= ROT(a, 6);  a += c;
    c -= b; c ^= ROT(b, 8);  b += a;
    a -= c; a ^= ROT(c, 16); c += b;
    b -= a; b ^= ROT(a, 19); a += c;
    c -= b; c ^= ROT(b, 4);  b += a;
  }
  if (length == 0) return c;
  uint32_t w[3] = {0, 0, 0};
  for (size_t i = 0; i < length; i++) w[i / 4] += (uint32_t)k[i] << (8 * (i % 4));
  a += w[0];
  b += w[1];
  c += w[2];
  c ^= b; c -= ROT(b, 14);
  a ^= c; a -= ROT(c, 11);
  b ^= a; b -= ROT(a, 25);
  c ^= b; c -= ROT(b, 16);
  a ^= c; a -= ROT(c, 4);
  b ^= a; b -= ROT(a, 14);
  c ^= b; c -= ROT(b, 24);
  return c;
}
#undef ROT

uint32_t pg_h5_checksum(const void *data, size_t len) { return lookup3(data, len); }

/* HDF5 1.10's H5Fget_file_image clears the superblock's status flags in the
 * image (the file is open for writing) but leaves the superblock checksum of
 * the flags it had (superblock versions 2 and 3), so the image would not
 * open. The superblock is recomputed here: signature, version, sizes of
 * offsets and lengths, flags, four addresses, checksum. */
static void fix_superblock_checksum(uint8_t *image, size_t size) {
  static const uint8_t signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (size < 12 || memcmp(image, signature, 8) || (image[8] != 2 && image[8] != 3)) return;
  size_t len = 12 + 4 * (size_t)image[9];
  if (len + 4 > size) return;
  uint32_t sum = lookup3(image, len);
  for (int k = 0; k < 4; k++) image[len + (size_t)k] = (uint8_t)(sum >> (8 * k));
}

pg_status pg_h5_commit_image(hid_t file, const char *path) {
  ssize_t size = H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(file, NULL, 0);
  void *image = size > 0 ? malloc((size_t)size) : NULL;
  bool got = image && H5Fget_file_image(file, image, (size_t)size) == size;
  H5Fclose(file);
  if (got) fix_superblock_checksum(image, (size_t)size);
  if (!got) {
    free(image);
    return pg_fail(PG_ERR_MEMORY, "%s: cannot assemble the file in memory (%lld bytes)", path,
                   (long long)size);
  }
  pg_status st = pg_atomic_write(path, image, (size_t)size);
  free(image);
  return st;
}

hid_t pg_h5_create_group(hid_t loc, const char *path) {
  if (pg_h5_exists(loc, path)) return H5Gopen2(loc, path, H5P_DEFAULT);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  keep_in_object_header(gcpl);
  hid_t g = H5Gcreate2(loc, path, lcpl, gcpl, H5P_DEFAULT);
  H5Pclose(gcpl);
  H5Pclose(lcpl);
  if (g < 0) pg_fail(PG_ERR_IO, "cannot create group '%s'", path);
  return g;
}

/* ---- Types ---- */

void pg_h5_describe_type(hid_t type, pg_h5_dtype *out) {
  out->cls = H5Tget_class(type);
  out->size = H5Tget_size(type);
  int bits = (int)out->size * 8;
  switch (out->cls) {
    case H5T_FLOAT: snprintf(out->name, sizeof out->name, "float%d", bits); break;
    case H5T_INTEGER:
      snprintf(out->name, sizeof out->name, "%s%d",
               H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", bits);
      break;
    case H5T_STRING: snprintf(out->name, sizeof out->name, "string"); break;
    case H5T_COMPOUND: snprintf(out->name, sizeof out->name, "compound"); break;
    case H5T_ENUM: snprintf(out->name, sizeof out->name, "enum"); break;
    default: snprintf(out->name, sizeof out->name, "class %d", (int)out->cls); break;
  }
}

pg_status pg_h5_dataset_dtype(hid_t loc, const char *path, const char *what, pg_h5_dtype *out) {
  hid_t d = pg_h5_open_dataset(loc, path, what);
  if (d < 0) return pg_last_status();
  hid_t t = H5Dget_type(d);
  pg_h5_describe_type(t, out);
  H5Tclose(t);
  H5Dclose(d);
  return PG_OK;
}

/* ---- Hyperslab reads ---- */

pg_status pg_h5_read_rows(hid_t dset, int64_t start, int64_t count, float *dst) {
  hid_t fspace = H5Dget_space(dset);
  int nd = H5Sget_simple_extent_ndims(fspace);
  if (nd < 1 || nd > PG_MAX_DIMS) {
    H5Sclose(fspace);
    return pg_fail(PG_ERR_FORMAT, "pg_h5_read_rows: dataset of rank %d has no rows", nd);
  }
  hsize_t dims[PG_MAX_DIMS], offset[PG_MAX_DIMS] = {0}, block[PG_MAX_DIMS];
  H5Sget_simple_extent_dims(fspace, dims, NULL);
  if (start < 0 || count < 0 || (hsize_t)(start + count) > dims[0]) {
    H5Sclose(fspace);
    return pg_fail(PG_ERR_ARG, "pg_h5_read_rows: rows [%lld, %lld) outside the %llu rows",
                   (long long)start, (long long)(start + count), (unsigned long long)dims[0]);
  }
  if (count == 0) {
    H5Sclose(fspace);
    return PG_OK;
  }
  for (int i = 0; i < nd; i++) block[i] = dims[i];
  offset[0] = (hsize_t)start;
  block[0] = (hsize_t)count;
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, offset, NULL, block, NULL);
  hid_t mspace = H5Screate_simple(nd, block, NULL);
  herr_t e = H5Dread(dset, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, dst);
  const char *damage = e < 0 ? pg_h5_damage() : ""; /* before the next call clears HDF5's errors */
  H5Sclose(mspace);
  H5Sclose(fspace);
  if (e < 0)
    return pg_fail(PG_ERR_FORMAT, "cannot read rows [%lld, %lld) (%s)", (long long)start,
                   (long long)(start + count), damage);
  return PG_OK;
}

/* ---- uint64 ---- */

pg_status pg_h5_write_uint64(hid_t loc, const char *path, int ndim, const int64_t *shape,
                             const uint64_t *data) {
  return write_dataset(loc, path, ndim, shape, H5T_NATIVE_UINT64, data, 0);
}

pg_status pg_h5_read_uint64(hid_t loc, const char *path, const char *what, int64_t n,
                            uint64_t *out) {
  int ndim = 0;
  int64_t shape[PG_MAX_DIMS];
  hid_t d = open_for_reading(loc, path, what, sizeof(uint64_t), &ndim, shape);
  if (d < 0) return pg_last_status();
  pg_status st = PG_OK;
  if (dataset_class(d) != H5T_INTEGER) st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' is not integer", what, path);
  if (!st && pg_shape_numel(ndim, shape) != n)
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' holds %lld values (expected %lld)", what, path,
                 (long long)pg_shape_numel(ndim, shape), (long long)n);
  if (!st && H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: cannot read dataset '%s' (%s)", what, path, pg_h5_damage());
  H5Dclose(d);
  return st;
}

/* ---- Messages ---- */

pg_status pg_error_prefix(const char *prefix) {
  /* copied first: pg_fail formats into the buffer pg_last_error() returns */
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", pg_last_error());
  pg_status st = pg_last_status();
  return pg_fail(st ? st : PG_ERR_FORMAT, "%s: %s", prefix, msg);
}

char *pg_h5_shape_str(char *buf, int cap, int ndim, const int64_t *shape) {
  long long s[PG_MAX_DIMS];
  for (int i = 0; i < ndim && i < PG_MAX_DIMS; i++) s[i] = shape[i];
  return pg_shape_str(buf, cap, ndim < PG_MAX_DIMS ? ndim : PG_MAX_DIMS, s);
}

/* ---- uint64 attributes ---- */

pg_status pg_h5_set_attr_uint64(hid_t obj, const char *name, uint64_t value) {
  return write_attr(obj, name, H5T_NATIVE_UINT64, H5Screate(H5S_SCALAR), &value);
}

int pg_h5_attr_uint64(hid_t obj, const char *name, uint64_t *value) {
  H5T_class_t cls;
  hssize_t n;
  hid_t a = open_attr(obj, name, &cls, &n);
  if (a == 0) return 0;
  int rc = 1;
  if (a < 0 || cls != H5T_INTEGER || n != 1 || H5Aread(a, H5T_NATIVE_UINT64, value) < 0) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' is not a single unsigned integer", name);
    rc = -1;
  }
  if (a > 0) H5Aclose(a);
  return rc;
}
