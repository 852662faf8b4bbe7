/* The Frechet distance (vit/frechet.h): the formula against closed forms
 * worked out by hand on small Gaussians, its invariances, the batched
 * statistics against a direct two-pass computation, a finite-sample check,
 * the errors, the ViT as the feature network, and `patchgrad score
 * --reference` end to end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"

#include "patchgrad/autograd/ops.h"
#include "patchgrad/autograd/rng.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/vit/frechet.h"

/* Absolute tolerance for closed forms of order 1: the eigen-decomposition
 * and the products are in double. */
#define EXACT 1e-10

static double fd(int64_t d, const double *mu1, const double *c1, const double *mu2, const double *c2) {
  pg_frechet_result r;
  if (pg_frechet_distance(d, mu1, c1, mu2, c2, &r)) fail_msg("%s", pg_last_error());
  assert_true(fabs(r.distance - (r.mean_term + r.cov_term)) < 1e-15);
  return r.distance;
}

/* ---- closed forms ---- */

/* 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s. */
static void test_one_dimension(void **state) {
  (void)state;
  double m1 = 1.5, m2 = -0.5, v1 = 4.0, v2 = 0.25; /* s1 = 2, s2 = 0.5 */
  assert_true(fabs(fd(1, &m1, &v1, &m2, &v2) - (4.0 + 2.25)) < EXACT);
  /* equal variances: only the means */
  assert_true(fabs(fd(1, &m1, &v1, &m2, &v1) - 4.0) < EXACT);
  /* a point mass against N(0, 9): the whole variance */
  double z = 0, nine = 9;
  assert_true(fabs(fd(1, &z, &z, &z, &nine) - 9.0) < EXACT);
}

/* Two isotropic Gaussians in d dimensions: |mu1 - mu2|^2 + d (s1 - s2)^2. */
static void test_isotropic(void **state) {
  (void)state;
  enum { D = 5 };
  double mu1[D] = {1, 2, 3, 4, 5}, mu2[D] = {0, 2, 5, 4, 4}, c1[D * D] = {0}, c2[D * D] = {0};
  const double s1 = 1.5, s2 = 0.7;
  for (int i = 0; i < D; i++) {
    c1[i * D + i] = s1 * s1;
    c2[i * D + i] = s2 * s2;
  }
  const double want = (1 + 0 + 4 + 0 + 1) + D * (s1 - s2) * (s1 - s2);
  assert_true(fabs(fd(D, mu1, c1, mu2, c2) - want) < EXACT);
}

/* Diagonal covariances: sum (sqrt a_i - sqrt b_i)^2 plus the means. */
static void test_diagonal(void **state) {
  (void)state;
  enum { D = 4 };
  double a[D] = {1, 4, 9, 0.01}, b[D] = {4, 4, 1, 1}, c1[D * D] = {0}, c2[D * D] = {0};
  double mu1[D] = {0, 0, 0, 0}, mu2[D] = {0.5, 0, 0, -0.5};
  for (int i = 0; i < D; i++) {
    c1[i * D + i] = a[i];
    c2[i * D + i] = b[i];
  }
  /* (1-2)^2 + 0 + (3-1)^2 + (0.1-1)^2 = 1 + 4 + 0.81, means 0.5 */
  assert_true(fabs(fd(D, mu1, c1, mu2, c2) - (0.5 + 5.81)) < EXACT);
}

/* Covariances that do not commute, worked by hand in 2-D. For a 2 x 2
 * positive semi-definite M, Tr(M^{1/2}) = sqrt(Tr M + 2 sqrt(det M)). */
static void test_non_commuting_2d(void **state) {
  (void)state;
  double z[2] = {0, 0}, eye[4] = {1, 0, 0, 1}, s2[4] = {2, 1, 1, 2}, s1[4] = {4, 0, 0, 1};
  /* S1 = I: M = S2 with eigenvalues 3 and 1: 2 + 4 - 2 (sqrt 3 + 1) */
  assert_true(fabs(fd(2, z, eye, z, s2) - (4 - 2 * sqrt(3.0))) < EXACT);
  /* S1 = diag(4, 1): M = [[8, 2], [2, 2]], Tr 10, det 12 */
  assert_true(fabs(fd(2, z, s1, z, s2) - (5 + 4 - 2 * sqrt(10 + 2 * sqrt(12.0)))) < EXACT);
  /* the formula is symmetric although it reads S1 and S2 differently */
  assert_true(fabs(fd(2, z, s2, z, s1) - fd(2, z, s1, z, s2)) < EXACT);
}

