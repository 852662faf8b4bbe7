/* libFuzzer harness: case files, replayed by `patchgrad check` itself
 * (cli/cmd_check.c and every op handler), its report sent to /dev/null. */
#include "fuzz_util.h"

#include <hdf5.h>

int pg_cmd_check(int argc, char **argv);

typedef struct {
  char names[64][64];
  int n;
} attr_names;

static herr_t collect_string_attr(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  attr_names *a = data;
  hid_t at = H5Aopen(obj, name, H5P_DEFAULT), t = H5Aget_type(at);
  if (H5Tget_class(t) == H5T_STRING && a->n < 64) snprintf(a->names[a->n++], 64, "%s", name);
  H5Tclose(t);
  H5Aclose(at);
  return 0;
}

/* Variable-length strings live in HDF5's global heap, which has no checksum
 * (a damaged one crashes HDF5 1.10 itself, whoever reads it): the seeds
 * store them fixed-length, so that every piece of their metadata is
 * checksummed and the fuzzing explores patchgrad's own reading. */
static void fixed_length_strings(hid_t g) {
  attr_names a = {.n = 0};
  hsize_t idx = 0;
  H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_string_attr, &a);
  for (int i = 0; i < a.n; i++) {
    char value[256];
    if (pg_h5_attr_string(g, a.names[i], value, sizeof value) != 1 ||
        pg_h5_set_attr_string(g, a.names[i], value))
      exit(1);
  }
}

/* One committed case per seed file, copied into the 1.10 file format (with
 * metadata checksums, as a user could write them); small ones only (the
 * harness reads at most 64 KB), so no whole-model case. */
static void make_seeds(void) {
  const char *src_dir = getenv("PG_FUZZ_CASES");
  if (!src_dir) {
    fprintf(stderr, "making seeds: set PG_FUZZ_CASES to the folder of the case fixtures\n");
    exit(1);
  }
  const struct {
    const char *file, *name;
  } picks[] = {
      {"cases-public.h5", "linear_bias"},
      {"cases-public.h5", "patchify_2d_p2_s2"},
      {"cases-public.h5", "unpatchify_2d_p3_s2_overlap_osshigh"},
      {"cases-public.h5", "layernorm_eps1e-5_affine"},
      {"cases-public.h5", "gelu_tanh"},
      {"cases-public.h5", "mse"},
      {"cases-public.h5", "sgd_momentum"},
      {"cases-public.h5", "adamw_wd"},
      {"cases-public.h5", "attention_h2_T9"},
      {"ops_torch.h5", "embedding_2x3"},
      {"ops_torch.h5", "sum_2x3x4_axes1"},
      {"ops_torch.h5", "matmul_2d_nt"},
      {"vit_cases.h5", "ce_basic"},
      {"nn_cases.h5", "attention_head_T7"},
  };
  for (size_t i = 0; i < sizeof picks / sizeof *picks; i++) {
    char src[2048];
    snprintf(src, sizeof src, "%s/%s", src_dir, picks[i].file);
    hid_t in = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in < 0 || H5Lexists(in, picks[i].name, H5P_DEFAULT) <= 0) {
      fprintf(stderr, "making seeds: no case '%s' in %s (skipped)\n", picks[i].name, src);
      if (in >= 0) H5Fclose(in);
      continue;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    char name[256];
    snprintf(name, sizeof name, "%s.h5", picks[i].name);
    hid_t out = H5Fcreate(fuzz_seed_path(name), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (out < 0 || H5Ocopy(in, picks[i].name, out, picks[i].name, H5P_DEFAULT, H5P_DEFAULT) < 0)
      exit(1);
    hid_t g = H5Gopen2(out, picks[i].name, H5P_DEFAULT);
    fixed_length_strings(g);
    H5Gclose(g);
    H5Fclose(out);
    H5Fclose(in);
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  pg_h5_quiet();
  if (fuzz_seed_dir()) {
    make_seeds();
    exit(0);
  }
  if (!freopen("/dev/null", "w", stdout)) abort(); /* the report of every case */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_input_file(data, size, ".h5");
  if (!path) return 0;
  char cmd[] = "check", file[128];
  snprintf(file, sizeof file, "%s", path);
  char *argv[] = {cmd, file, NULL};
  int rc = pg_cmd_check(2, argv);
  if (rc < 0 || rc > 2) abort(); /* 0 all passed, 1 some failed, 2 refused */
  fuzz_assert_nothing_open();
  return 0;
}
