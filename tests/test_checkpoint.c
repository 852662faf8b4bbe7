/* Checkpoints: every part written and read back bit for bit; parts absent
 * or mismatched (every mismatch named in one message, the model untouched);
 * atomic saves that fail half-way (file size limit, a folder in the way)
 * leaving the previous checkpoint intact and no .tmp behind; the key/value
 * settings; and resume equality: N steps, save, load into a fresh process
 * state, M more steps == N + M steps in one run, bit for bit. */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "patchgrad/io/checkpoint.h"
#include "patchgrad/optim/ema.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/io/optim_kv.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/data/synthetic.h"

static int setup(void **state) {
  (void)state;
  return pg_test_tmpdir_make("checkpoint");
}

/* A list of named tensors filled from seed. */
static void make_params(pg_params *ps, uint64_t seed, int hidden) {
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  pg_params_init(ps);
  pg_fill_normal(pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(hidden, 3), "blocks.0.fc.weight"), 0,
                 1, &rng);
  pg_fill_normal(pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(hidden), "blocks.0.fc.bias"), 0, 1, &rng);
  pg_fill_normal(pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(1, 4, hidden), "pos_embed"), 0, 1, &rng);
  pg_fill_normal(pg_params_add(ps, PG_PARAM_EMBEDDING, 0, NULL, "scalar"), 0, 1, &rng);
}

static void assert_params_equal(const pg_params *a, const pg_params *b) {
  assert_int_equal(a->count, b->count);
  for (int i = 0; i < a->count; i++) {
    assert_string_equal(a->items[i].name, b->items[i].name);
    assert_int_equal(a->items[i].tensor->numel, b->items[i].tensor->numel);
    assert_memory_equal(a->items[i].tensor->data, b->items[i].tensor->data,
                        (size_t)a->items[i].tensor->numel * sizeof(float));
  }
}

static void read_bytes(const char *path, char **out, long *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  *out = malloc((size_t)*len);
  assert_int_equal(fread(*out, 1, (size_t)*len, f), (size_t)*len);
  fclose(f);
}