/* Rank-one covariances u u^T and v v^T (singular, so eigenvalues at 0 that
 * rounding may push below it): S1^{1/2} = u u^T / |u| and
 * M = (u.v)^2 u u^T / |u|^2, so d^2 = |u|^2 + |v|^2 - 2 |u.v|. */
static void test_singular(void **state) {
  (void)state;
  enum { D = 4 };
  const double u[D] = {0.3, -1.2, 0.7, 2.0}, v[D] = {1.1, 0.4, -0.9, 0.5};
  double c1[D * D], c2[D * D], z[D] = {0}, uu = 0, vv = 0, uv = 0;
  for (int i = 0; i < D; i++) {
    uu += u[i] * u[i];
    vv += v[i] * v[i];
    uv += u[i] * v[i];
    for (int j = 0; j < D; j++) {
      c1[i * D + j] = u[i] * u[j];
      c2[i * D + j] = v[i] * v[j];
    }
  }
  pg_frechet_result r;
  assert_int_equal(pg_frechet_distance(D, z, c1, z, c2, &r), PG_OK);
  assert_true(fabs(r.distance - (uu + vv - 2 * fabs(uv))) < 1e-7);
  assert_true(r.clamped <= 2 * D);
  printf("rank-one case: %lld eigenvalues clamped to 0\n", (long long)r.clamped);
  /* identical singular covariances: 0 */
  assert_true(fd(D, z, c1, z, c1) < 1e-7);
}

/* A random positive-definite [d, d] covariance G G^T / d + 0.1 I. */
static void random_cov(int64_t d, pg_rng *rng, double *c) {
  double *g = malloc((size_t)(d * d) * sizeof *g);
  for (int64_t i = 0; i < d * d; i++) g[i] = pg_rng_normal(rng);
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      double acc = i == j ? 0.1 : 0;
      for (int64_t k = 0; k < d; k++) acc += g[i * d + k] * g[j * d + k] / (double)d;
      c[i * d + j] = acc;
    }
  free(g);
}

/* A random rotation: the product of a Givens rotation by a random angle in
 * every plane (i, j), applied to the rows of the identity. */
static void random_rotation(int64_t d, pg_rng *rng, double *q) {
  for (int64_t i = 0; i < d * d; i++) q[i] = i % (d + 1) == 0;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i + 1; j < d; j++) {
      const double t = 6.283185307179586 * pg_rng_uniform_double(rng), c = cos(t), sn = sin(t);
      for (int64_t k = 0; k < d; k++) {
        const double qi = q[i * d + k], qj = q[j * d + k];
        q[i * d + k] = c * qi - sn * qj;
        q[j * d + k] = sn * qi + c * qj;
      }
    }
}

/* out = r a r^T */
static void rotate(int64_t d, const double *r, const double *a, double *out) {
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      double acc = 0;
      for (int64_t k = 0; k < d; k++)
        for (int64_t l = 0; l < d; l++) acc += r[i * d + k] * a[k * d + l] * r[j * d + l];
      out[i * d + j] = acc;
    }
}

/* Identical distributions give 0; a common rotation of both leaves d^2 as
 * it is; swapping the two does too. */
