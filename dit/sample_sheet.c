#include "patchgrad/dit/sample_sheet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/io/atomic.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/render/png_image.h"

/* A line redrawn in place on a terminal; plain lines otherwise. */
static void show_progress(int step, int total, void *user) {
  (void)user;
  bool tty = isatty(STDERR_FILENO);
  if (tty) fprintf(stderr, "\r\033[Ksample: step %d/%d%s", step, total, step == total ? "\n" : "");
  else if (step == total || step % (total >= 10 ? total / 10 : 1) == 0)
    fprintf(stderr, "sample: step %d/%d\n", step, total);
}

pg_status pg_sample_sheet_raw_path(const char *png_path, char *buf, size_t cap) {
  size_t len = strlen(png_path);
  if (len > 4 && !strcmp(png_path + len - 4, ".png")) len -= 4;
  if (len + 4 >= cap) return pg_fail(PG_ERR_ARG, "sample: output path too long");
  snprintf(buf, cap, "%.*s.h5", (int)len, png_path);
  return PG_OK;
}

/* One [n, shape] channels-last float dataset with its layout attribute. */
static pg_status write_nhwc(hid_t f, const char *name, int64_t n, const int64_t shape[3], const float *x) {
  const int64_t dims[4] = {n, shape[0], shape[1], shape[2]};
  pg_status st = pg_h5_write_floats(f, name, 4, dims, x, 1);
  hid_t d = st ? -1 : H5Dopen2(f, name, H5P_DEFAULT);
  if (d >= 0) {
    st = pg_h5_set_attr_string(d, "layout", pg_layout_name(PG_LAYOUT_NHWC));
    H5Dclose(d);
  }
  return st;
}

/* grid.h5: the DiT's samples x [n, H, W, C], or with a VAE the decoded
 * samples [n, dshape] and x as diffusion_latents (sample_sheet.h). */
static pg_status write_raw(const char *png_path, const float *x, const int64_t *labels, int64_t n,
                           const pg_dit_config *c, const pg_sample_sheet_opts *o, const float *decoded,
                           const int64_t dshape[3]) {
  char path[PG_ATOMIC_PATH_CAP];
  if (pg_sample_sheet_raw_path(png_path, path, sizeof path)) return pg_last_status();
  /* in memory, then written out atomically: a full disk leaves no HDF5 file half-closed */
  hid_t f = pg_h5_create_in_memory(path);
  if (f < 0) return pg_last_status();
  const int64_t shape[3] = {c->input_size, c->input_size, c->in_channels};
  const pg_vae_decoder *vae = o->vae;
  pg_status st = vae ? write_nhwc(f, "samples", n, dshape, decoded) : write_nhwc(f, "samples", n, shape, x);
  if (!st && vae) st = write_nhwc(f, "diffusion_latents", n, shape, x);
  if (!st && labels) st = pg_h5_write_int64(f, "labels", 1, &n, labels);
  st = st ? st : pg_h5_set_attr_string(f, "sampler", o->sampler.kind == PG_SAMPLER_DDIM ? "ddim" : "ddpm");
  st = st ? st : pg_h5_set_attr_int(f, "steps", o->sampler.kind == PG_SAMPLER_DDIM ? o->sampler.steps : PG_DIFFUSION_T);
  st = st ? st : pg_h5_set_attr_double(f, "cfg_scale", o->sampler.cfg_scale);
  st = st ? st : pg_h5_set_attr_int(f, "seed", (int64_t)o->sampler.seed);
  if (vae) {
    const pg_latent_transform *t = &vae->data.tf;
    st = st ? st : pg_h5_set_attr_double(f, "mean", t->mean);
    st = st ? st : pg_h5_set_attr_double(f, "std", t->std);
    st = st ? st : pg_h5_set_attr_int(f, "pad", t->pad);
    st = st ? st : pg_h5_set_attr_int(f, "space_to_depth", t->factor);
    st = st ? st : pg_h5_set_attr_string(f, "vae_checkpoint", vae->path);
    st = st ? st : pg_h5_set_attr_double(f, "scale_factor", vae->scale_factor);
    st = st ? st : pg_h5_set_attr_string(f, "description", "DiT samples decoded by the VAE vae_checkpoint "
                                         "(diffusion_latents / scale_factor through its decoder), in the "
                                         "layout and normalisation of its training files (samples); the "
                                         "DiT's latents (diffusion_latents), channels last");
  } else {
    st = st ? st : pg_h5_set_attr_string(f, "description", "DiT samples in latent space (channels last), before the inverse transform");
  }
  if (st) {
    H5Fclose(f);
    return st;
  }
  return pg_h5_commit_image(f, path);
}

