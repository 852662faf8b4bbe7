/* The minibatch loader: every epoch a permutation (each sample exactly
 * once), different each epoch, the same for the same seed; drop_last on and
 * off; batches read by hyperslab match the in-memory mode; the state
 * (seed, epoch, position) restores a run exactly; bad options fail cleanly. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patchgrad/io/latents.h"
#include "patchgrad/io/loader.h"

static char data_path[300], unlabelled_path[300];

enum { N = 10, PER = 2 }; /* samples of shape [1, 1, 2] */

/* Sample i holds (i, i + 0.5) so a batch tells which samples it holds. */
static void write_dataset(const char *path, int64_t n, bool labels) {
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = n;
  info.height = info.width = 1;
  info.channels = PER;
  info.has_labels = labels;
  info.num_classes = labels ? 3 : 0;
  float *x = malloc((size_t)(n * PER) * sizeof *x);
  int64_t *y = malloc((size_t)n * sizeof *y);
  for (int64_t i = 0; i < n; i++) {
    x[i * PER] = (float)i;
    x[i * PER + 1] = (float)i + 0.5f;
    y[i] = i % 3;
  }
  assert_int_equal(pg_latents_save(path, &info, x, labels ? y : NULL), PG_OK);
  free(x);
  free(y);
}

static int setup(void **state) {
  (void)state;
  if (pg_test_tmpdir_make("loader")) return -1;
  snprintf(data_path, sizeof data_path, "%s", pg_test_tmp("data.h5"));
  snprintf(unlabelled_path, sizeof unlabelled_path, "%s", pg_test_tmp("unlabelled.h5"));
  write_dataset(data_path, N, true);
  write_dataset(unlabelled_path, N, false);
  return 0;
}

static pg_loader *open_loader(int64_t batch, bool drop_last, bool in_memory, uint64_t seed) {
  pg_loader_opts o;
  pg_loader_opts_init(&o);
  o.batch_size = batch;
  o.drop_last = drop_last;
  o.in_memory = in_memory;
  o.seed = seed;
  pg_loader *l = pg_loader_open(data_path, &o);
  assert_non_null(l);
  return l;
}

/* The sample order of one epoch, batch by batch; checks each batch's data
 * and labels against the sample numbers. Returns the number of samples. */
static int one_epoch(pg_loader *l, int64_t batch, int64_t *order, int64_t *sizes, int *n_batches) {
  float x[16 * PER];
  int64_t y[16], idx[16], count;
  int total = 0, b = 0;
  int64_t epoch = pg_loader_get_state(l).epoch;
  for (;;) {
    pg_loader_state before = pg_loader_get_state(l);
    assert_int_equal(pg_loader_next(l, x, y, idx, &count), PG_OK);
    if (pg_loader_get_state(l).epoch != epoch && total > 0) {
      /* that batch already belongs to the next epoch: put the state back */
      assert_int_equal(pg_loader_set_state(l, &before), PG_OK);
      break;
    }
    epoch = pg_loader_get_state(l).epoch;
    assert_true(count >= 1 && count <= batch);
    for (int64_t k = 0; k < count; k++) {
      assert_true(x[k * PER] == (float)idx[k] && x[k * PER + 1] == (float)idx[k] + 0.5f);
      assert_int_equal(y[k], idx[k] % 3);
      order[total++] = idx[k];
    }
    sizes[b++] = count;
  }
  *n_batches = b;
  return total;
}

static bool is_permutation(const int64_t *order, int n, int of) {
  int seen[64] = {0};
  for (int i = 0; i < n; i++) {
    if (order[i] < 0 || order[i] >= of || seen[order[i]]) return false;
    seen[order[i]] = 1;
  }
  return true;
}

