/* Small HDF5 helpers shared by every file format of patchgrad (case files,
 * latent datasets, checkpoints): typed reads that convert to float32 or
 * int64, attribute getters and setters, and error messages that name the
 * file's object. Failures come back as pg_status with pg_last_error() set.
 * The library leaves HDF5's error-stack settings as the program has them:
 * unless the program turns HDF5's own error printing off (pg_h5_quiet, which
 * the patchgrad command calls at start), HDF5 also prints its stack. */
#ifndef PG_H5UTIL_H
#define PG_H5UTIL_H

#include "patchgrad/autograd/api.h"

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "patchgrad/autograd/tensor.h"

/* Turns off HDF5's automatic error printing for the calling thread (the
 * default error stack). For programs; the library never calls it. */
PG_API void pg_h5_quiet(void);

/* Opens an existing file read-only (or read-write); a missing file, or one
 * that is not HDF5, is a clear error. Returns a negative id on failure. */
PG_API hid_t pg_h5_open(const char *path, bool writable);

/* True when `path` (relative to loc, may contain '/') names an object. */
PG_API bool pg_h5_exists(hid_t loc, const char *path);

/* Reads a float or integer dataset of any shape into a new heap tensor
 * (float32; converted by HDF5). `what` names it in messages. */
PG_API pg_status pg_h5_read_tensor(hid_t loc, const char *path, const char *what, pg_tensor **out);
/* Reads an integer (or integral float) dataset into a malloc'd int64 array. */
PG_API pg_status pg_h5_read_int64(hid_t loc, const char *path, const char *what, int64_t **out,
                           int *ndim, int64_t shape[PG_MAX_DIMS]);
/* Shape of a dataset without reading it. */
PG_API pg_status pg_h5_dataset_shape(hid_t loc, const char *path, const char *what, int *ndim,
                              int64_t shape[PG_MAX_DIMS]);

/* Attributes of obj. Getters return 1 when found (value set), 0 when absent,
 * and -1 on a type error (message set). */
PG_API int pg_h5_attr_int(hid_t obj, const char *name, int64_t *value);
PG_API int pg_h5_attr_double(hid_t obj, const char *name, double *value);
PG_API int pg_h5_attr_string(hid_t obj, const char *name, char *buf, size_t cap);
/* A scalar or 1-D integer attribute; *count receives its length (<= cap). */
PG_API int pg_h5_attr_int_array(hid_t obj, const char *name, int64_t *values, int cap, int *count);

PG_API pg_status pg_h5_set_attr_int(hid_t obj, const char *name, int64_t value);
PG_API pg_status pg_h5_set_attr_double(hid_t obj, const char *name, double value);
PG_API pg_status pg_h5_set_attr_string(hid_t obj, const char *name, const char *value);
PG_API pg_status pg_h5_set_attr_int_array(hid_t obj, const char *name, const int64_t *values, int n);

/* Writes a float32 dataset (chunk_rows > 0: chunked by that many rows of the
 * first axis and deflate-compressed). Intermediate groups are created. */
PG_API pg_status pg_h5_write_floats(hid_t loc, const char *path, int ndim, const int64_t *shape,
                             const float *data, int64_t chunk_rows);
PG_API pg_status pg_h5_write_int64(hid_t loc, const char *path, int ndim, const int64_t *shape,
                            const int64_t *data);

/* ---- Added for latent datasets and checkpoints ---- */

/* Every file we write is built in memory (HDF5's core driver) and written
 * out by pg_h5_commit_image, so a write either fully succeeds or leaves no
 * trace: HDF5 1.10 cannot abandon a disk file whose writes failed (disk
 * full): the failed H5Fclose leaves a dangling id that crashes the library
 * at exit. `name` only labels the file in messages. */
PG_API hid_t pg_h5_create_in_memory(const char *name);
/* Writes the in-memory file to PATH.tmp (checked write, fsync), closes it,
 * and renames PATH.tmp over path. On any failure PATH.tmp is removed and the
 * previous path is intact; file is closed in every case. */
PG_API pg_status pg_h5_commit_image(hid_t file, const char *path);

/* Creates a group (and missing intermediate groups) that remembers the
 * creation order of its members and attributes; negative on failure. */
PG_API hid_t pg_h5_create_group(hid_t loc, const char *path);

/* The element type of a dataset: HDF5 class, size in bytes, and a short name
 * for messages ("float32", "float64", "int64", "uint8", "string", ...). */
typedef struct {
  H5T_class_t cls;
  size_t size;
  char name[16];
} pg_h5_dtype;
PG_API pg_status pg_h5_dataset_dtype(hid_t loc, const char *path, const char *what, pg_h5_dtype *out);
PG_API void pg_h5_describe_type(hid_t type, pg_h5_dtype *out);

/* Reads rows [start, start + count) of the first axis of an open dataset as
 * float32 into dst (a hyperslab: only those rows are read from disk). */
PG_API pg_status pg_h5_read_rows(hid_t dset, int64_t start, int64_t count, float *dst);

/* uint64 datasets (random generator states): write any shape; read one that
 * must hold exactly n integers. */
PG_API pg_status pg_h5_write_uint64(hid_t loc, const char *path, int ndim, const int64_t *shape,
                             const uint64_t *data);
PG_API pg_status pg_h5_read_uint64(hid_t loc, const char *path, const char *what, int64_t n,
                            uint64_t *out);

/* Re-raises the current error with "prefix: " in front (keeps its status). */
PG_API pg_status pg_error_prefix(const char *prefix);
/* "[2, 3, 4]" into buf, for messages; returns buf. */
PG_API char *pg_h5_shape_str(char *buf, int cap, int ndim, const int64_t *shape);

/* Unsigned 64-bit attributes (seeds): 1 found, 0 absent, -1 wrong type. */
PG_API pg_status pg_h5_set_attr_uint64(hid_t obj, const char *name, uint64_t value);
PG_API int pg_h5_attr_uint64(hid_t obj, const char *name, uint64_t *value);

#endif
