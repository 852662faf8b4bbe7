#include "patchgrad/data/idx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "patchgrad/io/atomic.h"
#include "patchgrad/io/limits.h"

/* The whole (decompressed) content of a file; gzread passes plain files
 * through unchanged. */
static pg_status read_all(const char *path, uint8_t **out, int64_t *len) {
  if (pg_check_regular_file(path)) return pg_last_status(); /* a FIFO would block gzopen */
  gzFile f = gzopen(path, "rb");
  if (!f) return pg_fail(PG_ERR_IO, "%s: cannot open (no such file, or not readable)", path);
  size_t cap = 1 << 20, n = 0;
  uint8_t *buf = malloc(cap);
  while (buf) {
    if (n == cap) {
      /* a gzip stream can expand 1000-fold: grow only while memory lasts */
      char what[1100];
      snprintf(what, sizeof what, "%s: its uncompressed content (more than %zu bytes)", path, cap);
      if (cap > (size_t)INT64_MAX / 4 || pg_check_memory(what, (int64_t)cap * 2)) {
        free(buf);
        gzclose(f);
        return pg_last_status();
      }
      uint8_t *bigger = realloc(buf, cap * 2);
      if (!bigger) break;
      buf = bigger;
      cap *= 2;
    }
    int got = gzread(f, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
    if (got < 0) {
      int errnum;
      const char *msg = gzerror(f, &errnum);
      pg_fail(PG_ERR_FORMAT, "%s: corrupt gzip data (%s)", path, msg);
      free(buf);
      gzclose(f);
      return PG_ERR_FORMAT;
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  gzclose(f);
  if (!buf) return pg_fail(PG_ERR_MEMORY, "%s: out of memory reading it", path);
  *out = buf;
  *len = (int64_t)n;
  return PG_OK;
}

pg_status pg_idx_read(const char *path, int expect_ndim, pg_idx *out) {
  memset(out, 0, sizeof *out);
  uint8_t *buf = NULL;
  int64_t len = 0;
  if (read_all(path, &buf, &len)) return pg_last_status();
  pg_status st = PG_OK;
  int ndim = len >= 4 ? buf[3] : 0;
  int64_t header = 4 + 4 * (int64_t)ndim;
  if (len < 4)
    st = pg_fail(PG_ERR_FORMAT, "%s: %lld bytes is too short for an IDX header", path,
                 (long long)len);
  else if (buf[0] != 0 || buf[1] != 0)
    st = pg_fail(PG_ERR_FORMAT, "%s: bad IDX magic %02x %02x %02x %02x (expected 00 00 08 d)",
                 path, buf[0], buf[1], buf[2], buf[3]);
  else if (buf[2] != 0x08)
    st = pg_fail(PG_ERR_FORMAT, "%s: IDX element type 0x%02x is not uint8 (0x08)", path, buf[2]);
  else if (ndim < 1 || ndim > PG_IDX_MAX_DIMS)
    st = pg_fail(PG_ERR_FORMAT, "%s: IDX rank %d (expected 1..%d)", path, ndim, PG_IDX_MAX_DIMS);
  else if (expect_ndim > 0 && ndim != expect_ndim)
    st = pg_fail(PG_ERR_FORMAT, "%s: IDX rank %d (expected %d)", path, ndim, expect_ndim);
  else if (len < header)
    st = pg_fail(PG_ERR_FORMAT, "%s: IDX header of rank %d needs %lld bytes, the file has %lld",
                 path, ndim, (long long)header, (long long)len);
  int64_t numel = 1;
  for (int i = 0; !st && i < ndim; i++) {
    const uint8_t *p = buf + 4 + 4 * i;
    int64_t size = ((int64_t)p[0] << 24) | ((int64_t)p[1] << 16) | ((int64_t)p[2] << 8) | p[3];
    if (size == 0)
      st = pg_fail(PG_ERR_FORMAT, "%s: IDX dimension %d has size 0", path, i);
    else if (size > len / numel) /* checked before multiplying: no overflow */
      st = pg_fail(PG_ERR_FORMAT, "%s: IDX sizes promise more elements than the file's %lld "
                                  "bytes (dimension %d is %lld)", path, (long long)len, i,
                   (long long)size);
    out->shape[i] = size;
    numel *= size;
  }
  if (!st && header + numel != len)
    st = pg_fail(PG_ERR_FORMAT, "%s: IDX header promises %lld elements (%lld bytes with the "
                                "header) but the data is %lld bytes (truncated or damaged file)",
                 path, (long long)numel, (long long)(header + numel), (long long)len);
  if (st) {
    free(buf);
    memset(out, 0, sizeof *out);
    return st;
  }
  memmove(buf, buf + header, (size_t)numel);
  out->ndim = ndim;
  out->numel = numel;
  out->data = buf;
  return PG_OK;
}

void pg_idx_free(pg_idx *idx) {
  free(idx->data);
  memset(idx, 0, sizeof *idx);
}
