/* libFuzzer harness: IDX files, plain or gzip-compressed (data/idx.h). */
#include "fuzz_util.h"

#include <zlib.h>

#include "patchgrad/data/idx.h"

static void write_seed(const char *name, const uint8_t *bytes, size_t n, bool gz) {
  if (gz) {
    gzFile f = gzopen(fuzz_seed_path(name), "wb");
    if (!f || gzwrite(f, bytes, (unsigned)n) != (int)n || gzclose(f) != Z_OK) exit(1);
  } else {
    FILE *f = fopen(fuzz_seed_path(name), "wb");
    if (!f || fwrite(bytes, 1, n, f) != n || fclose(f)) exit(1);
  }
}

static void make_seeds(void) {
  /* 2 images of 3 x 3, and 2 labels: the layouts of MNIST's four files */
  uint8_t images[4 + 12 + 18] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3};
  for (int i = 0; i < 18; i++) images[16 + i] = (uint8_t)(i * 14);
  uint8_t labels[4 + 4 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 7, 3};
  write_seed("images-idx3-ubyte", images, sizeof images, false);
  write_seed("images-idx3-ubyte.gz", images, sizeof images, true);
  write_seed("labels-idx1-ubyte.gz", labels, sizeof labels, true);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  if (fuzz_seed_dir()) {
    make_seeds();
    exit(0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_input_file(data, size, ".idx");
  if (!path) return 0;
  for (int rank = 0; rank <= 3; rank++) {
    pg_idx idx;
    if (!pg_idx_read(path, rank, &idx)) {
      /* every element the header promises is there */
      uint64_t sum = 0;
      for (int64_t i = 0; i < idx.numel; i++) sum += idx.data[i];
      if (sum > (uint64_t)idx.numel * 255) abort();
      pg_idx_free(&idx);
    }
  }
  return 0;
}
