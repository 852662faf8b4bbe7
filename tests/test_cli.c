/* The command line's conventions (README, "The command line"), run through
 * the built `patchgrad`:
 *  - every valued flag takes `--flag=value` as well as `--flag value`, a
 *    switch takes no value;
 *  - `patchgrad --version`, `-h`, `--help`, `help`, `help CMD [SUB]`, and
 *    `-h`/`--help` on every command and sub-command print on stdout, exit 0;
 *  - one name per concept: `--size tiny|small|medium` in train and bench,
 *    `--cols`/`--sample-steps` for the sample sheet in train and sample (the
 *    old spellings are unknown options);
 *  - flags that would be ignored are refused naming them (sample, latents),
 *    and so are outputs whose name promises another format;
 *  - error lines carry "patchgrad CMD:" once, never a repeated prefix, and
 *    never name a temporary file, also when writes fail on a read-only or a
 *    full file system (root only: tmpfs mounts; skipped otherwise). */
#include "testutil.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "patchgrad/data/synthetic.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/render/png_image.h"

static char out[1 << 16];

/* `patchgrad ARGS` (printf format), stdout and stderr into out; its status. */
#define CLI(...) cli_run(__VA_ARGS__)
static int cli_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int cli_run(const char *fmt, ...) {
  char args[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  return pg_test_run(out, sizeof out, "cd '%s' && '%s/patchgrad' %s", pg_test_tmpdir(), PG_BUILD_DIR, args);
}

static void assert_out_contains(const char *needle) {
  if (!strstr(out, needle)) fail_msg("the output lacks '%s': %s", needle, out);
}

static void assert_out_lacks(const char *needle) {
  if (strstr(out, needle)) fail_msg("the output has '%s': %s", needle, out);
}

/* Invocations refused with exit status 2, each saying something. */
typedef struct {
  const char *args, *says;
} refusal;

/* `patchgrad PREFIX ARGS` for each; `lacks` (or NULL) must not be said. */
static void assert_refused(const char *prefix, const refusal *r, size_t n, const char *lacks) {
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(CLI("%s %s", prefix, r[i].args), 2);
    assert_out_contains(r[i].says);
    if (lacks) assert_out_lacks(lacks);
  }
}

/* Whether every space-separated word of s is a word of cmd. */
static bool only_command_words(const char *cmd, char *s) {
  char words[128];
  snprintf(words, sizeof words, " %s ", cmd);
  bool any = false;
  for (char *w = strtok(s, " "); w; w = strtok(NULL, " ")) {
    char key[80];
    snprintf(key, sizeof key, " %s ", w);
    if (!strstr(words, key)) return false;
    any = true;
  }
  return any;
}

/* Every line that starts with "patchgrad CMD: " names its command once:
 * what follows does not start with a prefix made of CMD's words again
 * ("patchgrad classify train: classify: ..."), and no line names a
 * temporary file. */
static void assert_clean_errors(const char *cmd) {
  char head[128];
  snprintf(head, sizeof head, "patchgrad %s: ", cmd);
  const size_t n = strlen(head);
  bool any = false;
  for (const char *line = out; *line;) {
    const char *end = strchr(line, '\n');
    const size_t len = end ? (size_t)(end - line) : strlen(line);
    if (!strncmp(line, head, n)) {
      any = true;
      char rest[256];
      snprintf(rest, sizeof rest, "%.*s", (int)(len - n < 255 ? len - n : 255), line + n);
      char *colon = strstr(rest, ": ");
      if (colon) {
        *colon = 0;
        if (only_command_words(cmd, rest)) fail_msg("a repeated prefix in: %.*s", (int)len, line);
      }
    }
    line += len + (end ? 1 : 0);
  }
  if (!any) fail_msg("no line starts with '%s': %s", head, out);
  assert_out_lacks(".tmp");
  assert_out_lacks(".patchgrad-");
}

/* A labelled synthetic latent file of n samples of size x size x 4. */
static void make_data(const char *name, int64_t n, int64_t size, int64_t classes) {
  pg_synthetic_opts so;
  pg_synthetic_opts_init(&so);
  so.count = n;
  so.size = size;
  so.classes = classes;
  assert_int_equal(pg_make_synthetic(&so, pg_test_tmp(name)), PG_OK);
}

