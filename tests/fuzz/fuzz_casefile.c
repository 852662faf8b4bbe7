/* libFuzzer harness: case files, replayed by `patchgrad check` itself
 * (cli/cmd_check.c and every op handler), its report sent to /dev/null. */
#include "fuzz_util.h"

#include <hdf5.h>

int pg_cmd_check(int argc, char **argv);

/* The seeds are rebuilt with patchgrad's own writer (pg_h5_*: the 1.10
 * format, attributes in checksummed object headers, strings fixed-length,
 * Fletcher32 on every dataset) rather than copied: a copied object keeps the
 * source's unchecksummed 1.8-format header, whose damage reaches HDF5's own
 * parser (docs/reliability.md), not patchgrad's reading. */
typedef struct {
  hid_t dst;
  bool ok;
} rebuild;

static herr_t copy_attr(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  rebuild *r = data;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT), t = H5Aget_type(a), space = H5Aget_space(a);
  H5T_class_t cls = H5Tget_class(t);
  int rank = H5Sget_simple_extent_ndims(space);
  H5Sclose(space);
  H5Tclose(t);
  H5Aclose(a);
  int64_t ints[64];
  int n = 0;
  double d;
  char str[256];
  pg_status st = PG_ERR_FORMAT;
  if (cls == H5T_INTEGER && pg_h5_attr_int_array(obj, name, ints, 64, &n) == 1)
    st = rank == 0 ? pg_h5_set_attr_int(r->dst, name, ints[0])
                   : pg_h5_set_attr_int_array(r->dst, name, ints, n);
  else if (cls == H5T_FLOAT && pg_h5_attr_double(obj, name, &d) == 1)
    st = pg_h5_set_attr_double(r->dst, name, d);
  else if (cls == H5T_STRING && pg_h5_attr_string(obj, name, str, sizeof str) == 1)
    st = pg_h5_set_attr_string(r->dst, name, str);
  if (st) r->ok = false;
  return 0;
}

static void copy_tree(hid_t src, hid_t dst, bool *ok);

static herr_t copy_link(hid_t src, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  rebuild *r = data;
  H5O_info_t oi;
  if (H5Oget_info_by_name(src, name, &oi, H5P_DEFAULT) < 0) return -1;
  if (oi.type == H5O_TYPE_GROUP) {
    hid_t in = H5Gopen2(src, name, H5P_DEFAULT), out = pg_h5_create_group(r->dst, name);
    copy_tree(in, out, &r->ok);
    H5Gclose(in);
    H5Gclose(out);
    return 0;
  }
  pg_h5_dtype dt;
  int ndim;
  int64_t shape[PG_MAX_DIMS];
  if (pg_h5_dataset_dtype(src, name, "seed", &dt) || pg_h5_dataset_shape(src, name, "seed", &ndim, shape))
    return -1;
  pg_status st;
  if (dt.cls == H5T_INTEGER) {
    int64_t *v;
    st = pg_h5_read_int64(src, name, "seed", &v, &ndim, shape);
    if (!st) st = pg_h5_write_int64(r->dst, name, ndim, shape, v);
    if (!st) free(v);
  } else {
    pg_tensor *t;
    st = pg_h5_read_tensor(src, name, "seed", &t);
    if (!st) st = pg_h5_write_floats(r->dst, name, t->ndim, t->shape, t->data, 0);
    if (!st) pg_tensor_free(t);
  }
  if (st) r->ok = false;
  return 0;
}

/* Every attribute, group and dataset of src into dst. */
static void copy_tree(hid_t src, hid_t dst, bool *ok) {
  rebuild r = {dst, true};
  hsize_t idx = 0;
  if (H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_attr, &r) < 0) r.ok = false;
  idx = 0;
  if (H5Literate(src, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_link, &r) < 0) r.ok = false;
  *ok = *ok && r.ok;
}

/* One committed case per seed file, rebuilt as above; small ones only (the
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
    char name[256];
    snprintf(name, sizeof name, "%s.h5", picks[i].name);
    hid_t out = pg_h5_create_in_memory(name), case_in = H5Gopen2(in, picks[i].name, H5P_DEFAULT);
    hid_t case_out = out >= 0 ? pg_h5_create_group(out, picks[i].name) : -1;
    bool ok = case_in >= 0 && case_out >= 0;
    if (ok) copy_tree(case_in, case_out, &ok);
    if (case_in >= 0) H5Gclose(case_in);
    if (case_out >= 0) H5Gclose(case_out);
    if (!ok) {
      fprintf(stderr, "making seed %s: %s\n", name, pg_last_error());
      exit(1);
    }
    fuzz_seed_ok(pg_h5_commit_image(out, fuzz_seed_path(name)), name);
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
  if (!fuzz_checksummed_hdf5(data, size)) return 0;
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
