/* patchgrad score --classifier CKPT --samples S.h5: how many class-
 * conditional samples a trained ViT classifier assigns to the class they
 * were asked for, and how sure it is (vit/score.h); with --reference
 * REAL.h5, the Frechet distance between the classifier's features of the
 * samples and of real images, and with --split-halves the real-vs-real
 * floor (vit/frechet.h, docs/frechet.md). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/vit/frechet.h"
#include "patchgrad/vit/score.h"

static int usage(FILE *f) {
  fprintf(f,
"usage: patchgrad score --classifier CKPT.h5 --samples S.h5 [--reference REAL.h5] [--split-halves]\n"
"                       [--batch B] [--threads N]\n"
"       patchgrad score --classifier CKPT.h5 --reference REAL.h5 --split-halves\n"
"  --classifier CKPT.h5  a checkpoint of patchgrad classify train\n"
"  --samples S.h5        patchgrad sample's grid.h5 (samples + labels), or a\n"
"                        labelled latent dataset (its score is the classifier's accuracy)\n"
"  --reference REAL.h5   a latent file of real images (e.g. the test split): also print\n"
"                        the Frechet distance between the classifier's penultimate\n"
"                        features of the samples and of these images (FID's formula\n"
"                        with this ViT, not Inception: comparable only within patchgrad)\n"
"  --split-halves        also print the real-vs-real floor: the same distance between\n"
"                        REAL.h5's even- and odd-numbered images (--samples optional)\n"
"Prints the agreement (the fraction classified as the class asked for), the\n"
"mean confidence (top softmax probability) and the agreement per class.\n");
  return f == stdout ? 0 : 2;
}

/* The Frechet distance between the ViT features of the samples (when given)
 * and of the reference's images, and with split_halves between the
 * reference's even- and odd-numbered images. One pass over the reference:
 * its two halves merged are the whole. */
static pg_status print_frechet(pg_ctx *ctx, pg_vit *m, const pg_vit_data_info *trained, const char *samples,
                               const char *reference, bool split_halves, int64_t batch) {
  const int64_t h = m->cfg.hidden;
  pg_frechet_stats half[2] = {{0}}, ref = {0}, gen = {0};
  pg_frechet_result r;
  int64_t n_ref = 0, n_gen = 0;
  pg_status st = pg_frechet_stats_init(&half[0], h);
  st = st ? st : pg_frechet_stats_init(&half[1], h);
  st = st ? st : pg_frechet_add_vit_file(ctx, m, trained, reference, batch, 2, half, &n_ref);
  if (!st && samples) {
    st = pg_frechet_stats_init(&ref, h);
    st = st ? st : pg_frechet_stats_merge(&ref, &half[0]);
    st = st ? st : pg_frechet_stats_merge(&ref, &half[1]);
    st = st ? st : pg_frechet_stats_init(&gen, h);
    st = st ? st : pg_frechet_add_vit_file(ctx, m, trained, samples, batch, 1, &gen, &n_gen);
    st = st ? st : pg_frechet_stats_distance(&gen, &ref, &r);
    if (!st)
      printf("Frechet distance to the reference: %.4f (means %.4f + covariances %.4f; %lld samples vs "
             "%lld images of %s)\n", r.distance, r.mean_term, r.cov_term, (long long)n_gen, (long long)n_ref,
             reference);
  }
  if (!st && split_halves) {
    st = pg_frechet_stats_distance(&half[0], &half[1], &r);
    if (!st)
      printf("real-vs-real floor, %s's %lld even- vs %lld odd-numbered images: %.4f (means %.4f + "
             "covariances %.4f)\n", reference, (long long)half[0].n, (long long)half[1].n, r.distance,
             r.mean_term, r.cov_term);
  }
  if (!st)
    printf("  (FID's formula on this classifier's %lld penultimate features, not Inception's: comparable "
           "only within patchgrad, with the same classifier and sample counts; docs/frechet.md)\n",
           (long long)h);
  pg_frechet_stats_free(&half[0]);
  pg_frechet_stats_free(&half[1]);
  pg_frechet_stats_free(&ref);
  pg_frechet_stats_free(&gen);
  return st;
}

int pg_cmd_score(int argc, char **argv) {
  const char *ckpt = NULL, *samples = NULL, *reference = NULL;
  int64_t batch = 256, threads = 0;
  bool split_halves = false;
  pg_args a = pg_args_begin("score", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_string(&a, "--classifier", &ckpt)) continue;
    if (pg_arg_string(&a, "--samples", &samples)) continue;
    if (pg_arg_string(&a, "--reference", &reference)) continue;
    if (pg_arg_switch(&a, "--split-halves", &split_halves)) continue;
    if (pg_arg_int(&a, "--batch", 1, 1 << 20, &batch)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &threads)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (split_halves && !reference)
    return pg_args_error(&a, "--split-halves needs --reference REAL.h5 (the real images it splits)");
  if (!ckpt || (!samples && !split_halves))
    return pg_args_error(&a, "--classifier CKPT.h5 and --samples S.h5 are required");
  pg_set_threads((int)threads);
  pg_vit m;
  pg_vit_data_info trained;
  if (pg_vit_load(ckpt, &m, &trained)) {
    pg_cli_print_error("score", pg_last_error());
    return 1;
  }
  pg_ctx *ctx = pg_ctx_new(0);
  pg_score_result r;
  pg_status st = !ctx ? pg_last_status() : samples ? pg_score_samples(ctx, &m, samples, batch, &r) : PG_OK;
  if (!st && samples) {
    printf("samples: %s (%lld", samples, (long long)r.all.n);
    if (r.sampler[0]) printf(", %s %lld steps", r.sampler, (long long)r.steps);
    if (!isnan(r.cfg_scale)) printf(", cfg %g", r.cfg_scale);
    printf(")\nclassifier: %s (ViT, %s attention, trained on %s latents)\n", ckpt,
           m.cfg.single_head ? "single-head" : "multi-head", trained.source[0] ? trained.source : "unknown");
    printf("agreement %.4f (%lld/%lld classified as the class asked for)\n", r.all.accuracy,
           (long long)r.all.agree, (long long)r.all.n);
    printf("mean confidence %.4f (top probability); mean probability of the asked class %.4f\n",
           r.all.mean_confidence, r.all.mean_label_prob);
    printf("per class (agree/asked):");
    for (int64_t k = 0; k < r.num_classes; k++)
      if (r.per_class_n[k]) printf("  %lld: %lld/%lld", (long long)k, (long long)r.per_class_agree[k], (long long)r.per_class_n[k]);
    printf("\n");
    pg_score_result_free(&r);
  }
  if (!st && reference) st = print_frechet(ctx, &m, &trained, samples, reference, split_halves, batch);
  if (st) pg_cli_print_error("score", pg_last_error());
  pg_ctx_free(ctx);
  pg_vit_free(&m);
  return st ? 1 : 0;
}
