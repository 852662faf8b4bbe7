/* patchgrad score --classifier CKPT --samples S.h5: how many class-
 * conditional samples a trained ViT classifier assigns to the class they
 * were asked for, and how sure it is (vit/score.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/vit/score.h"

static int usage(FILE *f) {
  fprintf(f,
"usage: patchgrad score --classifier CKPT.h5 --samples S.h5 [--batch B] [--threads N]\n"
"  --classifier CKPT.h5  a checkpoint of patchgrad classify train\n"
"  --samples S.h5        patchgrad sample's grid.h5 (samples + labels), or a\n"
"                        labelled latent dataset (its score is the classifier's accuracy)\n"
"Prints the agreement (the fraction classified as the class asked for), the\n"
"mean confidence (top softmax probability) and the agreement per class.\n");
  return f == stdout ? 0 : 2;
}

int pg_cmd_score(int argc, char **argv) {
  const char *ckpt = NULL, *samples = NULL;
  int64_t batch = 256, threads = 0;
  pg_args a = pg_args_begin("score", argc, argv);
  while (pg_args_next(&a)) {
    if (pg_args_help(&a)) return usage(stdout);
    if (pg_arg_string(&a, "--classifier", &ckpt)) continue;
    if (pg_arg_string(&a, "--samples", &samples)) continue;
    if (pg_arg_int(&a, "--batch", 1, 1 << 20, &batch)) continue;
    if (pg_arg_int(&a, "--threads", 1, 1024, &threads)) continue;
    return pg_args_unknown(&a);
  }
  if (a.failed) return 2;
  if (!ckpt || !samples)
    return pg_args_error(&a, "--classifier CKPT.h5 and --samples S.h5 are required");
  pg_set_threads((int)threads);
  pg_vit m;
  pg_vit_data_info trained;
  if (pg_vit_load(ckpt, &m, &trained)) {
    fprintf(stderr, "patchgrad score: %s\n", pg_last_error());
    return 1;
  }
  pg_ctx *ctx = pg_ctx_new(0);
  pg_score_result r;
  pg_status st = ctx ? pg_score_samples(ctx, &m, samples, batch, &r) : pg_last_status();
  if (!st) {
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
  } else {
    fprintf(stderr, "patchgrad score: %s\n", pg_last_error());
  }
  pg_ctx_free(ctx);
  pg_vit_free(&m);
  return st ? 1 : 0;
}