static void test_identity_and_invariance(void **state) {
  (void)state;
  enum { D = 6 };
  pg_rng rng;
  pg_rng_seed(&rng, 7);
  double c1[D * D], c2[D * D], q[D * D], r1[D * D], r2[D * D], mu1[D], mu2[D], q1[D], q2[D];
  random_cov(D, &rng, c1);
  random_cov(D, &rng, c2);
  random_rotation(D, &rng, q);
  for (int i = 0; i < D; i++) {
    mu1[i] = pg_rng_normal(&rng);
    mu2[i] = pg_rng_normal(&rng);
  }
  assert_true(fabs(fd(D, mu1, c1, mu1, c1)) < EXACT);
  const double base = fd(D, mu1, c1, mu2, c2);
  assert_true(base > 0.1);
  rotate(D, q, c1, r1);
  rotate(D, q, c2, r2);
  for (int i = 0; i < D; i++) {
    q1[i] = q2[i] = 0;
    for (int k = 0; k < D; k++) {
      q1[i] += q[i * D + k] * mu1[k];
      q2[i] += q[i * D + k] * mu2[k];
    }
  }
  assert_true(fabs(fd(D, q1, r1, q2, r2) - base) < 1e-9 * base);
  assert_true(fabs(fd(D, mu2, c2, mu1, c1) - base) < 1e-9 * base);
  /* a block-diagonal pair is the sum of its blocks (here the 2-D case above
   * beside a 1-D one) */
  double b1[9] = {4, 0, 0, 0, 1, 0, 0, 0, 4}, b2[9] = {2, 1, 0, 1, 2, 0, 0, 0, 0.25}, z[3] = {0};
  assert_true(fabs(fd(3, z, b1, z, b2) - (9 - 2 * sqrt(10 + 2 * sqrt(12.0)) + 2.25)) < EXACT);
}

/* ---- statistics ---- */

/* n draws of N(mu, L L^T) with L lower-triangular, as float rows. */
static void draw(int64_t n, int64_t d, const double *mu, const double *L, pg_rng *rng, float *x) {
  double z[16];
  for (int64_t i = 0; i < n; i++) {
    for (int64_t k = 0; k < d; k++) z[k] = pg_rng_normal(rng);
    for (int64_t j = 0; j < d; j++) {
      double v = mu[j];
      for (int64_t k = 0; k <= j; k++) v += L[j * d + k] * z[k];
      x[i * d + j] = (float)v;
    }
  }
}

/* Batches of any sizes give the two-pass mean and unbiased covariance. */
static void test_stats_batched(void **state) {
  (void)state;
  enum { N = 103, D = 5 };
  pg_rng rng;
  pg_rng_seed(&rng, 3);
  float *x = malloc(N * D * sizeof *x);
  for (int i = 0; i < N * D; i++) x[i] = 10.0f + 3.0f * pg_rng_normal(&rng); /* far from 0 */
  double mean[D] = {0}, cov[D * D] = {0}, got[D * D];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D; j++) mean[j] += x[i * D + j] / (double)N;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D; j++)
      for (int k = 0; k < D; k++) cov[j * D + k] += (x[i * D + j] - mean[j]) * (x[i * D + k] - mean[k]) / (N - 1);
  const int64_t splits[][4] = {{N, 0}, {1, 1, 7, N - 9}, {50, 0, 53}};
  for (int t = 0; t < 3; t++) {
    pg_frechet_stats s;
    assert_int_equal(pg_frechet_stats_init(&s, D), PG_OK);
    int64_t at = 0;
    for (int b = 0; b < 4 && at < N; b++) {
      assert_int_equal(pg_frechet_stats_add(&s, x + at * D, splits[t][b]), PG_OK);
      at += splits[t][b];
    }
    assert_int_equal(s.n, N);
    assert_int_equal(pg_frechet_stats_cov(&s, got), PG_OK);
    for (int j = 0; j < D; j++) assert_true(fabs(s.mean[j] - mean[j]) < 1e-12 * fabs(mean[j]));
    for (int j = 0; j < D * D; j++) assert_true(fabs(got[j] - cov[j]) < 1e-11);
    pg_frechet_stats_free(&s);
  }
  /* merging the statistics of two parts gives those of the whole */
  pg_frechet_stats p1, p2, all;
  assert_int_equal(pg_frechet_stats_init(&p1, D), PG_OK);
  assert_int_equal(pg_frechet_stats_init(&p2, D), PG_OK);
  assert_int_equal(pg_frechet_stats_init(&all, D), PG_OK);
  assert_int_equal(pg_frechet_stats_add(&p1, x, 40), PG_OK);
  assert_int_equal(pg_frechet_stats_add(&p2, x + 40 * D, N - 40), PG_OK);
  assert_int_equal(pg_frechet_stats_merge(&all, &p1), PG_OK);
  assert_int_equal(pg_frechet_stats_merge(&all, &p2), PG_OK);
  assert_int_equal(all.n, N);
  assert_int_equal(pg_frechet_stats_cov(&all, got), PG_OK);
  for (int j = 0; j < D; j++) assert_true(fabs(all.mean[j] - mean[j]) < 1e-12 * fabs(mean[j]));
  for (int j = 0; j < D * D; j++) assert_true(fabs(got[j] - cov[j]) < 1e-11);
  pg_frechet_stats_free(&p2);
  assert_int_equal(pg_frechet_stats_init(&p2, D + 1), PG_OK);
  assert_int_not_equal(pg_frechet_stats_merge(&all, &p2), PG_OK);
  assert_error_contains("cannot merge statistics of 6 features into ones of 5");
  pg_frechet_stats_free(&p1);
  pg_frechet_stats_free(&p2);
  pg_frechet_stats_free(&all);
  free(x);
}