static void test_epochs_are_permutations(void **state) {
  (void)state;
  pg_loader *l = open_loader(3, false, false, 42);
  assert_int_equal(pg_loader_batches_per_epoch(l), 4);
  int64_t orders[3][N], sizes[8];
  for (int e = 0; e < 3; e++) {
    int nb;
    assert_int_equal(one_epoch(l, 3, orders[e], sizes, &nb), N);
    assert_true(is_permutation(orders[e], N, N));
    /* without drop_last: 3, 3, 3 and the partial 1 */
    assert_int_equal(nb, 4);
    assert_true(sizes[0] == 3 && sizes[1] == 3 && sizes[2] == 3 && sizes[3] == 1);
  }
  /* a new permutation each epoch, and a shuffled one */
  assert_true(memcmp(orders[0], orders[1], sizeof orders[0]) != 0);
  assert_true(memcmp(orders[1], orders[2], sizeof orders[0]) != 0);
  int64_t identity[N];
  for (int i = 0; i < N; i++) identity[i] = i;
  assert_true(memcmp(orders[0], identity, sizeof identity) != 0);
  pg_loader_close(l);

  /* the same seed gives the same epochs; another seed other ones */
  pg_loader *again = open_loader(3, false, false, 42), *other = open_loader(3, false, false, 43);
  int64_t o2[N], o3[N], sz[8];
  int nb;
  for (int e = 0; e < 3; e++) {
    one_epoch(again, 3, o2, sz, &nb);
    assert_memory_equal(o2, orders[e], sizeof o2);
  }
  one_epoch(other, 3, o3, sz, &nb);
  assert_true(memcmp(o3, orders[0], sizeof o3) != 0);
  pg_loader_close(again);
  pg_loader_close(other);
}

static void test_drop_last(void **state) {
  (void)state;
  pg_loader *l = open_loader(4, true, false, 7);
  assert_int_equal(pg_loader_batches_per_epoch(l), 2);
  float x[4 * PER];
  int64_t idx[4], count, seen_total[N] = {0};
  for (int e = 0; e < 5; e++) {
    int64_t order[8];
    for (int b = 0; b < 2; b++) {
      assert_int_equal(pg_loader_next(l, x, NULL, idx, &count), PG_OK);
      assert_int_equal(count, 4); /* never the partial batch of 2 */
      assert_int_equal(pg_loader_get_state(l).epoch, e);
      memcpy(order + 4 * b, idx, sizeof idx);
    }
    /* 8 distinct samples per epoch; the 2 left out change between epochs */
    assert_true(is_permutation(order, 8, N));
    for (int i = 0; i < 8; i++) seen_total[order[i]]++;
  }
  int never = 0;
  for (int i = 0; i < N; i++) never += seen_total[i] == 0;
  assert_true(never < 2);
  pg_loader_close(l);
}

static void test_unshuffled_and_unlabelled(void **state) {
  (void)state;
  pg_loader_opts o;
  pg_loader_opts_init(&o);
  o.batch_size = 4;
  o.shuffle = false;
  pg_loader *l = pg_loader_open(unlabelled_path, &o);
  assert_non_null(l);
  assert_false(pg_loader_info(l)->has_labels);
  float x[4 * PER];
  int64_t y[4], idx[4], count;
  for (int e = 0; e < 2; e++)
    for (int b = 0; b < 3; b++) {
      assert_int_equal(pg_loader_next(l, x, NULL, idx, &count), PG_OK);
      for (int k = 0; k < count; k++) assert_int_equal(idx[k], 4 * b + k); /* file order */
    }
  assert_int_not_equal(pg_loader_next(l, x, y, NULL, &count), PG_OK);
  assert_error_contains("no dataset 'labels'");
  pg_loader_close(l);
}

/* Reading by hyperslab (one sample at a time from disk) and reading all of
 * it into memory at open give the same batches. */
