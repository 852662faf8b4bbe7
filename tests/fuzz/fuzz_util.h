/* Shared by the libFuzzer harnesses: HDF5 and zlib read files by name, so
 * each input is written to a file in /dev/shm (memory-backed; /tmp when
 * absent), one per process, and the reader under test is given its path.
 *
 * Each harness also writes its own seed corpus: run it with
 * PG_FUZZ_MAKE_SEEDS=DIR in the environment and it writes small valid
 * inputs into DIR and exits (tools/fuzz.sh --seeds does this). */
#ifndef PG_FUZZ_UTIL_H
#define PG_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/io/h5util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The input's bytes at a path of this process; NULL when it cannot be written. */
static inline const char *fuzz_input_file(const uint8_t *data, size_t size, const char *ext) {
  static char path[128];
  if (!path[0]) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/pg_fuzz_%ld%s", dir, (long)getpid(), ext);
  }
  FILE *f = fopen(path, "wb");
  if (!f) return NULL;
  size_t n = size ? fwrite(data, 1, size, f) : 0;
  if (fclose(f) != 0 || n != size) return NULL;
  return path;
}

/* True when the input is an HDF5 file whose superblock (the first one HDF5
 * finds: at byte 0, 512, 1024, 2048, ...) has version 2 or later, the
 * formats in which all metadata carries checksums (every seed does). An
 * older superblock (one flipped version byte away) sends the input to
 * HDF5's parser of unchecksummed files, whose crashes on damaged files are
 * HDF5's own (docs/reliability.md, "What remains"): the HDF5 harnesses skip
 * such inputs, so that what they find is patchgrad's. */
static inline bool fuzz_checksummed_hdf5(const uint8_t *data, size_t size) {
  static const uint8_t signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  for (size_t at = 0; at + 9 <= size; at = at ? 2 * at : 512)
    if (!memcmp(data + at, signature, 8)) return data[at + 8] >= 2;
  return true; /* not HDF5 at all: refused before HDF5 parses anything */
}

/* The seed folder when PG_FUZZ_MAKE_SEEDS is set, else NULL. */
static inline const char *fuzz_seed_dir(void) { return getenv("PG_FUZZ_MAKE_SEEDS"); }

/* DIR/NAME, for seed files. */
static inline const char *fuzz_seed_path(const char *name) {
  static char path[2048];
  snprintf(path, sizeof path, "%s/%s", fuzz_seed_dir(), name);
  return path;
}

/* Stops seed making with a message when st failed. */
static inline void fuzz_seed_ok(pg_status st, const char *what) {
  if (st) {
    fprintf(stderr, "making seed %s: %s\n", what, pg_last_error());
    exit(1);
  }
}

/* Every reader must close what it opened, on every path. */
static inline void fuzz_assert_nothing_open(void) {
  if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) {
    fprintf(stderr, "HDF5 objects left open: %lld\n",
            (long long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
    abort();
  }
}

#endif