static void test_round_trip_every_part(void **state) {
  (void)state;
  pg_params params, ema, optim, params2, ema2, optim2;
  make_params(&params, 1, 5);
  make_params(&ema, 2, 5);
  pg_params_init(&optim);
  pg_params_add(&optim, PG_PARAM_BUFFER, PG_SHAPE(5, 3), "blocks.0.fc.weight.exp_avg")->data[7] = 3.5f;
  pg_params_add(&optim, PG_PARAM_BUFFER, PG_SHAPE(5, 3), "blocks.0.fc.weight.exp_avg_sq")->data[2] = 0.25f;
  pg_kv config, oconfig, config2, oconfig2, run, run2;
  pg_kv_init(&config);
  pg_kv_init(&oconfig);
  pg_kv_init(&config2);
  pg_kv_init(&oconfig2);
  pg_kv_init(&run);
  pg_kv_init(&run2);
  pg_kv_set_int(&run, "batch", 16);
  pg_kv_set_string(&run, "schedule", "cosine");
  pg_kv_set_int(&run2, "stale", 1);
  pg_kv_set_int(&config, "hidden", 64);
  pg_kv_set_double(&config, "class_dropout", 0.1);
  pg_kv_set_string(&config, "dataset", "fashion-mnist");
  pg_optim_config oc = pg_optim_adamw(3e-4), oc2;
  oc.amsgrad = true;
  assert_int_equal(pg_optim_config_to_kv(&oc, &oconfig), PG_OK);
  int64_t step = 1234, ostep = 1200;
  pg_rng rng;
  pg_rng_seed(&rng, 99);
  pg_rng_next(&rng);
  pg_loader_state ls = {.seed = 0xFFFFFFFFFFFFFFF1ULL, .epoch = 3, .position = 17};
  pg_checkpoint ck = {&config, &params, &ema, &optim, &ostep, &oconfig, &step, &rng, &ls, &run};
  assert_int_equal(pg_checkpoint_save(pg_test_tmp("ck.h5"), &ck), PG_OK);
  assert_int_equal(pg_test_temporaries(pg_test_tmp("ck.h5")), 0);

  /* load into objects of the same shapes holding other values */
  make_params(&params2, 10, 5);
  make_params(&ema2, 11, 5);
  pg_params_init(&optim2);
  pg_params_add(&optim2, PG_PARAM_BUFFER, PG_SHAPE(5, 3), "blocks.0.fc.weight.exp_avg");
  pg_params_add(&optim2, PG_PARAM_BUFFER, PG_SHAPE(5, 3), "blocks.0.fc.weight.exp_avg_sq");
  pg_kv_set_int(&config2, "stale", 1);
  int64_t step2 = 0, ostep2 = 0;
  pg_rng rng2 = {{0}};
  pg_loader_state ls2 = {0};
  pg_checkpoint in = {&config2, &params2, &ema2, &optim2, &ostep2, &oconfig2, &step2, &rng2, &ls2, &run2};
  assert_int_equal(pg_checkpoint_load(pg_test_tmp("ck.h5"), &in), PG_OK);
  assert_params_equal(&params2, &params);
  assert_params_equal(&ema2, &ema);
  assert_params_equal(&optim2, &optim);
  assert_true(step2 == 1234 && ostep2 == 1200);
  assert_memory_equal(rng2.s, rng.s, sizeof rng.s);
  assert_true(ls2.seed == ls.seed && ls2.epoch == 3 && ls2.position == 17);
  /* the run's settings are replaced too */
  int64_t batch;
  const char *sched;
  assert_int_equal(run2.count, 2);
  assert_int_equal(pg_kv_get_int(&run2, "batch", &batch), 1);
  assert_int_equal(pg_kv_get_string(&run2, "schedule", &sched), 1);
  assert_true(batch == 16 && !strcmp(sched, "cosine"));
  /* the config is replaced, in order, with its types */
  assert_int_equal(config2.count, 3);
  int64_t hidden;
  double dropout;
  const char *name;
  assert_int_equal(pg_kv_get_int(&config2, "hidden", &hidden), 1);
  assert_int_equal(pg_kv_get_double(&config2, "class_dropout", &dropout), 1);
  assert_int_equal(pg_kv_get_string(&config2, "dataset", &name), 1);
  assert_true(hidden == 64 && dropout == 0.1 && !strcmp(name, "fashion-mnist"));
  assert_string_equal(config2.items[0].key, "hidden");
  assert_int_equal(pg_kv_get_string(&config2, "hidden", &name), -1);
  assert_error_contains("'hidden' is a int, expected a string");
  assert_int_equal(pg_optim_config_from_kv(&oconfig2, &oc2), PG_OK);
  assert_memory_equal(&oc2, &oc, sizeof oc);

  /* the layout a stranger sees with h5dump */
  hid_t f = H5Fopen(pg_test_tmp("ck.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(pg_h5_exists(f, "params/blocks.0.fc.weight"));
  assert_true(pg_h5_exists(f, "ema/pos_embed"));
  assert_true(pg_h5_exists(f, "optim/blocks.0.fc.weight.exp_avg_sq"));
  assert_true(pg_h5_exists(f, "rng_state"));
  char kind[32], format[64];
  hid_t d = H5Dopen2(f, "params/pos_embed", H5P_DEFAULT);
  assert_int_equal(pg_h5_attr_string(d, "kind", kind, sizeof kind), 1);
  assert_string_equal(kind, "buffer");
  H5Dclose(d);
  assert_int_equal(pg_h5_attr_string(f, "format", format, sizeof format), 1);
  assert_string_equal(format, "patchgrad checkpoint");
  hid_t g = H5Gopen2(f, "optim", H5P_DEFAULT);
  double lr;
  assert_int_equal(pg_h5_attr_double(g, "lr", &lr), 1);
  assert_true(lr == 3e-4);
  H5Gclose(g);
  H5Fclose(f);

  pg_params *lists[] = {&params, &ema, &optim, &params2, &ema2, &optim2};
  for (int i = 0; i < 6; i++) pg_params_free(lists[i]);
  pg_kv *kvs[] = {&config, &oconfig, &config2, &oconfig2, &run, &run2};
  for (int i = 0; i < 6; i++) pg_kv_free(kvs[i]);
}

/* load_state_dict(strict=False): the tensors that match by name and shape
 * are read, the others listed (missing, unexpected, other shape) and left
 * as they were; a damaged matching tensor changes nothing. */
static void test_load_matching(void **state) {
  (void)state;
  pg_params saved, model;
  make_params(&saved, 1, 5);
  pg_fill_normal(pg_params_add(&saved, PG_PARAM_WEIGHT, PG_SHAPE(2), "old_head.weight"), 0, 1, &(pg_rng){{1, 2, 3, 4}});
  pg_checkpoint ck = {.params = &saved};
  assert_int_equal(pg_checkpoint_save(pg_test_tmp("partial.h5"), &ck), PG_OK);
  /* the model: fc.weight [5, 3] as saved, fc.bias [6] (5 in the file),
   * pos_embed, scalar, and new_head.weight absent from the file */
  pg_params_init(&model);
  pg_params_add(&model, PG_PARAM_WEIGHT, PG_SHAPE(5, 3), "blocks.0.fc.weight");
  pg_tensor *bias = pg_params_add(&model, PG_PARAM_BIAS, PG_SHAPE(6), "blocks.0.fc.bias");
  pg_params_add(&model, PG_PARAM_BUFFER, PG_SHAPE(1, 4, 5), "pos_embed");
  pg_params_add(&model, PG_PARAM_EMBEDDING, 0, NULL, "scalar");
  pg_tensor *head = pg_params_add(&model, PG_PARAM_WEIGHT, PG_SHAPE(3), "new_head.weight");
  pg_fill(bias, 7.0f);
  pg_fill(head, 9.0f);
  pg_load_report rep;
  assert_int_equal(pg_checkpoint_load_matching(pg_test_tmp("partial.h5"), "params", &model, &rep), PG_OK);
  assert_int_equal(rep.loaded, 3);
  assert_int_equal(rep.n_missing, 1);
  assert_string_equal(rep.missing[0], "new_head.weight");
  assert_int_equal(rep.n_unexpected, 1);
  assert_string_equal(rep.unexpected[0], "old_head.weight");
  assert_int_equal(rep.n_mismatched, 1);
  assert_string_equal(rep.mismatched[0], "blocks.0.fc.bias");
  assert_string_equal(rep.mismatch_detail[0], "[5] in the file, [6] in the model");
  for (int i = 0; i < 5; i++) assert_true(pg_params_find(&model, "blocks.0.fc.weight")->tensor->data[i] ==
                                          pg_params_find(&saved, "blocks.0.fc.weight")->tensor->data[i]);
  assert_true(pg_params_find(&model, "scalar")->tensor->data[0] == pg_params_find(&saved, "scalar")->tensor->data[0]);
  assert_true(bias->data[0] == 7.0f && head->data[2] == 9.0f);
  pg_load_report_free(&rep);
  assert_int_equal(rep.n_missing, 0);
  /* not a checkpoint, or no such group: errors naming them */
  assert_int_not_equal(pg_checkpoint_load_matching(pg_test_tmp("partial.h5"), "ema", &model, &rep), PG_OK);
  assert_error_contains("missing group 'ema'");
  pg_load_report_free(&rep);
  pg_params_free(&saved);
  pg_params_free(&model);
}

static void test_absent_parts(void **state) {
  (void)state;
  pg_params params;
  make_params(&params, 1, 4);
  pg_checkpoint only = {.params = &params};
  assert_int_equal(pg_checkpoint_save(pg_test_tmp("only.h5"), &only), PG_OK);
  pg_params ema;
  make_params(&ema, 2, 4);
  pg_checkpoint want_ema = {.params = &params, .ema = &ema};
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("only.h5"), &want_ema), PG_OK);
  assert_error_contains("missing group 'ema'");
  int64_t step;
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("only.h5"), &(pg_checkpoint){.step = &step}), PG_OK);
  assert_error_contains("missing attribute 'step'");
  pg_rng rng;
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("only.h5"), &(pg_checkpoint){.rng = &rng}), PG_OK);
  assert_error_contains("missing dataset 'rng_state'");
  pg_loader_state ls;
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("only.h5"), &(pg_checkpoint){.loader = &ls}), PG_OK);
  assert_error_contains("missing group 'loader'");
  pg_kv kv;
  pg_kv_init(&kv);
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("only.h5"), &(pg_checkpoint){.config = &kv}), PG_OK);
  assert_error_contains("missing group 'config'");
  /* an all-zero generator state is refused */
  pg_rng zero = {{0}};
  assert_int_equal(pg_checkpoint_save(pg_test_tmp("zero.h5"), &(pg_checkpoint){.rng = &zero}), PG_OK);
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("zero.h5"), &(pg_checkpoint){.rng = &rng}), PG_OK);
  assert_error_contains("all zeros");
  /* optimizer settings may not use the name of the optimizer's step */
  pg_kv_set_int(&kv, "step", 3);
  int64_t ostep = 1;
  pg_checkpoint bad = {.optim_state = &params, .optim_step = &ostep, .optim_config = &kv};
  assert_int_not_equal(pg_checkpoint_save(pg_test_tmp("bad.h5"), &bad), PG_OK);
  assert_error_contains("may not hold a key 'step'");
  pg_kv_free(&kv);
  pg_params_free(&params);
  pg_params_free(&ema);
}

