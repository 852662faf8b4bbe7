/* patchgrad: the command-line front door. Subcommands are listed in one
 * table; each lives in its own file. PG_VERSION (the project's version)
 * comes from meson.build. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/gemm_engine.h"
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
  if (argc > 2 || (argc == 2 && !pg_args_is_help(argv[1]))) {
    fprintf(stderr, "patchgrad version: takes no options (got '%s')\n", argv[1]);
    return 2;
  }
  if (argc == 2) {
    printf("usage: patchgrad version   (or patchgrad --version)\nPrints the version.\n");
    return 0;
  }
  printf("patchgrad " PG_VERSION "\n");
  return 0;
}

static const pg_command commands[] = {
    {"check", pg_cmd_check, "replay an HDF5 case file against the library"},
    {"latents", pg_cmd_latents, "make a latent dataset (Fashion-MNIST, synthetic shapes or an image folder)"},
    {"train", pg_cmd_train, "train the DiT denoiser on HDF5 latents"},
    {"sample", pg_cmd_sample, "draw a sample grid from a DiT checkpoint"},
    {"classify", pg_cmd_classify, "train or evaluate a ViT classifier on labelled latents"},
    {"score", pg_cmd_score, "score class-conditional samples with a trained classifier"},
    {"vae", pg_cmd_vae, "train a patch VAE, encode images to latents and decode them back"},
    {"bench", pg_cmd_bench, "time DiT training steps (sizes tiny, small, medium) and the GEMM floor"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: patchgrad COMMAND [options]\n"
             "       patchgrad help [COMMAND]   patchgrad --version\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n`patchgrad COMMAND --help` (or -h) lists a command's options. A flag's value\n"
             "follows it (--lr 1e-3) or an equals sign (--lr=1e-3).\n");
}

static const pg_command *find(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (!strcmp(name, commands[i].name)) return &commands[i];
  return NULL;
}

static int unknown(const char *name) {
  fprintf(stderr, "patchgrad: unknown command '%s'\n", name);
  usage(stderr);
  return 2;
}

/* `patchgrad help CMD [SUB]`: the command's own usage, as CMD [SUB] --help. */
static int help(int argc, char **argv) {
  if (argc < 3) {
    usage(stdout);
    return 0;
  }
  const pg_command *c = find(argv[2]);
  if (!c) return unknown(argv[2]);
  char *args[4] = {argv[2], argc > 3 ? argv[3] : "--help", "--help", NULL};
  if (argc > 4) {
    fprintf(stderr, "patchgrad help: one command (and its sub-command) at a time, got '%s' after '%s %s'\n",
            argv[4], argv[2], argv[3]);
    return 2;
  }
  return c->run(argc > 3 ? 3 : 2, args);
}

/* How OpenMP's idle worker threads wait. libgomp's default spins about
 * 300,000 times before sleeping; on a machine shared with other busy
 * processes that burns the cores they need and stalls every parallel
 * region of a step. With a short spin (10,000) a small-size training step
 * beside two busy processes on two cores kept 49% of its idle throughput
 * against 29% with the default, and idle steps did not slow down
 * (tools/contention.sh; figures in the README). libgomp reads
 * GOMP_SPINCOUNT only when it is loaded, so the command sets it for itself
 * by executing itself once more; a GOMP_SPINCOUNT or OMP_WAIT_POLICY of
 * the user's wins, and when the re-execution fails the run goes on with
 * libgomp's default. */
static void short_spin(char **argv) {
  if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY")) return;
  setenv("GOMP_SPINCOUNT", "10000", 1);
  execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
  short_spin(argv);
  pg_runtime_init(NULL); /* process-wide settings, autograd/runtime.h */
  /* the commands report HDF5 failures in their own words */
  pg_h5_quiet();
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (pg_args_is_help(argv[1]) || !strcmp(argv[1], "help")) return help(argc, argv);
  if (!strcmp(argv[1], "--version")) return cmd_version(1, argv + 1);
  const pg_command *c = find(argv[1]);
  if (!c) return unknown(argv[1]);
  /* a bad PG_GEMM_ENGINE is refused by every command alike, unless the
   * command's own --gemm-engine flag (where it has one) sets the engine */
  bool engine_flag = argc > 2 && pg_args_is_help(argv[2]);
  for (int i = 2; i < argc && !engine_flag; i++)
    engine_flag = !strncmp(argv[i], "--gemm-engine", 13) && (argv[i][13] == '\0' || argv[i][13] == '=');
  if (!engine_flag && pg_gemm_engine_env()) {
    fprintf(stderr, "patchgrad %s: %s\n", argv[1], pg_last_error());
    return 2;
  }
  return c->run(argc - 1, argv + 1);
}