#define TINY "--hidden 16 --depth 1 --heads 2 --patch 2 --batch 8 --threads 1 --quiet"

static int setup(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("cli")) return -1;
  make_data("d.h5", 32, 4, 2);
  make_data("d8.h5", 32, 8, 2);
  /* a conditional and an unconditional DiT of two steps */
  if (CLI("train --data d.h5 " TINY " --steps 2 --cols 0 --out cond") ||
      CLI("train --data d.h5 --unconditional " TINY " --steps 2 --cols 0 --out uncond"))
    return -1;
  return 0;
}

/* ---- --flag=value ---- */

static void test_flag_equals_value(void **state) {
  (void)state;
  /* the same run, spelled both ways */
  assert_int_equal(CLI("latents --source=synthetic --count=24 --size=4 --channels=4 --classes=3 --seed=5 "
                       "--out=eq.h5"), 0);
  pg_latents *ds = pg_latents_open(pg_test_tmp("eq.h5"));
  assert_non_null(ds);
  assert_true(ds->info.n == 24 && ds->info.height == 4 && ds->info.num_classes == 3);
  pg_latents_close(ds);
  assert_int_equal(CLI("train --data=d.h5 --hidden=16 --depth=1 --heads=2 --patch=2 --batch=8 --steps=3 "
                       "--lr=1e-3 --optim=adam --cols=0 --threads=1 --quiet --out=eqrun"), 0);
  assert_out_contains("step 3:");
  assert_int_equal(CLI("check --atol=1e-3 --rtol=1e-2 %s", pg_test_data("nn_cases.h5")), 0);
  assert_int_equal(CLI("bench --size=tiny --steps=1 --warmup=0 --threads=1"), 0);
  assert_out_contains("size tiny");
  /* a bad value after '=' is refused like one after a space, naming it */
  const refusal bad[] = {
      {"train --data d.h5 --lr=fast", "patchgrad train: --lr 'fast' is not a number in [0, 1000]"},
      {"train --data d.h5 --steps=", "patchgrad train: --steps '' is not an integer"},
      {"train --data d.h5 --val-count=0", "patchgrad train: --val-count '0' is not an integer >= 1"},
      {"train --data d.h5 --size=huge", "patchgrad train: --size 'huge' is not one of tiny, small, medium"},
      {"sample --ckpt cond/ckpt.h5 --out g.png --sample-steps=0", "--sample-steps '0' is not an integer in [1, 1000]"},
      {"sample --ckpt cond/ckpt.h5 --out g.png --sampler=euler", "--sampler 'euler' is not ddpm or ddim"},
      {"sample --ckpt=cond/ckpt.h5 --out=g.png --cols=0", "--cols '0' is not an integer in [1, 256]"},
      {"classify train --data=d.h5 --epochs=x", "patchgrad classify train: --epochs 'x' is not an integer"},
      {"classify eval --ckpt=a.h5 --data=d.h5 --batch=0", "patchgrad classify eval: --batch '0' is not an integer"},
      {"score --classifier=a.h5 --samples=d.h5 --batch=-3", "patchgrad score: --batch '-3' is not an integer"},
      {"vae encode --ckpt=a.h5 --data=d.h5 --out=e.h5 --scale-factor=-1", "patchgrad vae encode: --scale-factor '-1' is not a number"},
      {"vae train --data=d.h5 --beta=x", "patchgrad vae train: --beta 'x' is not a number"},
      {"bench --steps=0", "patchgrad bench: --steps '0' is not an integer"},
      {"latents --source=synthetic --count=0 --out=x.h5", "patchgrad latents: --count '0' is not an integer >= 1"},
      {"check --atol=-1 x.h5", "patchgrad check: --atol needs a finite number >= 0, got '-1'"},
      /* a switch takes no value */
      {"sample --ckpt cond/ckpt.h5 --out g.png --ema=1", "patchgrad sample: --ema takes no value (got '--ema=1')"},
      {"check --verbose=yes x.h5", "patchgrad check: --verbose takes no value"},
      {"train --data d.h5 --quiet=0", "patchgrad train: --quiet takes no value"},
      /* a value that is missing */
      {"latents --source synthetic --out", "patchgrad latents: --out needs a value"},
  };
  assert_refused("", bad, sizeof bad / sizeof *bad, "unknown option");
  assert_false(pg_test_exists(pg_test_tmp("g.png")));
}