static void test_mismatches_named_in_one_message(void **state) {
  (void)state;
  pg_params saved, model;
  pg_params_init(&saved);
  pg_params_add(&saved, PG_PARAM_WEIGHT, PG_SHAPE(4, 3), "a.weight");
  pg_params_add(&saved, PG_PARAM_BIAS, PG_SHAPE(4), "a.bias");
  pg_params_add(&saved, PG_PARAM_BIAS, PG_SHAPE(5), "c.bias");
  assert_int_equal(pg_checkpoint_save(pg_test_tmp("mm.h5"), &(pg_checkpoint){.params = &saved}), PG_OK);

  pg_params_init(&model);
  pg_fill(pg_params_add(&model, PG_PARAM_WEIGHT, PG_SHAPE(3, 4), "a.weight"), 7.0f);
  pg_fill(pg_params_add(&model, PG_PARAM_BIAS, PG_SHAPE(4), "a.bias"), 7.0f);
  pg_fill(pg_params_add(&model, PG_PARAM_WEIGHT, PG_SHAPE(7), "d.weight"), 7.0f);
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("mm.h5"), &(pg_checkpoint){.params = &model}), PG_OK);
  assert_error_contains(pg_test_tmp("mm.h5"));
  assert_error_contains("group 'params' does not match (3 problems: 1 missing, 1 unexpected, 1 wrong shape");
  assert_error_contains("'a.weight' has shape [4, 3] in the file, the model has [3, 4]");
  assert_error_contains("missing 'd.weight' [7]");
  assert_error_contains("unexpected 'c.bias' [5]");
  /* nothing was loaded: a.bias matched but keeps the model's value */
  assert_true(pg_params_find(&model, "a.bias")->tensor->data[0] == 7.0f);

  /* a float64 parameter written by another tool is a dtype mismatch */
  hid_t f = H5Fopen(pg_test_tmp("mm.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  hsize_t dim = 4;
  hid_t s = H5Screate_simple(1, &dim, NULL);
  H5Ldelete(f, "params/a.bias", H5P_DEFAULT);
  hid_t d = H5Dcreate2(f, "params/a.bias", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(d);
  H5Sclose(s);
  H5Fclose(f);
  pg_params_free(&model);
  pg_params_init(&model);
  pg_params_add(&model, PG_PARAM_WEIGHT, PG_SHAPE(4, 3), "a.weight");
  pg_params_add(&model, PG_PARAM_BIAS, PG_SHAPE(4), "a.bias");
  pg_params_add(&model, PG_PARAM_BIAS, PG_SHAPE(5), "c.bias");
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("mm.h5"), &(pg_checkpoint){.params = &model}), PG_OK);
  assert_error_contains("'a.bias' has dtype float64, expected float32");

  /* a hundred missing tensors: counted in full, listed as far as fits */
  pg_params big;
  pg_params_init(&big);
  for (int i = 0; i < 100; i++) pg_params_add(&big, PG_PARAM_WEIGHT, PG_SHAPE(2), "blocks.%d.w", i);
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("mm.h5"), &(pg_checkpoint){.params = &big}), PG_OK);
  assert_error_contains("(103 problems: 100 missing, 3 unexpected");
  assert_error_contains("missing 'blocks.0.w' [2]");
  assert_error_contains("more)");
  pg_params_free(&big);
  pg_params_free(&saved);
  pg_params_free(&model);
}

