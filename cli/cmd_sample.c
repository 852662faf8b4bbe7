/* patchgrad sample: draws images from a trained DiT checkpoint. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/io/atomic.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/dit/sample_sheet.h"
#include "patchgrad/dit/trainer.h"

static int usage(FILE *f) {
  fprintf(f,
"usage: patchgrad sample --ckpt F.h5 --out grid.png [options]\n"
"  --sampler ddpm|ddim   DDPM over all 1000 steps, or DDIM (eta 0) over --sample-steps (ddim)\n"
"  --sample-steps K      DDIM steps (50; ddpm takes no other value than its 1000)\n"
"  --cols N              samples per row (8)\n"
"conditional models:\n"
"  --class C|all         one row of class C, or one row per class (all)\n"
"  --cfg S               classifier-free guidance scale (4; 1 = plain conditional)\n"
"unconditional models:\n"
"  --rows R              rows of samples (4)\n"
"  --seed X (0)  --threads N (all cores)\n"
"  --ema                 sample with the checkpoint's EMA weights\n"
"  --zoom K              magnify the sheet K times (default: to >= 512 pixels wide)\n"
"  --vae V.h5            a DiT trained on VAE latents: the VAE that decodes them\n"
"                        (default: the one its checkpoint names, vae_checkpoint)\n"
"Writes the PNG grid (--out must end in .png) and the raw samples next to it\n"
"(grid.png -> grid.h5). A DiT trained on VAE latents is sampled through that VAE:\n"
"the grid shows the decoded images, and grid.h5 holds them in the layout of the\n"
"VAE's training data (what patchgrad score reads), and the DiT's latents.\n"
"A flag the model or sampler would ignore is refused.\n");
  return f == stdout ? 0 : 2;
}

/* The model, the dataset's transform and class names, and the VAE of VAE
 * latents, from a checkpoint. */
typedef struct {
  pg_dit *m;
  pg_latent_transform *tf;
  char *names; /* 512 chars: the rows' labels */
  char vae[1024]; /* vae_checkpoint ("" for pixel-space latents) */
  double vae_scale; /* vae_scale_factor */
  pg_diffusion *diff; /* the noise schedule it was trained with */
} dit_loading;

static pg_params *dit_from_config(void *self, const pg_kv *config, const char *path) {
  dit_loading *l = self;
  pg_dit_config c;
  if (pg_dit_config_from_kv(config, &c) || pg_latent_transform_from_kv(config, path, l->tf) ||
      pg_diffusion_from_kv(config, path, l->diff))
    return NULL;
  const char *names = NULL, *vae = NULL;
  if (pg_kv_get_string(config, "data_class_names", &names) == 1) snprintf(l->names, 512, "%s", names);
  const int has_vae = pg_kv_get_string(config, "vae_checkpoint", &vae);
  if (has_vae == 1) {
    snprintf(l->vae, sizeof l->vae, "%s", vae);
    const int r = pg_kv_get_double(config, "vae_scale_factor", &l->vae_scale);
    if (r < 0) {
      pg_error_prefix(path);
      return NULL;
    }
    if (r == 0 || !(l->vae_scale > 0) || !isfinite(l->vae_scale)) {
      pg_fail(PG_ERR_FORMAT, "%s: config names the VAE %s but no vae_scale_factor (a finite number > 0)%s", path,
              vae, r == 0 ? "" : ", it holds another value");
      return NULL;
    }
  } else if (has_vae < 0) {
    pg_error_prefix(path);
    return NULL;
  }
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  return pg_dit_init(l->m, &c, &rng) ? NULL : &l->m->params;
}

static void dit_unbuild(void *self) { pg_dit_free(((dit_loading *)self)->m); }

static pg_status load_model(const char *path, bool ema, pg_dit *m, pg_latent_transform *tf, char *names,
                            pg_diffusion *diff, dit_loading *l) {
  *l = (dit_loading){.m = m, .tf = tf, .names = names, .diff = diff};
  return pg_checkpoint_load_model(path, ema, &(pg_checkpoint_model){dit_from_config, dit_unbuild, l});
}