/* ---- help and version ---- */

/* `patchgrad ARGS` with stdout alone in out: exit 0 and `usage` on it. */
static void assert_usage(const char *args, const char *usage) {
  if (pg_test_run(out, sizeof out, "'%s/patchgrad' %s 2>/dev/null", PG_BUILD_DIR, args) != 0)
    fail_msg("patchgrad %s did not exit 0: %s", args, out);
  if (strncmp(out, usage, strlen(usage))) fail_msg("patchgrad %s printed, on stdout: %s", args, out);
}

static void test_help_and_version(void **state) {
  (void)state;
  assert_usage("--version", "patchgrad 0.");
  assert_usage("version", "patchgrad 0.");
  assert_usage("version --help", "usage: patchgrad version");
  const char *top[] = {"-h", "--help", "help"};
  for (int i = 0; i < 3; i++) {
    assert_usage(top[i], "usage: patchgrad COMMAND");
    const char *commands[] = {"check", "latents", "train", "sample", "classify", "score", "vae", "bench", "version"};
    for (size_t c = 0; c < sizeof commands / sizeof *commands; c++) assert_out_contains(commands[c]);
    assert_out_contains("--version");
    assert_out_contains("--lr=1e-3");
  }
  /* each command, and each sub-command, three ways */
  const char *commands[] = {"check", "latents", "train", "sample", "classify", "score", "vae",
                            "bench", "classify train", "classify eval", "vae train", "vae encode",
                            "vae decode", "vae reconstruct"};
  for (size_t c = 0; c < sizeof commands / sizeof *commands; c++) {
    char args[128], usage[128];
    const char *space = strchr(commands[c], ' ');
    /* a sub-command's usage may open with its parent's lines */
    snprintf(usage, sizeof usage, "usage: patchgrad %.*s", space ? (int)(space - commands[c]) : 64, commands[c]);
    snprintf(args, sizeof args, "help %s", commands[c]);
    assert_usage(args, usage);
    snprintf(args, sizeof args, "%s -h", commands[c]);
    assert_usage(args, usage);
    snprintf(args, sizeof args, "%s --help", commands[c]);
    assert_usage(args, usage);
    snprintf(args, sizeof args, "-h %s", commands[c]);
    assert_usage(args, usage);
  }
  /* the sub-command's own options */
  assert_usage("help classify train", "usage: patchgrad classify train");
  assert_out_contains("--label-smoothing");
  assert_usage("help vae train", "usage: patchgrad vae train");
  assert_out_contains("--beta");
  /* refusals: exit 2, said on stderr */
  assert_int_equal(CLI("help nope"), 2);
  assert_out_contains("patchgrad: unknown command 'nope'");
  assert_int_equal(CLI("%s", ""), 2);
  assert_out_contains("usage: patchgrad COMMAND");
  assert_int_equal(CLI("version --verbose"), 2);
  assert_int_equal(CLI("train --colour red"), 2);
  assert_out_contains("patchgrad train: unknown option '--colour' (see patchgrad train --help)");
}

/* ---- one name per concept ---- */