static void test_not_a_checkpoint(void **state) {
  (void)state;
  pg_params ps;
  make_params(&ps, 1, 2);
  pg_checkpoint ck = {.params = &ps};
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = 1;
  info.height = info.width = info.channels = 1;
  float x = 0;
  pg_latents_save(pg_test_tmp("latents.h5"), &info, &x, NULL);
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("latents.h5"), &ck), PG_OK);
  assert_error_contains("not a patchgrad checkpoint (attribute format is 'patchgrad latent dataset'");
  FILE *f = fopen(pg_test_tmp("text.h5"), "w");
  fputs("hello\n", f);
  fclose(f);
  assert_int_not_equal(pg_checkpoint_load(pg_test_tmp("text.h5"), &ck), PG_OK);
  assert_error_contains("not an HDF5 file");
  /* bad names are refused before anything is written */
  pg_params slash;
  pg_params_init(&slash);
  pg_params_add(&slash, PG_PARAM_WEIGHT, PG_SHAPE(1), "a/b");
  assert_int_not_equal(pg_checkpoint_save(pg_test_tmp("slash.h5"), &(pg_checkpoint){.params = &slash}),
                       PG_OK);
  assert_error_contains("'params/a/b'");
  assert_false(pg_test_exists(pg_test_tmp("slash.h5")));
  assert_int_equal(pg_test_temporaries(pg_test_tmp("slash.h5")), 0);
  pg_params_free(&slash);
  pg_params_free(&ps);
}

/* A save that fails half-way leaves the previous checkpoint as it was. */
static void test_atomic_save(void **state) {
  (void)state;
  pg_params small, big;
  make_params(&small, 1, 3);
  pg_params_init(&big);
  pg_fill(pg_params_add(&big, PG_PARAM_WEIGHT, PG_SHAPE(512, 1024), "huge.weight"), 1.0f);
  const char *path = pg_test_tmp("atomic.h5");
  char keep[512];
  snprintf(keep, sizeof keep, "%s", path);
  assert_int_equal(pg_checkpoint_save(keep, &(pg_checkpoint){.params = &small}), PG_OK);
  char *before, *after;
  long before_len, after_len;
  read_bytes(keep, &before, &before_len);

  /* 1. the disk "fills up": files may not grow past 64 KB, the new one needs 2 MB */
  struct rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of a signal */
  struct rlimit limited = {64 * 1024, old.rlim_max};
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &limited), 0);
  pg_status st = pg_checkpoint_save(keep, &(pg_checkpoint){.params = &big});
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  assert_int_not_equal(st, PG_OK);
  assert_error_contains(keep);
  char tmp_path[600];
  snprintf(tmp_path, sizeof tmp_path, "%s", pg_test_temporary_of(keep));
  assert_int_equal(pg_test_temporaries(keep), 0);
  read_bytes(keep, &after, &after_len);
  assert_int_equal(after_len, before_len);
  assert_memory_equal(after, before, (size_t)before_len);
  free(after);
  pg_params loaded;
  make_params(&loaded, 5, 3);
  assert_int_equal(pg_checkpoint_load(keep, &(pg_checkpoint){.params = &loaded}), PG_OK);
  assert_params_equal(&loaded, &small);

  /* 2. a folder sits where the temporary file should go */
  assert_int_equal(mkdir(tmp_path, 0755), 0);
  assert_int_not_equal(pg_checkpoint_save(keep, &(pg_checkpoint){.params = &big}), PG_OK);
  assert_error_contains("cannot create");
  read_bytes(keep, &after, &after_len);
  assert_memory_equal(after, before, (size_t)before_len);
  free(after);
  struct stat sb;
  assert_int_equal(stat(tmp_path, &sb), 0);
  assert_true(S_ISDIR(sb.st_mode)); /* someone else's folder is left alone */
  rmdir(tmp_path);

  /* 3. a folder that does not exist */
  assert_int_not_equal(
      pg_checkpoint_save(pg_test_tmp("no/such/dir/ck.h5"), &(pg_checkpoint){.params = &small}), PG_OK);
  assert_error_contains("no/such/dir/ck.h5");

  /* and a successful save replaces the file */
  assert_int_equal(pg_checkpoint_save(keep, &(pg_checkpoint){.params = &big}), PG_OK);
  assert_int_equal(pg_test_temporaries(keep), 0);
  free(before);
  pg_params_free(&loaded);
  pg_params_free(&small);
  pg_params_free(&big);
}