/* The VAE of a DiT trained on VAE latents: --vae, or the one its checkpoint
 * names; an error says which and how to give another. */
static pg_status load_vae(const char *ckpt, const dit_loading *l, const char *vae_flag, pg_vae_decoder *vae) {
  const pg_dit_config *c = &l->m->cfg;
  const int64_t shape[3] = {c->input_size, c->input_size, c->in_channels};
  const char *path = vae_flag ? vae_flag : l->vae;
  if (!pg_vae_decoder_load(vae, path, l->vae_scale, shape)) return PG_OK;
  char why[1024];
  snprintf(why, sizeof why, "%s", pg_last_error());
  if (vae_flag) return pg_fail(pg_last_status(), "--vae %s: %s", vae_flag, why);
  return pg_fail(pg_last_status(), "%s was trained on latents of the VAE %s, which decodes its samples, and it "
                 "cannot be used: %s (give the VAE's checkpoint with --vae V.h5)", ckpt, l->vae, why);
}

/* The files sample writes must not be the checkpoint it reads (same file
 * through any name), and their names must fit the system's limits. */
static bool output_ok(const pg_args *a, const char *ckpt, const char *out) {
  char raw[PG_ATOMIC_PATH_CAP];
  if (pg_atomic_check_path(out) || pg_sample_sheet_raw_path(out, raw, sizeof raw) ||
      pg_atomic_check_path(raw)) {
    pg_args_error(a, "--out: %s", pg_last_error());
    return false;
  }
  struct stat in;
  if (stat(ckpt, &in) != 0) return true; /* loading it reports that */
  const char *outputs[] = {out, raw};
  for (int i = 0; i < 2; i++) {
    struct stat o;
    if (stat(outputs[i], &o) == 0 && o.st_dev == in.st_dev && o.st_ino == in.st_ino) {
      pg_args_error(a, "--out %s would write %s, which is the checkpoint --ckpt %s it reads", out,
                    outputs[i], ckpt);
      return false;
    }
  }
  return true;
}

/* Flags that apply to one kind of model only, refused on the other: a
 * conditional model draws one row per class (--class), guided (--cfg); an
 * unconditional one draws --rows rows. */
static int check_model_flags(const pg_args *a, const char *ckpt, const pg_dit *m, const char *cls, bool rows_given,
                             int64_t rows, bool cfg_given, double cfg) {
  const int64_t classes = m->cfg.num_classes;
  if (classes > 0 && rows_given)
    return pg_args_error(a, "--rows %lld applies to an unconditional model; %s is conditional (%lld classes): "
                         "it draws one row per class, or one row with --class C", (long long)rows, ckpt,
                         (long long)classes);
  if (classes == 0 && cls)
    return pg_args_error(a, "--class %s applies to a conditional model; %s is unconditional (use --rows R)", cls,
                         ckpt);
  if (classes == 0 && cfg_given)
    return pg_args_error(a, "--cfg %g (guidance) applies to a conditional model; %s is unconditional", cfg, ckpt);
  return 0;
}

