/* Small HDF5 helpers shared by every file format of patchgrad (case files,
 * latent datasets, checkpoints): typed reads that convert to float32 or
 * int64, attribute getters and setters, and error messages that name the
 * file's object. HDF5's own error printing is switched off; failures come
 * back as pg_status with pg_last_error() set. */
#ifndef PG_H5UTIL_H
#define PG_H5UTIL_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

/* Turns off HDF5's automatic error printing (once per process). */
void pg_h5_quiet(void);

/* Opens an existing file read-only (or read-write); a missing file, or one
 * that is not HDF5, is a clear error. Returns a negative id on failure. */
hid_t pg_h5_open(const char *path, bool writable);

/* True when `path` (relative to loc, may contain '/') names an object. */
bool pg_h5_exists(hid_t loc, const char *path);

/* Reads a float or integer dataset of any shape into a new heap tensor
 * (float32; converted by HDF5). `what` names it in messages. */
pg_status pg_h5_read_tensor(hid_t loc, const char *path, const char *what, pg_tensor **out);
/* Reads an integer (or integral float) dataset into a malloc'd int64 array. */
pg_status pg_h5_read_int64(hid_t loc, const char *path, const char *what, int64_t **out,
                           int *ndim, int64_t shape[PG_MAX_DIMS]);
/* Shape of a dataset without reading it. */
pg_status pg_h5_dataset_shape(hid_t loc, const char *path, const char *what, int *ndim,
                              int64_t shape[PG_MAX_DIMS]);

/* Attributes of obj. Getters return 1 when found (value set), 0 when absent,
 * and -1 on a type error (message set). */
int pg_h5_attr_int(hid_t obj, const char *name, int64_t *value);
int pg_h5_attr_double(hid_t obj, const char *name, double *value);
int pg_h5_attr_string(hid_t obj, const char *name, char *buf, size_t cap);
/* A scalar or 1-D integer attribute; *count receives its length (<= cap). */
int pg_h5_attr_int_array(hid_t obj, const char *name, int64_t *values, int cap, int *count);

pg_status pg_h5_set_attr_int(hid_t obj, const char *name, int64_t value);
pg_status pg_h5_set_attr_double(hid_t obj, const char *name, double value);
pg_status pg_h5_set_attr_string(hid_t obj, const char *name, const char *value);
pg_status pg_h5_set_attr_int_array(hid_t obj, const char *name, const int64_t *values, int n);

/* Writes a float32 dataset (chunk_rows > 0: chunked by that many rows of the
 * first axis and deflate-compressed). Intermediate groups are created. */
pg_status pg_h5_write_floats(hid_t loc, const char *path, int ndim, const int64_t *shape,
                             const float *data, int64_t chunk_rows);
pg_status pg_h5_write_int64(hid_t loc, const char *path, int ndim, const int64_t *shape,
                            const int64_t *data);

#endif
