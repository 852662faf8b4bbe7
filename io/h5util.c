#include "patchgrad/io/h5util.h"

#include "patchgrad/io/atomic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pg_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

hid_t pg_h5_open(const char *path, bool writable) {
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
  if (file < 0) pg_fail(PG_ERR_FORMAT, "%s: HDF5 cannot open it (damaged or truncated file)", path);
  return file;
}

bool pg_h5_exists(hid_t loc, const char *path) {
  /* H5Lexists must be asked about each component in turn. */
  char buf[512];
  size_t len = strlen(path);
  if (len >= sizeof buf) return false;
  memcpy(buf, path, len + 1);
  for (char *p = buf; (p = strchr(p, '/')); p++) {
    *p = '\0';
    htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
    *p = '/';
    if (e <= 0) return false;
  }
  return H5Lexists(loc, buf, H5P_DEFAULT) > 0 && H5Oexists_by_name(loc, buf, H5P_DEFAULT) > 0;
}

static hid_t open_dataset(hid_t loc, const char *path, const char *what) {
  if (!pg_h5_exists(loc, path)) {
    pg_fail(PG_ERR_FORMAT, "%s: missing dataset '%s'", what, path);
    return -1;
  }
  hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
  if (d < 0) pg_fail(PG_ERR_FORMAT, "%s: '%s' is not a dataset", what, path);
  return d;
}

static pg_status space_shape(hid_t d, const char *path, const char *what, int *ndim,
                             int64_t shape[PG_MAX_DIMS]) {
  hid_t s = H5Dget_space(d);
  int nd = H5Sget_simple_extent_ndims(s);
  if (nd < 0 || nd > PG_MAX_DIMS) {
    H5Sclose(s);
    return pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' has rank %d (at most %d)", what, path, nd,
                   PG_MAX_DIMS);
  }
  hsize_t dims[PG_MAX_DIMS];
  H5Sget_simple_extent_dims(s, dims, NULL);
  H5Sclose(s);
  *ndim = nd;
  for (int i = 0; i < nd; i++) shape[i] = (int64_t)dims[i];
  return PG_OK;
}

pg_status pg_h5_dataset_shape(hid_t loc, const char *path, const char *what, int *ndim,
                              int64_t shape[PG_MAX_DIMS]) {
  hid_t d = open_dataset(loc, path, what);
  if (d < 0) return pg_last_status();
  pg_status st = space_shape(d, path, what, ndim, shape);
  H5Dclose(d);
  return st;
}

static bool numeric_class(hid_t d) {
  hid_t t = H5Dget_type(d);
  H5T_class_t c = H5Tget_class(t);
  H5Tclose(t);
  return c == H5T_FLOAT || c == H5T_INTEGER;
}