static void test_kv(void **state) {
  (void)state;
  pg_kv kv;
  pg_kv_init(&kv);
  assert_int_equal(pg_kv_set_int(&kv, "depth", 4), PG_OK);
  assert_int_equal(pg_kv_set_int(&kv, "depth", 6), PG_OK); /* replaced, not added */
  assert_int_equal(kv.count, 1);
  int64_t v;
  double d;
  assert_int_equal(pg_kv_get_int(&kv, "depth", &v), 1);
  assert_int_equal(v, 6);
  assert_int_equal(pg_kv_get_double(&kv, "depth", &d), 1); /* ints read as doubles */
  assert_true(d == 6.0);
  assert_int_equal(pg_kv_get_int(&kv, "absent", &v), 0);
  assert_int_not_equal(pg_kv_set_int(&kv, "a/b", 1), PG_OK);
  assert_error_contains("'a/b'");
  assert_int_not_equal(pg_kv_set_int(&kv, "", 1), PG_OK);
  char longer[300];
  memset(longer, 'x', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  assert_int_not_equal(pg_kv_set_string(&kv, "s", longer), PG_OK);
  /* optimizer settings: a missing key and a bad value are named */
  pg_optim_config c;
  assert_int_not_equal(pg_optim_config_from_kv(&kv, &c), PG_OK);
  assert_error_contains("'optimizer' is missing");
  pg_optim_config_to_kv(&(pg_optim_config){.kind = PG_OPTIM_SGD, .lr = 0.1}, &kv);
  assert_int_equal(pg_optim_config_from_kv(&kv, &c), PG_OK);
  assert_true(c.kind == PG_OPTIM_SGD && c.lr == 0.1);
  pg_kv_set_double(&kv, "lr", -1.0);
  assert_int_not_equal(pg_optim_config_from_kv(&kv, &c), PG_OK);
  assert_error_contains("lr");
  pg_kv_set_double(&kv, "lr", 0.1);
  pg_kv_set_int(&kv, "nesterov", 2);
  assert_int_not_equal(pg_optim_config_from_kv(&kv, &c), PG_OK);
  assert_error_contains("'nesterov' is 2");
  pg_kv_set_int(&kv, "nesterov", 0);
  pg_kv_set_int(&kv, "lookahead", 1);
  assert_int_not_equal(pg_optim_config_from_kv(&kv, &c), PG_OK);
  assert_error_contains("unknown key 'lookahead'");
  pg_kv_free(&kv);
}

/* ---- Resume equality ----
 * A small denoising autoencoder on synthetic latents: x + noise * eps ->
 * tanh(Linear) -> Linear -> mse against x, with AdamW, an EMA, the loader
 * and the run's generator (for eps) all carrying state across steps. */

enum { D = 64, H = 16, BATCH = 8, SAMPLES = 60, TOTAL_STEPS = 13 };

static char data_path[512];

typedef struct {
  pg_params params;
  pg_tensor *w1, *b1, *w2, *b2, *noise;
  pg_optimizer opt;
  pg_ema ema;
  pg_loader *loader;
  pg_rng rng;
  int64_t step;
  pg_ctx *ctx;
  float x[BATCH * D];
} run;

static void run_init(run *r, uint64_t init_seed) {
  pg_rng init;
  pg_rng_seed(&init, init_seed);
  pg_params_init(&r->params);
  r->w1 = pg_params_add(&r->params, PG_PARAM_WEIGHT, PG_SHAPE(H, D), "fc1.weight");
  r->b1 = pg_params_add(&r->params, PG_PARAM_BIAS, PG_SHAPE(H), "fc1.bias");
  r->w2 = pg_params_add(&r->params, PG_PARAM_WEIGHT, PG_SHAPE(D, H), "fc2.weight");
  r->b2 = pg_params_add(&r->params, PG_PARAM_BIAS, PG_SHAPE(D), "fc2.bias");
  r->noise = pg_params_add(&r->params, PG_PARAM_BUFFER, PG_SHAPE(1), "noise_scale");
  pg_fill_uniform(r->w1, -0.125f, 0.125f, &init);
  pg_fill_uniform(r->b1, -0.125f, 0.125f, &init);
  pg_fill_uniform(r->w2, -0.25f, 0.25f, &init);
  pg_fill_uniform(r->b2, -0.25f, 0.25f, &init);
  r->noise->data[0] = 0.3f;
  pg_optim_config cfg = pg_optim_adamw(1e-2);
  cfg.weight_decay = 0.05;
  cfg.decay_weights_only = true;
  assert_int_equal(pg_optimizer_init(&r->opt, &r->params, &cfg), PG_OK);
  assert_int_equal(pg_ema_init(&r->ema, &r->params, 0.9), PG_OK);
  pg_loader_opts lo;
  pg_loader_opts_init(&lo);
  lo.batch_size = BATCH;
  lo.seed = init_seed * 7 + 1;
  r->loader = pg_loader_open(data_path, &lo);
  assert_non_null(r->loader);
  pg_rng_seed(&r->rng, init_seed * 13 + 5);
  r->step = 0;
  r->ctx = pg_ctx_new(1 << 20);
}

static void run_free(run *r) {
  pg_loader_close(r->loader);
  pg_ema_free(&r->ema);
  pg_optimizer_free(&r->opt);
  pg_params_free(&r->params);
  pg_ctx_free(r->ctx);
}

static float run_step(run *r) {
  int64_t n;
  assert_int_equal(pg_loader_next(r->loader, r->x, NULL, NULL, &n), PG_OK);
  pg_ctx *ctx = r->ctx;
  pg_tensor *x = pg_from_array(ctx, PG_SHAPE(n, D), r->x);
  pg_tensor *eps = pg_normal(ctx, PG_SHAPE(n, D), 0.0f, 1.0f, &r->rng);
  pg_tensor *xn = pg_add(ctx, x, pg_mul_scalar(ctx, eps, r->noise->data[0]));
  pg_tensor *h = pg_tanh(ctx, pg_add(ctx, pg_matmul(ctx, xn, r->w1, false, true), r->b1));
  pg_tensor *pred = pg_add(ctx, pg_matmul(ctx, h, r->w2, false, true), r->b2);
  pg_tensor *loss = pg_mse(ctx, pred, x);
  assert_non_null(loss);
  assert_int_equal(pg_backward(ctx, loss), PG_OK);
  assert_int_equal(pg_optimizer_step(&r->opt), PG_OK);
  pg_optimizer_zero_grad(&r->opt);
  assert_int_equal(pg_ema_update(&r->ema), PG_OK);
  r->step++;
  float value = loss->data[0];
  pg_ctx_reset(ctx);
  return value;
}

static void run_save(run *r, const char *path) {
  pg_kv config, oconfig;
  pg_kv_init(&config);
  pg_kv_init(&oconfig);
  pg_kv_set_int(&config, "in_features", D);
  pg_kv_set_int(&config, "hidden", H);
  pg_kv_set_string(&config, "activation", "tanh");
  pg_optim_config_to_kv(&r->opt.config, &oconfig);
  pg_loader_state ls = pg_loader_get_state(r->loader);
  pg_checkpoint ck = {.config = &config, .params = &r->params, .ema = &r->ema.shadow,
                      .optim_state = &r->opt.state, .optim_step = &r->opt.step,
                      .optim_config = &oconfig, .step = &r->step, .rng = &r->rng, .loader = &ls};
  assert_int_equal(pg_checkpoint_save(path, &ck), PG_OK);
  pg_kv_free(&config);
  pg_kv_free(&oconfig);
}

static void run_load(run *r, const char *path) {
  pg_kv config, oconfig;
  pg_kv_init(&config);
  pg_kv_init(&oconfig);
  pg_loader_state ls;
  pg_checkpoint ck = {.config = &config, .params = &r->params, .ema = &r->ema.shadow,
                      .optim_state = &r->opt.state, .optim_step = &r->opt.step,
                      .optim_config = &oconfig, .step = &r->step, .rng = &r->rng, .loader = &ls};
  assert_int_equal(pg_checkpoint_load(path, &ck), PG_OK);
  int64_t hidden;
  assert_int_equal(pg_kv_get_int(&config, "hidden", &hidden), 1);
  assert_int_equal(hidden, H);
  assert_int_equal(pg_optim_config_from_kv(&oconfig, &r->opt.config), PG_OK);
  assert_int_equal(pg_loader_set_state(r->loader, &ls), PG_OK);
  pg_kv_free(&config);
  pg_kv_free(&oconfig);
}

static void test_resume_is_bit_identical(void **state) {
  (void)state;
  pg_synthetic_opts so;
  pg_synthetic_opts_init(&so);
  so.count = SAMPLES;
  so.size = 4;
  so.channels = 4;
  so.seed = 11;
  snprintf(data_path, sizeof data_path, "%s", pg_test_tmp("resume-data.h5"));
  assert_int_equal(pg_make_synthetic(&so, data_path), PG_OK);

  /* the uninterrupted run */
  run full;
  run_init(&full, 3);
  float losses[TOTAL_STEPS];
  for (int s = 0; s < TOTAL_STEPS; s++) losses[s] = run_step(&full);
  assert_true(losses[TOTAL_STEPS - 1] < losses[0]); /* it trains */

  /* split after 1 step, mid-epoch (7), at the epoch's end (8: 7 full
   * batches + the partial one of 4), and one step later (9) */
  const int splits[] = {1, 7, 8, 9};
  for (size_t k = 0; k < sizeof splits / sizeof *splits; k++) {
    int n = splits[k];
    run first;
    run_init(&first, 3);
    for (int s = 0; s < n; s++) {
      float l = run_step(&first);
      assert_memory_equal(&l, &losses[s], sizeof l);
    }
    run_save(&first, pg_test_tmp("resume.h5"));
    run_free(&first);

    /* a fresh run built from another seed: everything must come from the file */
    run resumed;
    run_init(&resumed, 4);
    run_load(&resumed, pg_test_tmp("resume.h5"));
    assert_int_equal(resumed.step, n);
    for (int s = n; s < TOTAL_STEPS; s++) {
      float l = run_step(&resumed);
      if (memcmp(&l, &losses[s], sizeof l))
        fail_msg("split %d, step %d: loss %.9g after resuming, %.9g in one run", n, s, l, losses[s]);
    }
    assert_params_equal(&resumed.params, &full.params);
    assert_params_equal(&resumed.ema.shadow, &full.ema.shadow);
    assert_params_equal(&resumed.opt.state, &full.opt.state);
    assert_int_equal(resumed.opt.step, full.opt.step);
    assert_memory_equal(resumed.rng.s, full.rng.s, sizeof full.rng.s);
    pg_loader_state a = pg_loader_get_state(resumed.loader), b = pg_loader_get_state(full.loader);
    assert_true(a.seed == b.seed && a.epoch == b.epoch && a.position == b.position);
    run_free(&resumed);
  }
  run_free(&full);
}

/* Rewrites one root attribute of a saved checkpoint in place. */
static void set_root_attr(const char *path, const char *name, bool as_double, double d, int64_t i,
                          const char *str) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  pg_status st = str ? pg_h5_set_attr_string(f, name, str)
                 : as_double ? pg_h5_set_attr_double(f, name, d) : pg_h5_set_attr_int(f, name, i);
  assert_int_equal(st, PG_OK);
  H5Fclose(f);
}

