/* patchgrad latents --source fashion-mnist|synthetic|images --out F.h5 [options]
 * Makes a latent dataset (io/latents.h) from Fashion-MNIST, from the
 * procedural shapes or from a folder of images in class sub-folders,
 * optionally with a PNG preview of its first samples turned back into
 * images. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "patchgrad/data/fashion_mnist.h"
#include "patchgrad/data/image_folder.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/render/png_image.h"
#include "patchgrad/data/synthetic.h"

static int usage(FILE *f) {
  fprintf(f,
          "usage: patchgrad latents --source fashion-mnist|synthetic --out F.h5 [options]\n"
          "       patchgrad latents --source images DIR --out F.h5 --size S [options]\n"
          "\n"
          "fashion-mnist (Debian package " PG_FASHION_MNIST_PACKAGE "):\n"
          "  --split train|test   which split (default train)\n"
          "  --count N            the first N images (default: all)\n"
          "  --dir D              folder with the four IDX .gz files (default " PG_FASHION_MNIST_DIR ")\n"
          "synthetic (procedural class-dependent shapes, needs nothing installed):\n"
          "  --count N            samples (default 10000)\n"
          "  --size S             latent height and width (default 16)\n"
          "  --channels C         latent channels (default 4)\n"
          "  --classes K          classes, 1..%d (default 10)\n"
          "  --seed X             random seed (default 0)\n"
          "images (PNG and JPEG files in DIR/<class>/, torchvision's ImageFolder layout):\n"
          "  --size S             images resized (shorter side) and centre-cropped to S x S\n"
          "  --channels 1|3       gray or RGB (default 3)\n"
          "  --on-bad fail|skip   a file that is not a readable PNG or JPEG stops the run\n"
          "                       (default) or is left out with a warning\n"
          "  --stats-from T.h5    normalise with the mean and std of T.h5 (a test split\n"
          "                       with its train split's statistics; default: this folder's)\n"
          "  --split NAME         the split attribute (default train)\n"
          "  --pad P              zero pixels added on every side (default 0)\n"
          "  --space-to-depth F   pixel_unshuffle factor, divides S + 2P (default 2)\n"
          "both:\n"
          "  --preview P.png      also write the first 64 samples as an image grid\n",
          PG_SYNTHETIC_MAX_CLASSES);
  return f == stdout ? 0 : 2;
}

/* The first samples of the written file, back through the inverse transform. */
static int write_preview(const pg_latents *ds, const char *png_path) {
  int64_t n = ds->info.n < 64 ? ds->info.n : 64;
  float *x = malloc((size_t)(n * ds->sample_numel) * sizeof *x);
  pg_latent_transform tf = pg_latent_transform_of(&ds->info);
  pg_image *grid = NULL;
  if (x && !pg_latents_read(ds, 0, n, x))
    grid = pg_latents_to_grid(&tf, n, x, ds->info.height, ds->info.width, ds->info.channels, 8, 2);
  int rc = 0;
  if (!grid || pg_png_write(png_path, grid)) {
    fprintf(stderr, "patchgrad latents: preview: %s\n", x ? pg_last_error() : "out of memory");
    rc = 1;
  } else {
    printf("wrote %s: the first %lld samples as images\n", png_path, (long long)n);
  }
  pg_image_free(grid);
  free(x);
  return rc;
}

/* Each file left out by --on-bad skip, as it is met. */
static void report_skip(void *ctx, const char *path, const char *message) {
  (void)ctx;
  (void)path;
  fprintf(stderr, "patchgrad latents: skipping %s\n", message);
}

static pg_status make_images(const char *dir, pg_image_folder_opts *img, const char *out) {
  img->on_skip = report_skip;
  pg_image_folder_result r;
  pg_status st = pg_make_image_folder(dir, img, out, &r);
  if (!st)
    printf("read %s: %lld images in %lld classes, %lld bad files skipped\n", dir,
           (long long)r.images, (long long)r.classes, (long long)r.skipped);
  return st;
}

