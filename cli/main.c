/* patchgrad: the command-line front door. Subcommands are listed in one
 * table; each lives in its own file. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/runtime.h"
#include "patchgrad/io/h5util.h"

int pg_cmd_check(int argc, char **argv);
int pg_cmd_latents(int argc, char **argv);
int pg_cmd_train(int argc, char **argv);
int pg_cmd_sample(int argc, char **argv);
int pg_cmd_classify(int argc, char **argv);
int pg_cmd_score(int argc, char **argv);
int pg_cmd_bench(int argc, char **argv);

static int cmd_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("patchgrad 0.1.0\n");
  return 0;
}

static const pg_command commands[] = {
    {"check", pg_cmd_check, "replay an HDF5 case file against the library"},
    {"latents", pg_cmd_latents, "make a latent dataset (Fashion-MNIST or synthetic shapes)"},
    {"train", pg_cmd_train, "train the DiT denoiser on HDF5 latents"},
    {"sample", pg_cmd_sample, "draw a sample grid from a DiT checkpoint"},
    {"classify", pg_cmd_classify, "train or evaluate a ViT classifier on labelled latents"},
    {"score", pg_cmd_score, "score class-conditional samples with a trained classifier"},
    {"vae", pg_cmd_vae, "train a patch VAE, encode images to latents and decode them back"},
    {"bench", pg_cmd_bench, "time DiT training steps (configs S, M, L) and the GEMM floor"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: patchgrad COMMAND [options]   (patchgrad COMMAND --help for its options)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
  pg_runtime_init(NULL); /* process-wide settings, autograd/runtime.h */
  /* the commands report HDF5 failures in their own words */
  pg_h5_quiet();
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "patchgrad: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