static void test_one_name_per_concept(void **state) {
  (void)state;
  /* the size presets: bench and train share names and models */
  assert_int_equal(CLI("bench --size tiny --steps 1 --warmup 0 --threads 1 --json"), 0);
  assert_out_contains("patchgrad bench: size tiny (input 8x8, hidden 64, depth 2, heads 4, batch 32)");
  assert_out_contains("\"size\": \"tiny\"");
  assert_int_equal(CLI("bench --config S"), 2);
  assert_out_contains("unknown option '--config'");
  assert_int_equal(CLI("bench --size S"), 2);
  assert_out_contains("patchgrad bench: --size 'S' is not one of tiny, small, medium");
  assert_int_equal(CLI("train --data d.h5 --size tiny --patch 2 --steps 1 --batch 8 --cols 0 --threads 1 --quiet "
                       "--out sized"), 0);
  pg_kv config;
  pg_kv_init(&config);
  pg_checkpoint ck = {.config = &config};
  assert_int_equal(pg_checkpoint_load(pg_test_tmp("sized/ckpt.h5"), &ck), PG_OK);
  int64_t hidden = 0, depth = 0, heads = 0;
  assert_int_equal(pg_kv_get_int(&config, "hidden", &hidden), 1);
  assert_int_equal(pg_kv_get_int(&config, "depth", &depth), 1);
  assert_int_equal(pg_kv_get_int(&config, "heads", &heads), 1);
  assert_true(hidden == 64 && depth == 2 && heads == 4); /* bench's tiny */
  pg_kv_free(&config);
  /* the sheet: --cols and --sample-steps in train and sample alike */
  assert_int_equal(CLI("train --data d.h5 " TINY " --steps 1 --cols 3 --sample-steps 2 --out sheet"), 0);
  int ndim;
  int64_t shape[8];
  hid_t f = pg_h5_open(pg_test_tmp("sheet/samples.h5"), false);
  assert_true(f >= 0);
  assert_int_equal(pg_h5_dataset_shape(f, "samples", "samples.h5", &ndim, shape), PG_OK);
  H5Fclose(f);
  assert_int_equal(shape[0], 2 * 3); /* 2 classes, 3 per row */
  assert_int_equal(CLI("sample --ckpt cond/ckpt.h5 --out s.png --cols 2 --sample-steps 2 --threads 1"), 0);
  f = pg_h5_open(pg_test_tmp("s.h5"), false);
  assert_true(f >= 0);
  assert_int_equal(pg_h5_dataset_shape(f, "samples", "s.h5", &ndim, shape), PG_OK);
  H5Fclose(f);
  assert_int_equal(shape[0], 2 * 2);
  const char *gone[] = {"train --data d.h5 --samples 2", "train --data d.h5 --sample-count 2",
                        "sample --ckpt cond/ckpt.h5 --out g.png --count 2",
                        "sample --ckpt cond/ckpt.h5 --out g.png --steps 2"};
  for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) {
    assert_int_equal(CLI("%s", gone[i]), 2);
    assert_out_contains("unknown option");
  }
}

/* ---- flags that would be ignored, outputs of the wrong kind ---- */

static void test_sample_refuses_ignored_flags(void **state) {
  (void)state;
  const refusal bad[] = {
      {"--ckpt cond/ckpt.h5 --out g.png --sampler ddpm --sample-steps 50",
       "patchgrad sample: --sample-steps 50 applies to --sampler ddim; --sampler ddpm runs all 1000 steps"},
      {"--ckpt cond/ckpt.h5 --out g.png --rows 2 --sample-steps 2",
       "patchgrad sample: --rows 2 applies to an unconditional model; cond/ckpt.h5 is conditional (2 classes)"},
      {"--ckpt uncond/ckpt.h5 --out g.png --class 1 --sample-steps 2",
       "patchgrad sample: --class 1 applies to a conditional model; uncond/ckpt.h5 is unconditional"},
      {"--ckpt uncond/ckpt.h5 --out g.png --cfg 2 --sample-steps 2",
       "patchgrad sample: --cfg 2 (guidance) applies to a conditional model; uncond/ckpt.h5 is unconditional"},
      {"--ckpt cond/ckpt.h5 --out g.jpg --sample-steps 2",
       "patchgrad sample: --out 'g.jpg': the grid is written as a PNG image; give a name ending in .png"},
      {"--ckpt cond/ckpt.h5 --out g --sample-steps 2", "--out 'g': the grid is written as a PNG image"},
      {"--ckpt cond/ckpt.h5 --out g.h5 --sample-steps 2", "--out 'g.h5': the grid is written as a PNG image"},
  };
  assert_refused("sample --threads 1", bad, sizeof bad / sizeof *bad, "sample: step"); /* before sampling */
  const char *never[] = {"g.png", "g.h5", "g.jpg", "g"};
  for (int i = 0; i < 4; i++) assert_false(pg_test_exists(pg_test_tmp(never[i])));
  /* what the model takes is accepted */
  assert_int_equal(CLI("sample --ckpt uncond/ckpt.h5 --out u.png --rows 2 --cols 3 --sample-steps 2 --threads 1"), 0);
  assert_int_equal(CLI("sample --ckpt cond/ckpt.h5 --out c.png --class 1 --cfg 2 --cols 1 --sample-steps 2 "
                       "--threads 1"), 0);
}