int pg_cmd_latents(int argc, char **argv) {
  const char *source = NULL, *out = NULL, *split = "train", *dir = NULL, *preview = NULL;
  pg_synthetic_opts syn;
  pg_synthetic_opts_init(&syn);
  pg_image_folder_opts img;
  pg_image_folder_opts_init(&img);
  int64_t count = -1, seed = -1, size = -1, channels = -1, classes = -1, pad = -1, s2d = -1;
  const char *on_bad = NULL, *stats_from = NULL;
  bool split_given = false;
  pg_args a = pg_args_begin("latents", argc, argv);
  while (pg_args_next(&a)) {
    const char *operand;
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_string(&a, "--source", &source)) continue;
    if (pg_arg_string(&a, "--out", &out)) continue;
    if (pg_arg_string(&a, "--split", &split)) {
      split_given = true;
      continue;
    }
    if (pg_arg_string(&a, "--dir", &dir)) continue;
    if (pg_arg_string(&a, "--preview", &preview)) continue;
    if (pg_arg_int(&a, "--count", 1, INT64_MAX, &count)) continue;
    if (pg_arg_int(&a, "--size", 1, INT64_MAX, &size)) continue;
    if (pg_arg_int(&a, "--channels", 1, INT64_MAX, &channels)) continue;
    if (pg_arg_string(&a, "--stats-from", &stats_from)) continue;
    if (pg_arg_int(&a, "--pad", 0, INT64_MAX, &pad)) continue;
    if (pg_arg_int(&a, "--space-to-depth", 1, INT64_MAX, &s2d)) continue;
    if (pg_arg_string(&a, "--on-bad", &on_bad)) continue;
    if (pg_arg_int(&a, "--classes", 1, INT64_MAX, &classes)) continue;
    if (pg_arg_int(&a, "--seed", 0, INT64_MAX, &seed)) continue;
    /* --source images DIR: the folder is the one operand */
    if (pg_arg_operand(&a, &operand) && source && !strcmp(source, "images") && !dir) {
      dir = operand;
      continue;
    }
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (!source || !out) return pg_args_error(&a, "--source and --out are required (see patchgrad latents --help)");
  if (!pg_args_ends_with(out, ".h5"))
    return pg_args_error(&a, "--out '%s': a latent dataset is an HDF5 file; give a name ending in .h5", out);
  if (preview && !pg_args_ends_with(preview, ".png"))
    return pg_args_error(&a, "--preview '%s': the preview is a PNG image; give a name ending in .png", preview);
  /* each flag belongs to one source or more; one the chosen source would
   * ignore is refused */
  const struct {
    const char *flag;
    bool given;
    const char *sources; /* the sources that read it ("a or b") */
  } belongs[] = {
      {"--split", split_given, "fashion-mnist or images"}, {"--dir", dir != NULL, "fashion-mnist or images"},
      {"--count", count > 0, "fashion-mnist or synthetic"}, {"--size", size > 0, "synthetic or images"},
      {"--channels", channels > 0, "synthetic or images"},  {"--classes", classes > 0, "synthetic"},
      {"--seed", seed >= 0, "synthetic"},                {"--stats-from", stats_from != NULL, "images"},
      {"--pad", pad >= 0, "images"},                     {"--space-to-depth", s2d > 0, "images"},
      {"--on-bad", on_bad != NULL, "images"},
  };
  if (!pg_args_has_word("fashion-mnist synthetic images", source))
    return pg_args_error(&a, "--source '%s' (expected fashion-mnist, synthetic or images)", source);
  for (size_t i = 0; i < sizeof belongs / sizeof *belongs; i++)
    if (belongs[i].given && !pg_args_has_word(belongs[i].sources, source))
      return pg_args_error(&a, "%s applies to --source %s, not to --source %s", belongs[i].flag,
                           belongs[i].sources, source);
  if (stats_from) img.stats_from = stats_from;
  if (pad >= 0) img.pad = pad;
  if (s2d > 0) img.space_to_depth = s2d;
  if (classes > 0) syn.classes = classes;
  if (on_bad && !strcmp(on_bad, "skip")) img.on_bad = PG_IMAGE_BAD_SKIP;
  else if (on_bad && !strcmp(on_bad, "fail")) img.on_bad = PG_IMAGE_BAD_FAIL;
  else if (on_bad) return pg_args_error(&a, "--on-bad '%s' (expected fail or skip)", on_bad);
  pg_status st;
  if (!strcmp(source, "fashion-mnist")) {
    st = pg_make_fashion_mnist(dir, split, count > 0 ? count : 0, out);
  } else if (!strcmp(source, "images")) {
    if (!dir || size < 1)
      return pg_args_error(&a, "--source images needs %s: --source images DIR --size S",
                           !dir ? "the folder" : "--size");
    img.size = size;
    if (channels > 0) img.channels = channels;
    img.split = split;
    st = make_images(dir, &img, out);
  } else {
    if (count > 0) syn.count = count;
    if (size > 0) syn.size = size;
    if (channels > 0) syn.channels = channels;
    if (seed >= 0) syn.seed = (uint64_t)seed;
    st = pg_make_synthetic(&syn, out);
  }
  if (st) return pg_cli_fail("latents", 1);
  pg_latents *ds = pg_latents_open(out); /* validates what was written */
  if (!ds) {
    fprintf(stderr, "patchgrad latents: reading back: %s\n", pg_last_error());
    return 1;
  }
  printf("wrote %s: %lld latents [%lld, %lld, %lld], %lld classes, source %s%s%s, mean %.6f, "
         "std %.6f\n", out, (long long)ds->info.n, (long long)ds->info.height,
         (long long)ds->info.width, (long long)ds->info.channels, (long long)ds->info.num_classes,
         ds->info.source, ds->info.split[0] ? " " : "", ds->info.split, ds->info.mean,
         ds->info.std);
  int rc = preview ? write_preview(ds, preview) : 0;
  pg_latents_close(ds);
  return rc;
}
