/* libFuzzer harness: latent files (io/latents.h), the loader over them, and
 * the decoding of their samples to images (data/latent_image.h). */
#include "fuzz_util.h"

#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/io/loader.h"

static void make_seeds(void) {
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = 3;
  info.height = info.width = 2;
  info.channels = 4;
  info.has_labels = true;
  info.num_classes = 3;
  info.mean = 0.25;
  info.std = 0.5;
  info.pad = 1;
  info.space_to_depth = 2;
  snprintf(info.source, sizeof info.source, "fuzz-seed");
  float x[3 * 16];
  for (int i = 0; i < 3 * 16; i++) x[i] = (float)i / 16.0f - 1.0f;
  int64_t y[3] = {0, 2, 1};
  fuzz_seed_ok(pg_latents_save(fuzz_seed_path("labelled.h5"), &info, x, y), "labelled.h5");
  info.has_labels = false;
  info.num_classes = 0;
  info.pad = 0;
  info.space_to_depth = 1;
  info.n = 2;
  fuzz_seed_ok(pg_latents_save(fuzz_seed_path("unlabelled.h5"), &info, x, NULL), "unlabelled.h5");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  pg_h5_quiet();
  if (fuzz_seed_dir()) {
    make_seeds();
    exit(0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!fuzz_checksummed_hdf5(data, size)) return 0;
  const char *path = fuzz_input_file(data, size, ".h5");
  if (!path) return 0;
  pg_latents *ds = pg_latents_open(path);
  if (ds) {
    /* the first and the last sample, and the first decoded as an image */
    float *x = malloc((size_t)ds->sample_numel * sizeof *x);
    if (x && !pg_latents_read(ds, 0, 1, x) && !pg_latents_read(ds, ds->info.n - 1, 1, x)) {
      pg_latent_transform tf = pg_latent_transform_of(&ds->info);
      pg_image *im = pg_latents_to_grid(&tf, 1, x, ds->info.height, ds->info.width,
                                        ds->info.channels, 1, 0);
      pg_image_free(im);
    }
    free(x);
    pg_latents_close(ds);
  }
  fuzz_assert_nothing_open();
  ds = pg_latents_load(path);
  pg_latents_close(ds);
  fuzz_assert_nothing_open();
  pg_loader_opts o;
  pg_loader_opts_init(&o);
  o.batch_size = 2;
  pg_loader *l = pg_loader_open(path, &o);
  if (l) {
    const pg_latents_info *in = pg_loader_info(l);
    float *x = malloc((size_t)(2 * in->height * in->width * in->channels) * sizeof *x);
    int64_t labels[2], count;
    if (x) pg_loader_next(l, x, in->has_labels ? labels : NULL, NULL, &count);
    free(x);
    pg_loader_close(l);
  }
  fuzz_assert_nothing_open();
  return 0;
}