int pg_cmd_sample(int argc, char **argv) {
  const char *ckpt = NULL, *out = NULL, *sampler = "ddim", *cls = NULL, *vae_flag = NULL;
  int64_t steps = 50, cols = 8, rows = 4, seed = 0, threads = 0, zoom = 0;
  double cfg = 4.0;
  bool ema = false, steps_given = false, rows_given = false, cfg_given = false;
  pg_args a = pg_args_begin("sample", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_string(&a, "--ckpt", &ckpt)) continue;
    if (pg_arg_string(&a, "--out", &out)) continue;
    if (pg_arg_string(&a, "--sampler", &sampler)) continue;
    if (pg_arg_int(&a, "--sample-steps", 1, PG_DIFFUSION_T, &steps)) {
      steps_given = true;
      continue;
    }
    if (pg_arg_double(&a, "--cfg", 0, 100, &cfg)) {
      cfg_given = true;
      continue;
    }
    if (pg_arg_string(&a, "--class", &cls)) continue;
    if (pg_arg_int(&a, "--cols", 1, 256, &cols)) continue;
    if (pg_arg_int(&a, "--rows", 1, 256, &rows)) {
      rows_given = true;
      continue;
    }
    if (pg_arg_int(&a, "--seed", 0, INT64_MAX, &seed)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &threads)) continue;
    if (pg_arg_switch(&a, "--ema", &ema)) continue;
    if (pg_arg_int(&a, "--zoom", 1, PG_SHEET_MAX_ZOOM, &zoom)) continue;
    if (pg_arg_string(&a, "--vae", &vae_flag)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (!ckpt || !out) return pg_args_error(&a, "--ckpt F.h5 and --out grid.png are required");
  if (!output_ok(&a, ckpt, out)) return 2;
  if (!pg_args_ends_with(out, ".png"))
    return pg_args_error(&a, "--out '%s': the grid is written as a PNG image; give a name ending in .png (the raw "
                         "latents go beside it as .h5)", out);
  char names[512] = "";
  pg_sample_sheet_opts o = {.per_class = (int)cols, .rows = (int)rows, .class_id = -1, .zoom = (int)zoom,
                            .class_names = names};
  if (!strcmp(sampler, "ddim")) o.sampler.kind = PG_SAMPLER_DDIM;
  else if (!strcmp(sampler, "ddpm")) o.sampler.kind = PG_SAMPLER_DDPM;
  else return pg_args_error(&a, "--sampler '%s' is not ddpm or ddim", sampler);
  if (o.sampler.kind == PG_SAMPLER_DDPM && steps_given && steps != PG_DIFFUSION_T)
    return pg_args_error(&a, "--sample-steps %lld applies to --sampler ddim; --sampler ddpm runs all %d steps",
                         (long long)steps, PG_DIFFUSION_T);
  o.sampler.steps = (int)steps;
  o.sampler.cfg_scale = (float)cfg;
  o.sampler.seed = (uint64_t)seed;
  if (cls && strcmp(cls, "all")) {
    char *end;
    errno = 0;
    long long v = strtoll(cls, &end, 10);
    if (errno || *end || end == cls || v < 0 || v > INT_MAX)
      return pg_args_error(&a, "--class '%s' is not a class number in [0, %d] or 'all'", cls,
                           INT_MAX);
    o.class_id = (int)v;
  }
  pg_set_threads((int)threads);
  pg_dit m;
  pg_latent_transform tf;
  pg_diffusion d;
  dit_loading l;
  if (load_model(ckpt, ema, &m, &tf, names, &d, &l)) return pg_cli_fail("sample", 1);
  if (check_model_flags(&a, ckpt, &m, cls, rows_given, rows, cfg_given, cfg)) {
    pg_dit_free(&m);
    return 2;
  }
  if (vae_flag && !l.vae[0]) {
    pg_dit_free(&m);
    return pg_args_error(&a, "--vae %s applies to a DiT trained on VAE latents; %s was trained on latents "
                         "that are images themselves (its config names no vae_checkpoint)", vae_flag, ckpt);
  }
  pg_vae_decoder vae = {0};
  pg_status st = l.vae[0] ? load_vae(ckpt, &l, vae_flag, &vae) : PG_OK;
  o.vae = vae.loaded ? &vae : NULL;
  pg_ctx *ctx = st ? NULL : pg_ctx_new(0);
  if (!st) st = ctx ? pg_sample_sheet(ctx, &m, &d, &tf, &o, out, false) : pg_last_status();
  pg_ctx_free(ctx);
  pg_vae_decoder_free(&vae);
  pg_dit_free(&m);
  if (st) {
    pg_cli_print_error("sample", pg_last_error());
    return 1;
  }
  if (o.vae) printf("wrote %s, decoded by the VAE %s (the decoded samples and the DiT's latents beside it)\n", out,
                    vae.path);
  else printf("wrote %s (and the raw latents beside it)\n", out);
  return 0;
}