/* "K NAME" (or "K") for each row of a conditional sheet; NULL when out of
 * memory. */
static char **row_labels(const pg_sample_sheet_opts *o, int rows) {
  char **names = calloc((size_t)rows, sizeof *names);
  for (int r = 0; names && r < rows; r++) {
    const int64_t k = o->class_id >= 0 ? o->class_id : r;
    char name[512], text[600];
    pg_latents_class_name(o->class_names ? o->class_names : "", k, name, sizeof name);
    snprintf(text, sizeof text, name[0] ? "%lld %s" : "%lld", (long long)k, name);
    if (!(names[r] = strdup(text))) {
      for (int i = 0; i < r; i++) free(names[i]);
      free(names);
      names = NULL;
    }
  }
  if (!names) pg_fail(PG_ERR_MEMORY, "sample: out of memory for %d row labels", rows);
  return names;
}

pg_status pg_sample_sheet(pg_ctx *ctx, pg_dit *m, const pg_diffusion *d,
                          const pg_latent_transform *tf, const pg_sample_sheet_opts *o,
                          const char *png_path, bool quiet) {
  const pg_dit_config *c = &m->cfg;
  if (o->per_class < 1) return pg_fail(PG_ERR_ARG, "sample: samples per row must be >= 1, got %d", o->per_class);
  if (c->num_classes > 0 && o->class_id >= c->num_classes)
    return pg_fail(PG_ERR_ARG, "sample: class %d is not below the model's %lld classes", o->class_id,
                   (long long)c->num_classes);
  int rows = c->num_classes == 0 ? (o->rows > 0 ? o->rows : 4) : o->class_id < 0 ? (int)c->num_classes : 1;
  int64_t n = (int64_t)rows * o->per_class, per = c->input_size * c->input_size * c->in_channels;
  float *x = malloc((size_t)(n * per) * sizeof *x);
  int64_t *labels = c->num_classes > 0 ? malloc((size_t)n * sizeof *labels) : NULL;
  if (!x || (c->num_classes > 0 && !labels)) {
    free(x);
    free(labels);
    return pg_fail(PG_ERR_MEMORY, "sample: out of memory for %lld samples", (long long)n);
  }
  for (int64_t i = 0; labels && i < n; i++) labels[i] = o->class_id >= 0 ? o->class_id : i / o->per_class;
  pg_status st = pg_diffusion_sample(ctx, m, d, &o->sampler, n, labels, x,
                                     quiet ? NULL : show_progress, NULL);
  /* through the VAE: decoded samples in its training files' layout */
  int64_t shape[3] = {c->input_size, c->input_size, c->in_channels};
  float *decoded = NULL;
  if (!st && o->vae) {
    pg_vae_decoder_sample_shape(o->vae, shape);
    if (!(decoded = malloc((size_t)(n * shape[0] * shape[1] * shape[2]) * sizeof *decoded)))
      st = pg_fail(PG_ERR_MEMORY, "sample: out of memory for %lld decoded samples", (long long)n);
    if (!st) st = pg_vae_decoder_run(ctx, o->vae, tf, x, n, 256, decoded);
  }
  if (!st) st = write_raw(png_path, x, labels, n, c, o, decoded, shape);
  char **names = labels ? row_labels(o, rows) : NULL;
  if (!st && labels && !names) st = pg_last_status();
  if (!st) {
    pg_image *grid = pg_latents_to_sheet(o->vae ? &o->vae->data.tf : tf, n, o->vae ? decoded : x, shape[0],
                                         shape[1], shape[2], o->per_class, o->zoom, (const char *const *)names);
    st = grid ? pg_png_write(png_path, grid) : pg_last_status();
    pg_image_free(grid);
  }
  for (int r = 0; names && r < rows; r++) free(names[r]);
  free(names);
  free(decoded);
  free(x);
  free(labels);
  return st;
}