pg_status pg_h5_read_tensor(hid_t loc, const char *path, const char *what, pg_tensor **out) {
  *out = NULL;
  hid_t d = open_dataset(loc, path, what);
  if (d < 0) return pg_last_status();
  int ndim = 0;
  int64_t shape[PG_MAX_DIMS];
  pg_status st = space_shape(d, path, what, &ndim, shape);
  if (!st && !numeric_class(d))
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' is not numeric", what, path);
  pg_tensor *t = st ? NULL : pg_tensor_new(ndim, shape, false);
  if (!st && !t) st = pg_last_status();
  if (!st && t->numel > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: cannot read dataset '%s' as float32", what, path);
  H5Dclose(d);
  if (st) pg_tensor_free(t);
  else *out = t;
  return st;
}

pg_status pg_h5_read_int64(hid_t loc, const char *path, const char *what, int64_t **out,
                           int *ndim, int64_t shape[PG_MAX_DIMS]) {
  *out = NULL;
  hid_t d = open_dataset(loc, path, what);
  if (d < 0) return pg_last_status();
  pg_status st = space_shape(d, path, what, ndim, shape);
  if (!st && !numeric_class(d))
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' is not numeric", what, path);
  int64_t n = st ? 0 : pg_shape_numel(*ndim, shape);
  int64_t *v = st ? NULL : malloc((size_t)(n ? n : 1) * sizeof *v);
  if (!st && !v) st = pg_fail(PG_ERR_MEMORY, "%s: out of memory reading '%s'", what, path);
  if (!st && n > 0 && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: cannot read dataset '%s' as integers", what, path);
  H5Dclose(d);
  if (st) free(v);
  else *out = v;
  return st;
}

/* ---- Attributes ---- */

static hid_t open_attr(hid_t obj, const char *name, H5T_class_t *cls, hssize_t *npoints) {
  if (H5Aexists(obj, name) <= 0) return 0;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a);
  *cls = H5Tget_class(t);
  H5Tclose(t);
  hid_t s = H5Aget_space(a);
  *npoints = H5Sget_simple_extent_npoints(s);
  H5Sclose(s);
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
  if (a == 0) return 0;
  int rc = 1;
  if (a < 0 || (cls != H5T_INTEGER && cls != H5T_FLOAT)) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' is not a number", name);
    rc = -1;
  } else if (n < 1 || n > cap) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' has %lld values (expected 1..%d)", name, (long long)n, cap);
    rc = -1;
  } else {
    /* floats are accepted when integral (some writers store 1.0 for true) */
    double tmp[PG_MAX_DIMS * 4];
    if (cls == H5T_FLOAT && n <= (hssize_t)(sizeof tmp / sizeof *tmp)) {
      H5Aread(a, H5T_NATIVE_DOUBLE, tmp);
      for (hssize_t i = 0; i < n; i++) values[i] = (int64_t)tmp[i];
    } else {
      H5Aread(a, H5T_NATIVE_INT64, values);
    }
    *count = (int)n;
  }
  if (a > 0) H5Aclose(a);
  return rc;
}

int pg_h5_attr_double(hid_t obj, const char *name, double *value) {
  H5T_class_t cls;
  hssize_t n;
  hid_t a = open_attr(obj, name, &cls, &n);
  if (a == 0) return 0;
  int rc = 1;
  if (a < 0 || (cls != H5T_INTEGER && cls != H5T_FLOAT) || n != 1) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' is not a single number", name);
    rc = -1;
  } else {
    H5Aread(a, H5T_NATIVE_DOUBLE, value);
  }
  if (a > 0) H5Aclose(a);
  return rc;
}

int pg_h5_attr_string(hid_t obj, const char *name, char *buf, size_t cap) {
  H5T_class_t cls;
  hssize_t n;
  hid_t a = open_attr(obj, name, &cls, &n);
  if (a == 0) return 0;
  int rc = 1;
  if (a < 0 || cls != H5T_STRING || n != 1) {
    pg_fail(PG_ERR_FORMAT, "attribute '%s' is not a string", name);
    rc = -1;
  } else {
    hid_t t = H5Aget_type(a);
    if (H5Tis_variable_str(t) > 0) {
      char *s = NULL;
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      H5Tset_cset(mt, H5Tget_cset(t));
      H5Aread(a, mt, &s);
      snprintf(buf, cap, "%s", s ? s : "");
      H5free_memory(s);
      H5Tclose(mt);
    } else {
      size_t size = H5Tget_size(t);
      char *s = calloc(size + 1, 1);
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, size + 1);
      H5Aread(a, mt, s);
      snprintf(buf, cap, "%s", s);
      free(s);
      H5Tclose(mt);
    }
    H5Tclose(t);
  }
  if (a > 0) H5Aclose(a);
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
  /* variable-length UTF-8, as h5py writes strings */
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  pg_status st = write_attr(obj, name, t, H5Screate(H5S_SCALAR), &value);
  H5Tclose(t);
  return st;
}

/* ---- Datasets ---- */