/* A folder of images in class folders (torchvision's ImageFolder layout). */
static void make_image_folder(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s", pg_test_tmp(dir));
  assert_int_equal(mkdir(path, 0755), 0);
  const char *classes[2] = {"cat", "dog"};
  for (int c = 0; c < 2; c++) {
    snprintf(path, sizeof path, "%s/%s/%s", pg_test_tmpdir(), dir, classes[c]);
    assert_int_equal(mkdir(path, 0755), 0);
    for (int i = 0; i < 3; i++) {
      pg_image *im = pg_image_new(8, 8, 3);
      assert_non_null(im);
      for (int j = 0; j < 8 * 8 * 3; j++) im->pixels[j] = (uint8_t)(j * 7 + c * 50 + i);
      snprintf(path, sizeof path, "%s/%s/%s/%d.png", pg_test_tmpdir(), dir, classes[c], i);
      assert_int_equal(pg_png_write(path, im), PG_OK);
      pg_image_free(im);
    }
  }
}

static void test_latents_refuses_ignored_flags(void **state) {
  (void)state;
  const refusal bad[] = {
      {"--source synthetic --split test --out x.h5",
       "patchgrad latents: --split applies to --source fashion-mnist or images, not to --source synthetic"},
      {"--source fashion-mnist --seed 3 --out x.h5",
       "patchgrad latents: --seed applies to --source synthetic, not to --source fashion-mnist"},
      {"--source fashion-mnist --classes 3 --out x.h5", "--classes applies to --source synthetic"},
      {"--source synthetic --pad 2 --out x.h5", "--pad applies to --source images, not to --source synthetic"},
      {"--source synthetic --on-bad skip --out x.h5", "--on-bad applies to --source images"},
      {"--source images imgs --size 4 --count 3 --out x.h5", "--count applies to --source fashion-mnist or synthetic"},
      {"--source synthetic --out x.png", "patchgrad latents: --out 'x.png': a latent dataset is an HDF5 file"},
      {"--source synthetic --out x.h5 --preview p.jpg", "--preview 'p.jpg': the preview is a PNG image"},
      {"--source imagenet --out x.h5", "--source 'imagenet' (expected fashion-mnist, synthetic or images)"},
      {"--source synthetic --out x.h5 stray", "patchgrad latents: unknown option 'stray'"},
  };
  assert_refused("latents", bad, sizeof bad / sizeof *bad, NULL);
  assert_false(pg_test_exists(pg_test_tmp("x.h5")));
  assert_false(pg_test_exists(pg_test_tmp("x.png")));
  /* the folder of --source images, before or after the other flags */
  make_image_folder("imgs");
  assert_int_equal(CLI("latents --source images imgs --size 4 --channels 3 --out i1.h5"), 0);
  assert_int_equal(CLI("latents --source=images --size=4 --out=i2.h5 --pad=0 imgs"), 0);
  pg_latents *ds = pg_latents_open(pg_test_tmp("i2.h5"));
  assert_non_null(ds);
  assert_int_equal(ds->info.n, 6);
  assert_int_equal(ds->info.num_classes, 2);
  pg_latents_close(ds);
}

/* ---- error lines ---- */

static void test_errors_named_once(void **state) {
  (void)state;
  /* the library's messages start with their part's name ("classify: ",
   * "train: ", "sample: "); the command's line says it once */
  assert_int_equal(CLI("classify train --data d.h5 --val-data d8.h5 " TINY " --steps 1 --out v"), 1);
  assert_out_contains("patchgrad classify train: test file d8.h5 holds [8, 8, 4] latents");
  assert_clean_errors("classify train");
  assert_int_equal(CLI("train --data d.h5 --val-data d8.h5 " TINY " --steps 1 --cols 0 --out t"), 1);
  assert_out_contains("patchgrad train: validation file d8.h5 holds [8, 8, 4] latents");
  assert_clean_errors("train");
  assert_int_equal(CLI("sample --ckpt cond/ckpt.h5 --out g.png --class 5 --sample-steps 2 --threads 1"), 1);
  assert_out_contains("patchgrad sample: class 5 is not below the model's 2 classes");
  assert_clean_errors("sample");
  assert_int_equal(CLI("vae train --data d.h5 --val-data d8.h5 --batch 8 --steps 1 --threads 1 --quiet --out vv"), 1);
  assert_clean_errors("vae train");
  assert_int_equal(CLI("classify eval --ckpt cond/ckpt.h5 --data d.h5"), 1);
  assert_clean_errors("classify eval");
  assert_int_equal(CLI("score --classifier cond/ckpt.h5 --samples d.h5"), 1);
  assert_clean_errors("score");
}