/* Two samples of the same Gaussian: d^2 small (the estimate's bias, of
 * order Tr(S) d / n); the same against a copy shifted by 0.5 along one axis:
 * about 0.25. */
static void test_finite_sample(void **state) {
  (void)state;
  enum { N = 4000, D = 4 };
  const double L[D * D] = {1, 0, 0, 0, 0.5, 0.8, 0, 0, -0.3, 0.2, 1.2, 0, 0.1, 0.1, 0.1, 0.5};
  const double mu[D] = {1, -1, 0, 2}, shifted[D] = {1.5, -1, 0, 2};
  pg_rng rng;
  pg_rng_seed(&rng, 11);
  float *x = malloc(N * D * sizeof *x);
  pg_frechet_stats a, b, c;
  assert_int_equal(pg_frechet_stats_init(&a, D), PG_OK);
  assert_int_equal(pg_frechet_stats_init(&b, D), PG_OK);
  assert_int_equal(pg_frechet_stats_init(&c, D), PG_OK);
  draw(N, D, mu, L, &rng, x);
  assert_int_equal(pg_frechet_stats_add(&a, x, N), PG_OK);
  draw(N, D, mu, L, &rng, x);
  assert_int_equal(pg_frechet_stats_add(&b, x, N), PG_OK);
  draw(N, D, shifted, L, &rng, x);
  assert_int_equal(pg_frechet_stats_add(&c, x, N), PG_OK);
  pg_frechet_result same, apart;
  assert_int_equal(pg_frechet_stats_distance(&a, &b, &same), PG_OK);
  assert_int_equal(pg_frechet_stats_distance(&a, &c, &apart), PG_OK);
  printf("same distribution %.5f, mean shifted by 0.5: %.5f\n", same.distance, apart.distance);
  assert_true(same.distance < 0.02);
  assert_true(fabs(apart.distance - 0.25) < 0.05);
  pg_frechet_stats_free(&a);
  pg_frechet_stats_free(&b);
  pg_frechet_stats_free(&c);
  free(x);
}

/* ---- errors ---- */

