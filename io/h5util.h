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

/* Opens an existing file read-only (or read-write); a missing file, one that
 * is not a regular file (a FIFO would block the reader forever), or one that
 * is not HDF5 is a clear error. Every object header of the file is then
 * loaded once, whole (H5Ovisit): a metadata checksum that does not match is
 * reported as damage here, because HDF5 1.10 reports a damaged piece of an
 * object header only the first time it loads it (later the object silently
 * lacks what that piece held). Returns a negative id on failure. */
PG_API hid_t pg_h5_open(const char *path, bool writable);

/* True when `path` (relative to loc, may contain '/') names an object
 * reached through hard or soft links only: links to other files (external
 * links) are never followed. */
PG_API bool pg_h5_exists(hid_t loc, const char *path);
/* True when `name` (one component) is a link of loc to another file or of a
 * user-defined kind: for messages, since pg_h5_exists reports it absent. */
PG_API bool pg_h5_is_external_link(hid_t loc, const char *name);

/* Opens a dataset for reading, refusing what this reader does not follow
 * (data in external files, virtual datasets) and filters the HDF5 library
 * lacks, named by number and name ("filter 32000 ('lzf')"), before any read.
 * Negative with a message naming `what` and the dataset on failure. */
PG_API hid_t pg_h5_open_dataset(hid_t loc, const char *path, const char *what);

/* Checks that the data an open dataset declares is stored: every chunk
 * present (chunked), or the whole size inside the file (contiguous,
 * compact). `path` and `what` name it in the message. */
PG_API pg_status pg_h5_check_storage(hid_t dset, const char *path, const char *what);

/* For messages after a failed HDF5 read: "damaged: its checksum does not
 * match" when HDF5 reported a checksum failure, else "damaged or truncated
 * file?". */
PG_API const char *pg_h5_damage(void);

/* Whole-dataset reads check first that the shape's products fit 64 bits,
 * that the data the dataset declares is stored in the file (every chunk
 * present; a contiguous block inside the file: a tiny file declaring 2^61
 * elements is refused), and that the memory it needs is available
 * (limits.h). */

/* Reads a float or integer dataset of any shape into a new heap tensor
 * (float32; converted by HDF5). `what` names it in messages. */
PG_API pg_status pg_h5_read_tensor(hid_t loc, const char *path, const char *what, pg_tensor **out);
/* Reads an integer (or integral float) dataset into a malloc'd int64 array;
 * a float that is not an integer (2.7) is an error naming the element. */
PG_API pg_status pg_h5_read_int64(hid_t loc, const char *path, const char *what, int64_t **out,
                           int *ndim, int64_t shape[PG_MAX_DIMS]);
/* Shape of a dataset without reading it. */
PG_API pg_status pg_h5_dataset_shape(hid_t loc, const char *path, const char *what, int *ndim,
                              int64_t shape[PG_MAX_DIMS]);

/* Attributes of obj. Getters return 1 when found (value set), 0 when absent,
 * and -1 on a type error (message set). Integer getters accept floats only
 * when they hold integers: 2.5, NaN or 1e30 is an error, never rounded. */
PG_API int pg_h5_attr_int(hid_t obj, const char *name, int64_t *value);
PG_API int pg_h5_attr_double(hid_t obj, const char *name, double *value);
PG_API int pg_h5_attr_string(hid_t obj, const char *name, char *buf, size_t cap);
/* A scalar or 1-D integer attribute; *count receives its length (<= cap). */
PG_API int pg_h5_attr_int_array(hid_t obj, const char *name, int64_t *values, int cap, int *count);

PG_API pg_status pg_h5_set_attr_int(hid_t obj, const char *name, int64_t value);
PG_API pg_status pg_h5_set_attr_double(hid_t obj, const char *name, double value);
/* Strings are written fixed-length UTF-8 (inside the object header and its
 * checksum; h5py reads them as bytes); the getter reads both kinds. */
PG_API pg_status pg_h5_set_attr_string(hid_t obj, const char *name, const char *value);
PG_API pg_status pg_h5_set_attr_int_array(hid_t obj, const char *name, const int64_t *values, int n);

/* Writes a float32 dataset (chunk_rows > 0: chunked by that many rows of the
 * first axis and deflate-compressed; 0: uncompressed chunks of about 1 MB).
 * Every dataset with at least one element and rank >= 1 carries HDF5's
 * Fletcher32 checksum, verified by HDF5 on every read. Intermediate groups
 * are created. */
PG_API pg_status pg_h5_write_floats(hid_t loc, const char *path, int ndim, const int64_t *shape,
                             const float *data, int64_t chunk_rows);
PG_API pg_status pg_h5_write_int64(hid_t loc, const char *path, int ndim, const int64_t *shape,
                            const int64_t *data);

/* ---- Added for latent datasets and checkpoints ---- */

/* Every file we write is built in memory (HDF5's core driver) and written
 * out by pg_h5_commit_image, so a write either fully succeeds or leaves no
 * trace: HDF5 1.10 cannot abandon a disk file whose writes failed (disk
 * full): the failed H5Fclose leaves a dangling id that crashes the library
 * at exit. The file uses the HDF5 1.10 format, whose metadata all carries
 * checksums (readable by HDF5 1.10 and later). `name` only labels the file
 * in messages. */
PG_API hid_t pg_h5_create_in_memory(const char *name);
/* Writes the in-memory file through pg_atomic_write (a temporary beside
 * path, fsync, rename), closing it. On any failure the temporary is removed
 * and the previous path is intact; file is closed in every case. */
PG_API pg_status pg_h5_commit_image(hid_t file, const char *path);

/* HDF5's metadata checksum (Jenkins' lookup3 hash, initial value 0) of len
 * bytes: what the superblock, object headers and indexes of the 1.8 and
 * later formats store after their bytes. */
PG_API uint32_t pg_h5_checksum(const void *data, size_t len);

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