static void test_hyperslab_matches_in_memory(void **state) {
  (void)state;
  pg_loader *disk = open_loader(3, false, false, 9), *mem = open_loader(3, false, true, 9);
  float a[3 * PER], b[3 * PER];
  int64_t ya[3], yb[3], ia[3], ib[3], ca, cb;
  for (int step = 0; step < 12; step++) {
    assert_int_equal(pg_loader_next(disk, a, ya, ia, &ca), PG_OK);
    assert_int_equal(pg_loader_next(mem, b, yb, ib, &cb), PG_OK);
    assert_int_equal(ca, cb);
    assert_memory_equal(a, b, (size_t)ca * PER * sizeof *a);
    assert_memory_equal(ya, yb, (size_t)ca * sizeof *ya);
    assert_memory_equal(ia, ib, (size_t)ca * sizeof *ia);
  }
  pg_loader_close(disk);
  pg_loader_close(mem);

  /* a bigger file read by hyperslab: rows [start, start + count) only */
  char big[400];
  snprintf(big, sizeof big, "%s", pg_test_tmp("big.h5"));
  write_dataset(big, 1000, true);
  pg_latents *ds = pg_latents_open(big);
  assert_non_null(ds);
  float rows[5 * PER];
  assert_int_equal(pg_latents_read(ds, 777, 5, rows), PG_OK);
  for (int k = 0; k < 5; k++) assert_true(rows[k * PER] == 777.0f + k);
  pg_latents_close(ds);
}

/* A run interrupted after any number of batches and continued from the
 * saved state sees exactly the batches of the uninterrupted run. */
static void test_state_restores_exactly(void **state) {
  (void)state;
  for (int stop = 0; stop < 9; stop++) {
    pg_loader *full = open_loader(3, stop % 2 == 1, false, 1234);
    pg_loader *first = open_loader(3, stop % 2 == 1, false, 1234);
    float x[3 * PER], z[3 * PER];
    int64_t i1[3], i2[3], c1, c2;
    for (int s = 0; s < stop; s++) {
      pg_loader_next(full, x, NULL, i1, &c1);
      pg_loader_next(first, x, NULL, i1, &c1);
    }
    pg_loader_state saved = pg_loader_get_state(first);
    pg_loader_close(first);
    /* the resumed loader is opened with another seed: the state wins */
    pg_loader *resumed = open_loader(3, stop % 2 == 1, stop % 3 == 0, 999);
    assert_int_equal(pg_loader_set_state(resumed, &saved), PG_OK);
    for (int s = 0; s < 10; s++) {
      pg_loader_next(full, x, NULL, i1, &c1);
      pg_loader_next(resumed, z, NULL, i2, &c2);
      assert_int_equal(c1, c2);
      assert_memory_equal(i1, i2, (size_t)c1 * sizeof *i1);
      assert_memory_equal(x, z, (size_t)c1 * PER * sizeof *x);
    }
    pg_loader_state a = pg_loader_get_state(full), b = pg_loader_get_state(resumed);
    assert_true(a.seed == b.seed && a.epoch == b.epoch && a.position == b.position);
    pg_loader_close(full);
    pg_loader_close(resumed);
  }
}

static void test_bad_options(void **state) {
  (void)state;
  pg_loader_opts o;
  pg_loader_opts_init(&o);
  o.batch_size = 0;
  assert_null(pg_loader_open(data_path, &o));
  assert_error_contains("batch_size 0");
  o.batch_size = 11;
  o.drop_last = true;
  assert_null(pg_loader_open(data_path, &o));
  assert_error_contains("drop_last with batch_size 11 > N = 10");
  o.drop_last = false;
  pg_loader *l = pg_loader_open(data_path, &o); /* one batch of all 10 */
  assert_non_null(l);
  float x[11 * PER];
  int64_t count;
  assert_int_equal(pg_loader_next(l, x, NULL, NULL, &count), PG_OK);
  assert_int_equal(count, N);
  pg_loader_state s = {.seed = 1, .epoch = 0, .position = 11};
  assert_int_not_equal(pg_loader_set_state(l, &s), PG_OK);
  assert_error_contains("position 11 outside [0, N = 10]");
  pg_loader_close(l);
  char missing[400];
  snprintf(missing, sizeof missing, "%s", pg_test_tmp("missing.h5"));
  assert_null(pg_loader_open(missing, &o));
  assert_error_contains(missing);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_epochs_are_permutations),
      cmocka_unit_test(test_drop_last),
      cmocka_unit_test(test_unshuffled_and_unlabelled),
      cmocka_unit_test(test_hyperslab_matches_in_memory),
      cmocka_unit_test(test_state_restores_exactly),
      cmocka_unit_test(test_bad_options),
  };
  return cmocka_run_group_tests(tests, setup, pg_test_tmpdir_remove);
}