static void test_errors(void **state) {
  (void)state;
  pg_frechet_stats a, b;
  pg_frechet_result r;
  assert_int_not_equal(pg_frechet_stats_init(&a, 0), PG_OK);
  assert_error_contains("feature size must be in 1..32768, got 0");
  assert_int_equal(pg_frechet_stats_init(&a, 3), PG_OK);
  assert_int_equal(pg_frechet_stats_init(&b, 2), PG_OK);
  const float x[6] = {1, 2, 3, 4, 5, 6};
  assert_int_equal(pg_frechet_stats_add(&a, x, 1), PG_OK);
  /* one vector: no covariance */
  double cov[9];
  assert_int_not_equal(pg_frechet_stats_cov(&a, cov), PG_OK);
  assert_error_contains("at least 2 vectors, got 1");
  assert_int_equal(pg_frechet_stats_add(&b, x, 3), PG_OK);
  assert_int_not_equal(pg_frechet_stats_distance(&a, &b, &r), PG_OK);
  assert_error_contains("different feature sizes, 3 and 2");
  pg_frechet_stats_free(&b);
  assert_int_equal(pg_frechet_stats_init(&b, 3), PG_OK);
  assert_int_equal(pg_frechet_stats_add(&b, x, 2), PG_OK);
  assert_int_not_equal(pg_frechet_stats_distance(&a, &b, &r), PG_OK);
  assert_error_contains("at least 2 vectors for a covariance, got 1 and 2");
  /* a non-finite feature is refused and leaves the statistics as they were */
  const float bad[3] = {1, NAN, 3};
  assert_int_not_equal(pg_frechet_stats_add(&b, bad, 1), PG_OK);
  assert_error_contains("vector 0 of the batch holds a non-finite value (nan) at feature 1");
  assert_int_equal(b.n, 2);
  pg_frechet_stats_free(&a);
  pg_frechet_stats_free(&b);
  /* a matrix that is not a covariance */
  double z[2] = {0, 0}, eye[4] = {1, 0, 0, 1}, indefinite[4] = {1, 2, 2, 1}; /* eigenvalues 3, -1 */
  assert_int_not_equal(pg_frechet_distance(2, z, indefinite, z, eye, &r), PG_OK);
  assert_error_contains("cov1 has the eigenvalue -1");
  double inf_mu[2] = {0, INFINITY};
  assert_int_not_equal(pg_frechet_distance(2, inf_mu, eye, z, eye, &r), PG_OK);
  assert_error_contains("mu1[1] is inf");
}

/* ---- the ViT as the feature network ---- */

static const pg_vit_config tiny = {.height = 4, .width = 4, .in_channels = 2, .patch_size = 2,
                                   .hidden = 8, .depth = 2, .heads = 2, .mlp_ratio = 2,
                                   .num_classes = 3};

/* The features are what the head reads, and batching or splitting them
 * into even and odd samples gives the statistics of those samples. */
static void test_vit_features(void **state) {
  (void)state;
  enum { N = 9, H = 8 };
  pg_rng rng;
  pg_rng_seed(&rng, 5);
  pg_vit m;
  assert_int_equal(pg_vit_init(&m, &tiny, &rng), PG_OK);
  const int64_t per = 4 * 4 * 2;
  float *x = malloc(N * per * sizeof *x);
  for (int i = 0; i < N * per; i++) x[i] = pg_rng_normal(&rng);
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_set_grad_enabled(ctx, false);
  pg_tensor *xt = pg_from_array(ctx, 4, (int64_t[]){N, 4, 4, 2}, x);
  pg_tensor *f = pg_vit_features(ctx, &m, xt);
  assert_non_null(f);
  assert_int_equal(f->ndim, 2);
  assert_int_equal(f->shape[0], N);
  assert_int_equal(f->shape[1], H);
  /* the head applied to the features gives the logits */
  pg_tensor *logits = pg_vit_forward(ctx, &m, xt), *head = pg_linear_forward(ctx, &m.head, f);
  assert_non_null(logits);
  assert_close(head->data, logits->data, N * 3, 0, 0);
  float feats[N * H], even[N * H], odd[N * H];
  memcpy(feats, f->data, sizeof feats);
  int ne = 0, no = 0;
  for (int i = 0; i < N; i++) memcpy(i % 2 ? odd + no++ * H : even + ne++ * H, feats + i * H, H * sizeof(float));
  /* a wrong input shape is refused with the model's */
  assert_null(pg_vit_features(ctx, &m, pg_zeros(ctx, PG_SHAPE(1, 4, 4, 3))));
  assert_error_contains("the model takes [B, 4, 4, 2]");
  pg_ctx_reset(ctx);

  pg_frechet_stats whole, halves[2], direct[2];
  assert_int_equal(pg_frechet_stats_init(&whole, H), PG_OK);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(pg_frechet_stats_init(&halves[k], H), PG_OK);
    assert_int_equal(pg_frechet_stats_init(&direct[k], H), PG_OK);
  }
  assert_int_equal(pg_frechet_add_vit(ctx, &m, x, N, 4, 1, &whole), PG_OK);
  assert_int_equal(pg_frechet_add_vit(ctx, &m, x, N, 3, 2, halves), PG_OK);
  assert_int_equal(pg_frechet_stats_add(&direct[0], even, ne), PG_OK);
  assert_int_equal(pg_frechet_stats_add(&direct[1], odd, no), PG_OK);
  assert_int_equal(whole.n, N);
  assert_int_equal(halves[0].n, 5);
  assert_int_equal(halves[1].n, 4);
  for (int k = 0; k < 2; k++)
    for (int j = 0; j < H; j++) {
      assert_true(fabs(halves[k].mean[j] - direct[k].mean[j]) < 1e-5);
      for (int l = j; l < H; l++)
        assert_true(fabs(halves[k].comoment[j * H + l] - direct[k].comoment[j * H + l]) < 1e-4);
    }
  /* the statistics must have the classifier's feature size */
  pg_frechet_stats wrong;
  assert_int_equal(pg_frechet_stats_init(&wrong, H + 1), PG_OK);
  assert_int_not_equal(pg_frechet_add_vit(ctx, &m, x, N, 4, 1, &wrong), PG_OK);
  assert_error_contains("statistics 0 hold 9 features, the classifier gives 8");
  pg_frechet_stats_free(&wrong);
  pg_frechet_stats_free(&whole);
  for (int k = 0; k < 2; k++) {
    pg_frechet_stats_free(&halves[k]);
    pg_frechet_stats_free(&direct[k]);
  }
  pg_ctx_free(ctx);
  pg_vit_free(&m);
  free(x);
}