static pg_status write_dataset(hid_t loc, const char *path, int ndim, const int64_t *shape,
                               hid_t type, const void *data, int64_t chunk_rows) {
  hsize_t dims[PG_MAX_DIMS] = {0};
  for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
  hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk_rows > 0 && ndim > 0 && shape[0] > 0) {
    hsize_t chunk[PG_MAX_DIMS];
    for (int i = 0; i < ndim; i++) chunk[i] = dims[i] ? dims[i] : 1;
    chunk[0] = (hsize_t)(chunk_rows < shape[0] ? chunk_rows : shape[0]);
    H5Pset_chunk(dcpl, ndim, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 4);
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

hid_t pg_h5_create_in_memory(const char *name) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, (size_t)16 << 20, false); /* grow by 16 MB, never touch the disk */
  hid_t file = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (file < 0) pg_fail(PG_ERR_MEMORY, "%s: cannot create the file in memory", name);
  return file;
}

pg_status pg_h5_commit_image(hid_t file, const char *path) {
  char tmp[1100];
  if (pg_atomic_tmp_path(path, tmp, sizeof tmp)) {
    H5Fclose(file);
    return pg_last_status();
  }
  ssize_t size = H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(file, NULL, 0);
  void *image = size > 0 ? malloc((size_t)size) : NULL;
  bool got = image && H5Fget_file_image(file, image, (size_t)size) == size;
  H5Fclose(file);
  if (!got) {
    free(image);
    return pg_fail(PG_ERR_MEMORY, "%s: cannot assemble the file in memory (%lld bytes)", path,
                   (long long)size);
  }
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    free(image);
    return pg_fail(PG_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
  }
  bool ok = fwrite(image, 1, (size_t)size, f) == (size_t)size && fflush(f) == 0;
  int err = errno;
  ok = (fclose(f) == 0) && ok;
  free(image);
  if (!ok) {
    pg_atomic_discard(tmp);
    return pg_fail(PG_ERR_IO, "%s: writing %lld bytes to %s failed: %s (the previous file is "
                              "unchanged)", path, (long long)size, tmp, strerror(err ? err : EIO));
  }
  return pg_atomic_commit(tmp, path);
}

hid_t pg_h5_create_group(hid_t loc, const char *path) {
  if (pg_h5_exists(loc, path)) return H5Gopen2(loc, path, H5P_DEFAULT);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  H5Pset_attr_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
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
  hid_t d = open_dataset(loc, path, what);
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
  H5Sclose(mspace);
  H5Sclose(fspace);
  if (e < 0)
    return pg_fail(PG_ERR_FORMAT, "cannot read rows [%lld, %lld) (damaged or truncated file?)",
                   (long long)start, (long long)(start + count));
  return PG_OK;
}

/* ---- uint64 ---- */

pg_status pg_h5_write_uint64(hid_t loc, const char *path, int ndim, const int64_t *shape,
                             const uint64_t *data) {
  return write_dataset(loc, path, ndim, shape, H5T_NATIVE_UINT64, data, 0);
}

pg_status pg_h5_read_uint64(hid_t loc, const char *path, const char *what, int64_t n,
                            uint64_t *out) {
  hid_t d = open_dataset(loc, path, what);
  if (d < 0) return pg_last_status();
  int ndim = 0;
  int64_t shape[PG_MAX_DIMS];
  pg_status st = space_shape(d, path, what, &ndim, shape);
  hid_t t = H5Dget_type(d);
  bool integer = H5Tget_class(t) == H5T_INTEGER;
  H5Tclose(t);
  if (!st && !integer) st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' is not integer", what, path);
  if (!st && pg_shape_numel(ndim, shape) != n)
    st = pg_fail(PG_ERR_FORMAT, "%s: dataset '%s' holds %lld values (expected %lld)", what, path,
                 (long long)pg_shape_numel(ndim, shape), (long long)n);
  if (!st && H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: cannot read dataset '%s'", what, path);
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