/* Writes a value into element k of a saved tensor, past save's checks. */
static void poke(const char *path, const char *dset, int64_t k, float v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
  hid_t space = H5Dget_space(d);
  hsize_t at = (hsize_t)k;
  int nd = H5Sget_simple_extent_ndims(space);
  hsize_t coord[PG_MAX_DIMS] = {0}, dims[PG_MAX_DIMS];
  H5Sget_simple_extent_dims(space, dims, NULL);
  for (int i = nd - 1; i >= 0; i--) {
    coord[i] = at % dims[i];
    at /= dims[i];
  }
  H5Sselect_elements(space, H5S_SELECT_SET, 1, coord);
  hsize_t one = 1;
  hid_t mem = H5Screate_simple(1, &one, NULL);
  assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, &v) >= 0);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
}

/* Impossible contents are refused, naming the tensor or attribute and the
 * value, and the caller's objects stay as they were. */
static void test_impossible_contents(void **state) {
  (void)state;
  pg_params ps, ema, loaded, loaded_ema;
  make_params(&ps, 3, 4);
  make_params(&ema, 4, 4);
  make_params(&loaded, 9, 4);
  make_params(&loaded_ema, 9, 4);
  int64_t step = 12, got_step = -5;
  char good[600];
  snprintf(good, sizeof good, "%s", pg_test_tmp("good.h5"));
  assert_int_equal(pg_checkpoint_save(good, &(pg_checkpoint){.params = &ps, .ema = &ema, .step = &step}),
                   PG_OK);
  char copy[600];
  snprintf(copy, sizeof copy, "%s", pg_test_tmp("bad.h5"));
  pg_checkpoint ck = {.params = &loaded, .ema = &loaded_ema, .step = &got_step};
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, copy);

  /* non-finite tensors, named with the element */
  const struct {
    const char *dset;
    int64_t k;
    float v;
    const char *needle;
  } tensors[] = {
      {"params/blocks.0.fc.weight", 5, NAN, "'params/blocks.0.fc.weight' holds nan at element 5"},
      {"ema/pos_embed", 2, INFINITY, "'ema/pos_embed' holds inf at element 2"},
      {"ema/blocks.0.fc.bias", 0, -INFINITY, "'ema/blocks.0.fc.bias' holds -inf at element 0"},
  };
  for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++) {
    assert_int_equal(system(cmd), 0);
    poke(copy, tensors[i].dset, tensors[i].k, tensors[i].v);
    assert_int_not_equal(pg_checkpoint_load(copy, &ck), PG_OK);
    assert_error_contains(tensors[i].needle);
    assert_int_equal(got_step, -5); /* nothing was loaded */
  }
  pg_params check;
  make_params(&check, 9, 4);
  assert_params_equal(&loaded, &check);
  assert_params_equal(&loaded_ema, &check);
  pg_params_free(&check);

  /* impossible root attributes */
  const struct {
    const char *name;
    bool as_double;
    double d;
    int64_t i;
    const char *str;
    const char *needle;
  } attrs[] = {
      {"step", false, 0, -1, NULL, "'step' = -1 is outside [0, 1000000000000]"},
      {"step", false, 0, (int64_t)1 << 62, NULL, "'step' = 4611686018427387904 is outside"},
      {"step", true, NAN, 0, NULL, "attribute 'step' is nan, not an integer"},
      {"step", true, 1e30, 0, NULL, "attribute 'step' is 1e+30, not an integer"},
      {"step", false, 0, 0, "x", "attribute 'step' is not a number"},
      {"format_version", true, 1.5, 0, NULL, "attribute 'format_version' is 1.5, not an integer"},
      {"format_version", false, 0, 2, NULL, "format_version 2"},
  };
  for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++) {
    assert_int_equal(system(cmd), 0);
    set_root_attr(copy, attrs[i].name, attrs[i].as_double, attrs[i].d, attrs[i].i, attrs[i].str);
    assert_int_not_equal(pg_checkpoint_load(copy, &ck), PG_OK);
    assert_error_contains(copy);
    assert_error_contains(attrs[i].needle);
    assert_int_equal(got_step, -5);
  }
  assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
  /* and the good one loads */
  assert_int_equal(pg_checkpoint_load(good, &ck), PG_OK);
  assert_int_equal(got_step, 12);
  assert_params_equal(&loaded, &ps);
  assert_params_equal(&loaded_ema, &ema);

  /* save refuses what load would refuse */
  ps.items[1].tensor->data[2] = NAN;
  assert_int_not_equal(pg_checkpoint_save(pg_test_tmp("nan.h5"), &(pg_checkpoint){.params = &ps}), PG_OK);
  assert_error_contains("'params/blocks.0.fc.bias': element 2 is nan");
  assert_false(pg_test_exists(pg_test_tmp("nan.h5")));
  pg_params_free(&ps);
  pg_params_free(&ema);
  pg_params_free(&loaded);
  pg_params_free(&loaded_ema);
}