/* ---- files and the command ---- */

static int run(const char *cmd, char *out, size_t cap) {
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t len = fread(out, 1, cap - 1, p);
  out[len] = 0;
  fputs(out, stdout); /* for the test log */
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A labelled latent file of n random [4, 4, 2] samples with mean 0, std 1. */
static void write_latents(const char *path, int64_t n, float scale, uint64_t seed) {
  pg_latents_info info;
  pg_latents_info_init(&info);
  info.n = n;
  info.height = info.width = 4;
  info.channels = 2;
  info.has_labels = true;
  info.num_classes = 3;
  snprintf(info.source, sizeof info.source, "synthetic");
  pg_rng rng;
  pg_rng_seed(&rng, seed);
  float *x = malloc((size_t)(n * 32) * sizeof *x);
  int64_t *y = malloc((size_t)n * sizeof *y);
  for (int64_t i = 0; i < n * 32; i++) x[i] = scale * pg_rng_normal(&rng);
  for (int64_t i = 0; i < n; i++) y[i] = i % 3;
  if (pg_latents_save(path, &info, x, y)) fail_msg("%s", pg_last_error());
  free(x);
  free(y);
}

static void test_files_and_command(void **state) {
  (void)state;
  pg_rng rng;
  pg_rng_seed(&rng, 9);
  pg_vit m;
  assert_int_equal(pg_vit_init(&m, &tiny, &rng), PG_OK);
  pg_vit_data_info data = {.mean = 0, .std = 1, .source = "synthetic"};
  char ckpt[1024], real[1024], near[1024], far[1024], cmd[4096], out[8192];
  snprintf(ckpt, sizeof ckpt, "%s", pg_test_tmp("vit.h5"));
  snprintf(real, sizeof real, "%s", pg_test_tmp("real.h5"));
  snprintf(near, sizeof near, "%s", pg_test_tmp("near.h5"));
  snprintf(far, sizeof far, "%s", pg_test_tmp("far.h5"));
  assert_int_equal(pg_vit_save(ckpt, &m, &data, 0), PG_OK);
  write_latents(real, 400, 1.0f, 1);
  write_latents(near, 300, 1.0f, 2);
  write_latents(far, 300, 3.0f, 3);

  /* the library: parts 2 of a file are its even and odd samples */
  pg_ctx *ctx = pg_ctx_new(PG_TEST_ARENA_CHUNK);
  pg_frechet_stats s[2];
  int64_t count;
  for (int k = 0; k < 2; k++) assert_int_equal(pg_frechet_stats_init(&s[k], 8), PG_OK);
  assert_int_equal(pg_frechet_add_vit_file(ctx, &m, &data, real, 64, 2, s, &count), PG_OK);
  assert_int_equal(count, 400);
  assert_int_equal(s[0].n, 200);
  assert_int_equal(s[1].n, 200);
  /* a file normalised otherwise than the classifier's training data */
  pg_vit_data_info other = {.mean = 0.5, .std = 1, .source = "elsewhere"};
  assert_int_not_equal(pg_frechet_add_vit_file(ctx, &m, &other, real, 64, 1, s, &count), PG_OK);
  assert_error_contains("the classifier was trained on mean 0.5");
  assert_int_not_equal(pg_frechet_add_vit_file(ctx, &m, &data, ckpt, 64, 1, s, &count), PG_OK);
  assert_error_contains("has neither 'samples'");
  for (int k = 0; k < 2; k++) pg_frechet_stats_free(&s[k]);
  pg_ctx_free(ctx);
  pg_vit_free(&m);

  /* the command: samples from the same distribution are near the reference,
   * samples three times as spread are far; the floor is printed */
  double d_near, d_far, floor_fd;
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' score --classifier '%s' --samples '%s' --reference '%s' 2>&1",
           PG_BUILD_DIR, ckpt, near, real);
  assert_int_equal(run(cmd, out, sizeof out), 0);
  const char *line = strstr(out, "Frechet distance to the reference");
  assert_non_null(line);
  assert_int_equal(sscanf(strchr(line, ':') + 1, "%lf", &d_near), 1);
  assert_non_null(strstr(out, "comparable only within patchgrad"));
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' score --classifier '%s' --samples '%s' --reference '%s' 2>&1",
           PG_BUILD_DIR, ckpt, far, real);
  assert_int_equal(run(cmd, out, sizeof out), 0);
  line = strstr(out, "Frechet distance to the reference");
  assert_non_null(line);
  assert_int_equal(sscanf(strchr(line, ':') + 1, "%lf", &d_far), 1);
  assert_true(d_far > 5 * d_near);
  /* the floor alone: no --samples */
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' score --classifier '%s' --reference '%s' --split-halves 2>&1",
           PG_BUILD_DIR, ckpt, real);
  assert_int_equal(run(cmd, out, sizeof out), 0);
  line = strstr(out, "real-vs-real floor");
  assert_non_null(line);
  assert_non_null(strstr(line, "200 even- vs 200 odd-numbered"));
  assert_int_equal(sscanf(strchr(line, ':') + 1, "%lf", &floor_fd), 1);
  assert_true(floor_fd > 0 && floor_fd < d_far);
  assert_null(strstr(out, "agreement"));
  /* usage errors exit 2 */
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' score --classifier '%s' --split-halves 2>&1", PG_BUILD_DIR, ckpt);
  assert_int_equal(run(cmd, out, sizeof out), 2);
  assert_non_null(strstr(out, "--split-halves needs --reference"));
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' score --classifier '%s' --reference '%s' 2>&1", PG_BUILD_DIR, ckpt,
           real);
  assert_int_equal(run(cmd, out, sizeof out), 2);
  /* a reference the classifier cannot read exits 1 with the reason */
  snprintf(cmd, sizeof cmd, "'%s/patchgrad' score --classifier '%s' --samples '%s' --reference '%s' 2>&1",
           PG_BUILD_DIR, ckpt, near, ckpt);
  assert_int_equal(run(cmd, out, sizeof out), 1);
  assert_non_null(strstr(out, "has neither 'samples'"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_dimension),
      cmocka_unit_test(test_isotropic),
      cmocka_unit_test(test_diagonal),
      cmocka_unit_test(test_non_commuting_2d),
      cmocka_unit_test(test_singular),
      cmocka_unit_test(test_identity_and_invariance),
      cmocka_unit_test(test_stats_batched),
      cmocka_unit_test(test_finite_sample),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_vit_features),
      cmocka_unit_test(test_files_and_command),
  };
  if (pg_test_tmpdir_make("frechet")) return 1;
  return cmocka_run_group_tests(tests, NULL, pg_test_tmpdir_remove);
}
