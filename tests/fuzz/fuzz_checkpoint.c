/* libFuzzer harness: checkpoints (io/checkpoint.h), every part asked for,
 * and the data transform `sample` reads from their config. */
#include "fuzz_util.h"

#include "patchgrad/data/latent_image.h"
#include "patchgrad/io/checkpoint.h"

/* The model of the seeds: a weight, a bias and a buffer. */
static void make_params(pg_params *ps, float base) {
  pg_params_init(ps);
  pg_tensor *w = pg_params_add(ps, PG_PARAM_WEIGHT, PG_SHAPE(3, 4), "blocks.0.fc.weight");
  pg_tensor *b = pg_params_add(ps, PG_PARAM_BIAS, PG_SHAPE(4), "blocks.0.fc.bias");
  pg_tensor *p = pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(1, 2, 4), "pos_embed");
  for (int64_t i = 0; i < w->numel; i++) w->data[i] = base + (float)i / 8;
  for (int64_t i = 0; i < b->numel; i++) b->data[i] = -base - (float)i;
  for (int64_t i = 0; i < p->numel; i++) p->data[i] = (float)i / 3;
}

static void make_optim_state(pg_params *ps) {
  pg_params_init(ps);
  pg_fill(pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(3, 4), "blocks.0.fc.weight.exp_avg"), 0.1f);
  pg_fill(pg_params_add(ps, PG_PARAM_BUFFER, PG_SHAPE(3, 4), "blocks.0.fc.weight.exp_avg_sq"), 0.2f);
}

static void make_seeds(void) {
  pg_params ps, ema, opt;
  make_params(&ps, 1);
  make_params(&ema, 2);
  make_optim_state(&opt);
  pg_kv config, optim_config;
  pg_kv_init(&config);
  pg_kv_init(&optim_config);
  pg_kv_set_int(&config, "hidden", 4);
  pg_kv_set_double(&config, "data_mean", 0.25);
  pg_kv_set_double(&config, "data_std", 0.5);
  pg_kv_set_int(&config, "data_pad", 2);
  pg_kv_set_int(&config, "data_space_to_depth", 2);
  pg_kv_set_string(&config, "data_source", "synthetic");
  pg_kv_set_double(&optim_config, "lr", 1e-3);
  pg_kv_set_string(&optim_config, "kind", "adamw");
  int64_t step = 12, optim_step = 12;
  pg_rng rng;
  pg_rng_seed(&rng, 5);
  pg_loader_state loader = {.seed = 5, .epoch = 1, .position = 3};
  pg_checkpoint all = {.config = &config, .params = &ps, .ema = &ema, .optim_state = &opt,
                       .optim_step = &optim_step, .optim_config = &optim_config, .step = &step,
                       .rng = &rng, .loader = &loader};
  fuzz_seed_ok(pg_checkpoint_save(fuzz_seed_path("full.h5"), &all), "full.h5");
  pg_checkpoint weights = {.config = &config, .params = &ps, .step = &step};
  fuzz_seed_ok(pg_checkpoint_save(fuzz_seed_path("weights.h5"), &weights), "weights.h5");
  pg_params_free(&ps);
  pg_params_free(&ema);
  pg_params_free(&opt);
  pg_kv_free(&config);
  pg_kv_free(&optim_config);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  pg_h5_quiet();
  if (fuzz_seed_dir()) {
    make_seeds();
    exit(0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!fuzz_checksummed_hdf5(data, size)) return 0;
  const char *path = fuzz_input_file(data, size, ".h5");
  if (!path) return 0;
  pg_params ps, ema, opt;
  make_params(&ps, 0);
  make_params(&ema, 0);
  make_optim_state(&opt);
  pg_kv config, optim_config;
  pg_kv_init(&config);
  pg_kv_init(&optim_config);
  int64_t step, optim_step;
  pg_rng rng;
  pg_loader_state loader;
  /* each part alone (a file may hold some), then all of them at once */
  pg_checkpoint parts[] = {
      {.config = &config}, {.params = &ps}, {.ema = &ema},
      {.optim_state = &opt, .optim_step = &optim_step, .optim_config = &optim_config},
      {.step = &step, .rng = &rng, .loader = &loader},
      {.config = &config, .params = &ps, .ema = &ema, .optim_state = &opt,
       .optim_step = &optim_step, .optim_config = &optim_config, .step = &step, .rng = &rng,
       .loader = &loader},
  };
  for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
    if (!pg_checkpoint_load(path, &parts[i]) && parts[i].config) {
      pg_latent_transform tf;
      pg_latent_transform_from_kv(&config, path, &tf);
    }
    fuzz_assert_nothing_open();
  }
  pg_params_free(&ps);
  pg_params_free(&ema);
  pg_params_free(&opt);
  pg_kv_free(&config);
  pg_kv_free(&optim_config);
  return 0;
}