static char ro[700], full[700];
static bool ro_mounted, full_mounted;

/* A read-only tmpfs and a small one to fill (1 MiB each). */
static void mount_file_systems(void) {
  snprintf(ro, sizeof ro, "%s", pg_test_tmp("ro"));
  snprintf(full, sizeof full, "%s", pg_test_tmp("full"));
  if (mkdir(ro, 0755) || mkdir(full, 0755) || geteuid() != 0) return;
  ro_mounted = mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=1m,mode=0755") == 0;
  full_mounted = mount("tmpfs", full, "tmpfs", 0, "size=1m,mode=0755") == 0;
}

/* Fills the small file system but for two blocks: room for a lock file,
 * not for a checkpoint or a sample sheet. */
static void fill_up(void) {
  char path[800];
  snprintf(path, sizeof path, "%s/filler", full);
  unlink(path);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  static char block[4096];
  while (fwrite(block, 1, sizeof block, f) == sizeof block && fflush(f) == 0) {}
  fclose(f);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(truncate(path, st.st_size > 8192 ? st.st_size - 8192 : 0), 0);
}

static void test_failed_writes_name_no_temporary(void **state) {
  (void)state;
  mount_file_systems();
  if (!ro_mounted || !full_mounted) {
    print_message("skipped: mounting a tmpfs needs root (%s)\n", strerror(errno));
    skip();
  }
  /* a read-only folder */
  assert_int_equal(CLI("latents --source synthetic --count 16 --size 4 --out ro/x.h5"), 1);
  assert_out_contains("patchgrad latents: ro/x.h5: cannot create the file: Read-only file system");
  assert_clean_errors("latents");
  assert_int_equal(CLI("latents --source synthetic --count 16 --size 4 --out y.h5 --preview ro/p.png"), 1);
  assert_out_contains("ro/p.png: cannot create the file: Read-only file system");
  assert_clean_errors("latents");
  assert_int_equal(CLI("sample --ckpt cond/ckpt.h5 --out ro/g.png --cols 1 --sample-steps 2 --threads 1"), 1);
  assert_out_contains("Read-only file system");
  assert_clean_errors("sample");
  assert_int_equal(CLI("train --data d.h5 " TINY " --steps 1 --cols 0 --out ro/run"), 1);
  assert_clean_errors("train");
  /* a full one */
  fill_up();
  assert_int_equal(CLI("train --data d.h5 " TINY " --steps 2 --cols 0 --out full/run"), 1);
  assert_out_contains("No space left on device");
  assert_clean_errors("train");
  fill_up();
  assert_int_equal(CLI("classify train --data d.h5 " TINY " --steps 2 --out full/vit"), 1);
  assert_out_contains("No space left on device");
  assert_clean_errors("classify train");
  fill_up();
  assert_int_equal(CLI("vae train --data d8.h5 --batch 8 --steps 2 --threads 1 --quiet --out full/vae"), 1);
  assert_out_contains("No space left on device");
  assert_clean_errors("vae train");
  fill_up();
  assert_int_equal(CLI("sample --ckpt cond/ckpt.h5 --out full/g.png --cols 8 --sample-steps 2 --threads 1"), 1);
  assert_clean_errors("sample");
  assert_int_equal(pg_test_temporaries(pg_test_tmp("full/run/ckpt.h5")), 0);
}

static int teardown(void **state) {
  if (ro_mounted) umount2(ro, MNT_DETACH);
  if (full_mounted) umount2(full, MNT_DETACH);
  return pg_test_tmpdir_remove(state);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flag_equals_value),
      cmocka_unit_test(test_help_and_version),
      cmocka_unit_test(test_one_name_per_concept),
      cmocka_unit_test(test_sample_refuses_ignored_flags),
      cmocka_unit_test(test_latents_refuses_ignored_flags),
      cmocka_unit_test(test_errors_named_once),
      cmocka_unit_test(test_failed_writes_name_no_temporary),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