/* The data transform a checkpoint records for `sample`: data_* settings. */
static void test_transform_from_config(void **state) {
  (void)state;
  pg_kv kv;
  pg_kv_init(&kv);
  pg_latent_transform tf;
  assert_int_equal(pg_latent_transform_from_kv(&kv, "ck.h5", &tf), PG_OK);
  assert_true(tf.pad == 0 && tf.factor == 1 && tf.mean == 0 && tf.std == 1);
  pg_kv_set_double(&kv, "data_mean", 0.25);
  pg_kv_set_double(&kv, "data_std", 0.5);
  pg_kv_set_int(&kv, "data_pad", 2);
  pg_kv_set_int(&kv, "data_space_to_depth", 2);
  assert_int_equal(pg_latent_transform_from_kv(&kv, "ck.h5", &tf), PG_OK);
  assert_true(tf.pad == 2 && tf.factor == 2 && tf.mean == 0.25 && tf.std == 0.5);
  const struct {
    const char *key;
    int type; /* 0 int, 1 double, 2 string */
    double v;
    const char *needle;
  } bad[] = {
      {"data_pad", 0, -1, "pad = -1"},
      {"data_pad", 0, -100, "pad = -100"},
      {"data_space_to_depth", 0, 4294967296.0, "space_to_depth = 4294967296"},
      {"data_std", 1, 0, "std = 0"},
      {"data_std", 1, -1, "std = -1"},
      {"data_std", 1, NAN, "std = nan"},
      {"data_std", 1, INFINITY, "std = inf"},
      {"data_mean", 1, NAN, "mean = nan"},
      {"data_std", 2, 0, "setting 'data_std' is a string, expected a double"},
      {"data_pad", 1, 2.5, "setting 'data_pad' is a double, expected a int"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    pg_kv copy;
    pg_kv_init(&copy);
    for (int k = 0; k < kv.count; k++) {
      const pg_kv_entry *e = &kv.items[k];
      if (e->type == PG_KV_INT) pg_kv_set_int(&copy, e->key, e->i);
      else pg_kv_set_double(&copy, e->key, e->d);
    }
    if (bad[i].type == 0) pg_kv_set_int(&copy, bad[i].key, (int64_t)bad[i].v);
    else if (bad[i].type == 1) pg_kv_set_double(&copy, bad[i].key, bad[i].v);
    else pg_kv_set_string(&copy, bad[i].key, "x");
    assert_int_equal(pg_latent_transform_from_kv(&copy, "ck.h5", &tf), PG_ERR_FORMAT);
    assert_error_contains("ck.h5: config");
    assert_error_contains(bad[i].needle);
    pg_kv_free(&copy);
  }
  pg_kv_free(&kv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_impossible_contents),
      cmocka_unit_test(test_transform_from_config),
      cmocka_unit_test(test_round_trip_every_part),
      cmocka_unit_test(test_load_matching),
      cmocka_unit_test(test_absent_parts),
      cmocka_unit_test(test_mismatches_named_in_one_message),
      cmocka_unit_test(test_not_a_checkpoint),
      cmocka_unit_test(test_atomic_save),
      cmocka_unit_test(test_kv),
      cmocka_unit_test(test_resume_is_bit_identical),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
