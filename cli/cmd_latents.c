/* patchgrad latents --source fashion-mnist|synthetic|images --out F.h5 [options]
 * Makes a latent dataset (io/latents.h) from Fashion-MNIST, from the
 * procedural shapes or from a folder of images in class sub-folders,
 * optionally with a PNG preview of its first samples turned back into
 * images. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static bool parse_int(const char *flag, const char *text, int64_t min, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < min) {
    fprintf(stderr, "patchgrad latents: %s '%s' is not an integer >= %lld\n", flag, text,
            (long long)min);
    return false;
  }
  *out = v;
  return true;
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
  int64_t count = -1, seed = 0, size = -1, channels = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
    if (i + 1 >= argc) {
      fprintf(stderr, "patchgrad latents: %s needs a value (or is unknown)\n", a);
      return usage(stderr);
    }
    const char *v = argv[++i];
    bool ok = true;
    if (!strcmp(a, "--source")) {
      source = v;
      /* --source images DIR: the folder may follow the source's name */
      if (!strcmp(v, "images") && i + 1 < argc && argv[i + 1][0] != '-') dir = argv[++i];
    }
    else if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--split")) split = v;
    else if (!strcmp(a, "--dir")) dir = v;
    else if (!strcmp(a, "--preview")) preview = v;
    else if (!strcmp(a, "--count")) ok = parse_int(a, v, 1, &count);
    else if (!strcmp(a, "--size")) ok = parse_int(a, v, 1, &size);
    else if (!strcmp(a, "--channels")) ok = parse_int(a, v, 1, &channels);
    else if (!strcmp(a, "--stats-from")) img.stats_from = v;
    else if (!strcmp(a, "--pad")) ok = parse_int(a, v, 0, &img.pad);
    else if (!strcmp(a, "--space-to-depth")) ok = parse_int(a, v, 1, &img.space_to_depth);
    else if (!strcmp(a, "--on-bad")) {
      if (!strcmp(v, "skip")) img.on_bad = PG_IMAGE_BAD_SKIP;
      else if (!strcmp(v, "fail")) img.on_bad = PG_IMAGE_BAD_FAIL;
      else {
        fprintf(stderr, "patchgrad latents: --on-bad '%s' (expected fail or skip)\n", v);
        return 2;
      }
    }
    else if (!strcmp(a, "--classes")) ok = parse_int(a, v, 1, &syn.classes);
    else if (!strcmp(a, "--seed")) ok = parse_int(a, v, 0, &seed);
    else {
      fprintf(stderr, "patchgrad latents: unknown option '%s'\n", a);
      return usage(stderr);
    }
    if (!ok) return 2;
  }
  if (!source || !out) {
    fprintf(stderr, "patchgrad latents: --source and --out are required\n");
    return usage(stderr);
  }
  pg_status st;
  if (!strcmp(source, "fashion-mnist")) {
    st = pg_make_fashion_mnist(dir, split, count > 0 ? count : 0, out);
  } else if (!strcmp(source, "images")) {
    if (!dir || size < 1) {
      fprintf(stderr, "patchgrad latents: --source images needs %s: --source images DIR --size S\n",
              !dir ? "the folder" : "--size");
      return 2;
    }
    img.size = size;
    if (channels > 0) img.channels = channels;
    img.split = split;
    st = make_images(dir, &img, out);
  } else if (!strcmp(source, "synthetic")) {
    if (count > 0) syn.count = count;
    if (size > 0) syn.size = size;
    if (channels > 0) syn.channels = channels;
    syn.seed = (uint64_t)seed;
    st = pg_make_synthetic(&syn, out);
  } else {
    fprintf(stderr, "patchgrad latents: --source '%s' (expected fashion-mnist, synthetic or "
                    "images)\n", source);
    return 2;
  }
  if (st) {
    fprintf(stderr, "patchgrad latents: %s\n", pg_last_error());
    return 1;
  }
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
