/* IDX files (the MNIST format), gzip-compressed or plain, read with zlib:
 *   bytes 0-1  zero, byte 2  element type (0x08 = uint8), byte 3  rank d,
 *   then d big-endian uint32 sizes, then the elements row-major.
 * Every header field is checked, and the element count against the file's
 * length; errors name the file and the value. Only uint8 elements (the type
 * of every MNIST-style file) are accepted. */
#ifndef PG_IDX_H
#define PG_IDX_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/error.h"

#define PG_IDX_MAX_DIMS 4

typedef struct {
  int ndim;
  int64_t shape[PG_IDX_MAX_DIMS];
  int64_t numel;
  uint8_t *data; /* malloc'd; pg_idx_free */
} pg_idx;

/* Reads the whole file. `expect_ndim` > 0 makes another rank an error. */
PG_API pg_status pg_idx_read(const char *path, int expect_ndim, pg_idx *out);
PG_API void pg_idx_free(pg_idx *idx);

#endif
