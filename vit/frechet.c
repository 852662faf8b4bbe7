/* The Frechet distance of frechet.h: statistics in double, square roots
 * through LAPACKE_dsyevd. */
#include "patchgrad/vit/frechet.h"

#include "patchgrad/autograd/batches.h"

#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/ops.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/latents.h"

/* An eigenvalue below -EIG_NEG_TOL * (the largest |eigenvalue|) is not a
 * rounding residue of a positive semi-definite matrix. */
#define EIG_NEG_TOL 1e-8

pg_status pg_frechet_stats_init(pg_frechet_stats *s, int64_t dim) {
  memset(s, 0, sizeof *s);
  if (dim < 1 || dim > (1 << 15))
    return pg_fail(PG_ERR_ARG, "frechet: the feature size must be in 1..%d, got %lld", 1 << 15,
                   (long long)dim);
  s->mean = calloc((size_t)dim, sizeof *s->mean);
  s->comoment = calloc((size_t)(dim * dim), sizeof *s->comoment);
  s->scratch = calloc((size_t)dim, sizeof *s->scratch);
  if (!s->mean || !s->comoment || !s->scratch) {
    pg_frechet_stats_free(s);
    return pg_fail(PG_ERR_MEMORY, "frechet: out of memory for statistics of %lld features", (long long)dim);
  }
  s->dim = dim;
  return PG_OK;
}

void pg_frechet_stats_free(pg_frechet_stats *s) {
  free(s->mean);
  free(s->comoment);
  free(s->scratch);
  memset(s, 0, sizeof *s);
}

/* Folds nb vectors of mean mb (overwritten) into s, whose comoment already
 * holds theirs about mb: the cross term delta delta^T na nb / n' and the
 * new mean, delta = mb - mean. */
static void combine(pg_frechet_stats *s, int64_t n, double *mb) {
  const int64_t d = s->dim;
  const double na = (double)s->n, nb = (double)n, nn = na + nb, w = na * nb / nn;
  for (int64_t j = 0; j < d; j++) mb[j] -= s->mean[j];
  for (int64_t j = 0; j < d; j++)
    for (int64_t k = j; k < d; k++) s->comoment[j * d + k] += mb[j] * mb[k] * w;
  for (int64_t j = 0; j < d; j++) s->mean[j] += mb[j] * nb / nn;
  s->n += n;
}

/* Chan, Golub and LeVeque (1979): the batch's own mean mb and co-moment Cb,
 * then mean += (mb - mean) nb / n' and C += Cb + delta delta^T na nb / n'. */
pg_status pg_frechet_stats_add(pg_frechet_stats *s, const float *x, int64_t n) {
  const int64_t d = s->dim;
  if (n < 0) return pg_fail(PG_ERR_ARG, "frechet: cannot add %lld vectors", (long long)n);
  for (int64_t i = 0; i < n * d; i++)
    if (!isfinite(x[i]))
      return pg_fail(PG_ERR_ARG, "frechet: vector %lld of the batch holds a non-finite value (%g) at feature %lld",
                     (long long)(i / d), (double)x[i], (long long)(i % d));
  if (n == 0) return PG_OK;
  double *mb = s->scratch, *C = s->comoment;
  for (int64_t j = 0; j < d; j++) mb[j] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) mb[j] += x[i * d + j];
  for (int64_t j = 0; j < d; j++) mb[j] /= (double)n;
  for (int64_t i = 0; i < n; i++) {
    const float *row = x + i * d;
    for (int64_t j = 0; j < d; j++) {
      const double dj = row[j] - mb[j];
      double *Cj = C + j * d;
      for (int64_t k = j; k < d; k++) Cj[k] += dj * (row[k] - mb[k]);
    }
  }
  combine(s, n, mb);
  return PG_OK;
}

pg_status pg_frechet_stats_merge(pg_frechet_stats *s, const pg_frechet_stats *b) {
  if (s->dim != b->dim)
    return pg_fail(PG_ERR_ARG, "frechet: cannot merge statistics of %lld features into ones of %lld",
                   (long long)b->dim, (long long)s->dim);
  if (b->n == 0) return PG_OK;
  const int64_t d = s->dim;
  for (int64_t j = 0; j < d; j++)
    for (int64_t k = j; k < d; k++) s->comoment[j * d + k] += b->comoment[j * d + k];
  memcpy(s->scratch, b->mean, (size_t)d * sizeof *s->scratch);
  combine(s, b->n, s->scratch);
  return PG_OK;
}

pg_status pg_frechet_stats_cov(const pg_frechet_stats *s, double *cov) {
  if (s->n < 2)
    return pg_fail(PG_ERR_ARG, "frechet: a covariance needs at least 2 vectors, got %lld", (long long)s->n);
  const int64_t d = s->dim;
  const double scale = 1.0 / (double)(s->n - 1);
  for (int64_t j = 0; j < d; j++)
    for (int64_t k = j; k < d; k++) cov[j * d + k] = cov[k * d + j] = s->comoment[j * d + k] * scale;
  return PG_OK;
}

/* Eigenvalues w (ascending) of the symmetric a [d, d] (upper triangle read),
 * with a overwritten by the eigenvectors (columns, row-major) when vectors.
 * Clamps rounding residues below 0 to 0 (counting them in *clamped); an
 * eigenvalue clearly below 0 is an error naming `what`. */
static pg_status sym_eig(const char *what, int64_t d, double *a, double *w, bool vectors, int64_t *clamped) {
  lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, vectors ? 'V' : 'N', 'U', (lapack_int)d, a,
                                   (lapack_int)d, w);
  if (info < 0)
    return pg_fail(PG_ERR_ARG, "frechet: LAPACKE_dsyevd rejected argument %d for %s [%lld, %lld]", -(int)info,
                   what, (long long)d, (long long)d);
  if (info > 0)
    return pg_fail(PG_ERR_STATE, "frechet: the eigen-decomposition of %s [%lld, %lld] did not converge "
                                 "(LAPACKE_dsyevd info %d)", what, (long long)d, (long long)d, (int)info);
  const double big = fmax(fabs(w[0]), fabs(w[d - 1]));
  for (int64_t i = 0; i < d && w[i] < 0; i++) {
    if (w[i] < -EIG_NEG_TOL * big)
      return pg_fail(PG_ERR_ARG, "frechet: %s has the eigenvalue %g (largest %g): not positive semi-definite, "
                                 "so not a covariance", what, w[i], w[d - 1]);
    w[i] = 0;
    (*clamped)++;
  }
  return PG_OK;
}

/* c = a b for a, b [d, d] (row-major, full). */
static void matmul_d(int64_t d, const double *a, const double *b, double *c) {
  memset(c, 0, (size_t)(d * d) * sizeof *c);
  for (int64_t i = 0; i < d; i++)
    for (int64_t k = 0; k < d; k++) {
      const double aik = a[i * d + k];
      const double *bk = b + k * d;
      double *ci = c + i * d;
      for (int64_t j = 0; j < d; j++) ci[j] += aik * bk[j];
    }
}

static pg_status check_finite(const char *what, const double *v, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i])) return pg_fail(PG_ERR_ARG, "frechet: %s[%lld] is %g", what, (long long)i, v[i]);
  return PG_OK;
}

pg_status pg_frechet_distance(int64_t d, const double *mu1, const double *cov1, const double *mu2,
                              const double *cov2, pg_frechet_result *out) {
  memset(out, 0, sizeof *out);
  /* three [d, d] products must stay within LAPACK's int and our memory */
  if (d < 1 || d > (1 << 15))
    return pg_fail(PG_ERR_ARG, "frechet: the feature size must be in 1..%d, got %lld", 1 << 15, (long long)d);
  pg_status st = check_finite("mu1", mu1, d);
  st = st ? st : check_finite("mu2", mu2, d);
  st = st ? st : check_finite("cov1", cov1, d * d);
  st = st ? st : check_finite("cov2", cov2, d * d);
  if (st) return st;
  const size_t dd = (size_t)(d * d);
  double *v = malloc(dd * sizeof *v), *s2 = malloc(dd * sizeof *s2), *root = malloc(dd * sizeof *root);
  double *tmp = malloc(dd * sizeof *tmp), *w = malloc((size_t)d * sizeof *w);
  if (!v || !s2 || !root || !tmp || !w) {
    st = pg_fail(PG_ERR_MEMORY, "frechet: out of memory for [%lld, %lld] matrices", (long long)d, (long long)d);
    goto done;
  }
  double mean_term = 0, trace = 0;
  for (int64_t j = 0; j < d; j++) {
    mean_term += (mu1[j] - mu2[j]) * (mu1[j] - mu2[j]);
    trace += cov1[j * d + j] + cov2[j * d + j];
  }
  /* S1 = V diag(l) V^T, S1^{1/2} = V diag(sqrt l) V^T */
  memcpy(v, cov1, dd * sizeof *v);
  if ((st = sym_eig("cov1", d, v, w, true, &out->clamped))) goto done;
  for (int64_t k = 0; k < d; k++) w[k] = sqrt(w[k]);
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i; j < d; j++) {
      double acc = 0;
      for (int64_t k = 0; k < d; k++) acc += v[i * d + k] * w[k] * v[j * d + k];
      root[i * d + j] = root[j * d + i] = acc;
    }
  /* M = S1^{1/2} S2 S1^{1/2}, symmetric up to rounding: its upper triangle
   * is read (after averaging with the lower one) */
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i; j < d; j++) s2[i * d + j] = s2[j * d + i] = cov2[i * d + j];
  matmul_d(d, root, s2, tmp);
  matmul_d(d, tmp, root, v);
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i + 1; j < d; j++) v[i * d + j] = 0.5 * (v[i * d + j] + v[j * d + i]);
  if ((st = sym_eig("S1^1/2 S2 S1^1/2", d, v, w, false, &out->clamped))) goto done;
  double tr_sqrt = 0;
  for (int64_t i = 0; i < d; i++) tr_sqrt += sqrt(w[i]);
  out->mean_term = mean_term;
  out->cov_term = fmax(trace - 2 * tr_sqrt, 0.0);
  out->distance = out->mean_term + out->cov_term;
done:
  free(v);
  free(s2);
  free(root);
  free(tmp);
  free(w);
  return st;
}

pg_status pg_frechet_stats_distance(const pg_frechet_stats *a, const pg_frechet_stats *b,
                                    pg_frechet_result *out) {
  memset(out, 0, sizeof *out);
  if (a->dim != b->dim)
    return pg_fail(PG_ERR_ARG, "frechet: the two sets have different feature sizes, %lld and %lld",
                   (long long)a->dim, (long long)b->dim);
  if (a->n < 2 || b->n < 2)
    return pg_fail(PG_ERR_ARG, "frechet: each set needs at least 2 vectors for a covariance, got %lld and %lld",
                   (long long)a->n, (long long)b->n);
  const size_t dd = (size_t)(a->dim * a->dim);
  double *c1 = malloc(dd * sizeof *c1), *c2 = malloc(dd * sizeof *c2);
  pg_status st = !c1 || !c2 ? pg_fail(PG_ERR_MEMORY, "frechet: out of memory for two [%lld, %lld] covariances",
                                       (long long)a->dim, (long long)a->dim)
                            : PG_OK;
  st = st ? st : pg_frechet_stats_cov(a, c1);
  st = st ? st : pg_frechet_stats_cov(b, c2);
  st = st ? st : pg_frechet_distance(a->dim, a->mean, c1, b->mean, c2, out);
  free(c1);
  free(c2);
  return st;
}

typedef struct {
  pg_vit *m;
  int64_t parts;
  pg_frechet_stats *stats;
  float *grouped; /* [batch, hidden] */
} features_job;

/* Sample first + i goes to part (first + i) % parts. */
static pg_status features_batch(pg_ctx *ctx, pg_tensor *x, int64_t first, void *self) {
  features_job *job = self;
  const int64_t h = job->m->cfg.hidden, b = x->shape[0];
  pg_tensor *f = pg_vit_features(ctx, job->m, x);
  if (!f) return pg_last_status();
  pg_status st = PG_OK;
  for (int64_t k = 0; k < job->parts && !st; k++) {
    int64_t rows = 0;
    for (int64_t i = 0; i < b; i++)
      if ((first + i) % job->parts == k) memcpy(job->grouped + rows++ * h, f->data + i * h, (size_t)h * sizeof(float));
    st = pg_frechet_stats_add(&job->stats[k], job->grouped, rows);
  }
  return st;
}

pg_status pg_frechet_add_vit(pg_ctx *ctx, pg_vit *m, const float *x, int64_t n, int64_t batch,
                             int64_t parts, pg_frechet_stats *stats) {
  const pg_vit_config *c = &m->cfg;
  if (batch < 1) return pg_fail(PG_ERR_ARG, "frechet: batch must be >= 1, got %lld", (long long)batch);
  if (parts < 1) return pg_fail(PG_ERR_ARG, "frechet: parts must be >= 1, got %lld", (long long)parts);
  for (int64_t k = 0; k < parts; k++)
    if (stats[k].dim != c->hidden)
      return pg_fail(PG_ERR_ARG, "frechet: statistics %lld hold %lld features, the classifier gives %lld",
                     (long long)k, (long long)stats[k].dim, (long long)c->hidden);
  /* a batch's features regrouped part by part */
  features_job job = {.m = m, .parts = parts, .stats = stats,
                      .grouped = malloc((size_t)(batch * c->hidden) * sizeof(float))};
  if (!job.grouped)
    return pg_fail(PG_ERR_MEMORY, "frechet: out of memory for a batch of %lld features", (long long)batch);
  pg_status st = pg_eval_batches(ctx, x, n, 3, (int64_t[]){c->height, c->width, c->in_channels}, batch, "frechet",
                                 features_batch, &job);
  free(job.grouped);
  return st;
}

pg_status pg_frechet_add_vit_file(pg_ctx *ctx, pg_vit *m, const pg_vit_data_info *trained, const char *path,
                                  int64_t batch, int64_t parts, pg_frechet_stats *stats, int64_t *count) {
  *count = 0;
  const pg_vit_config *c = &m->cfg;
  hid_t f = pg_h5_open(path, false);
  if (f < 0) return pg_last_status();
  const bool is_samples = pg_h5_exists(f, "samples"), is_latents = pg_h5_exists(f, "latents");
  pg_tensor *t = NULL;
  pg_status st = is_samples ? pg_latents_read_tensor(f, "samples", path, &t) : PG_OK;
  H5Fclose(f);
  if (st) return st;
  if (!is_samples && !is_latents)
    return pg_fail(PG_ERR_FORMAT, "%s has neither 'samples' (patchgrad sample's grid.h5) nor 'latents' "
                                  "(a latent dataset)", path);
  pg_latents *ds = NULL;
  const float *x = NULL;
  int64_t n = 0;
  if (is_samples) {
    if (t->ndim != 4 || t->shape[1] != c->height || t->shape[2] != c->width || t->shape[3] != c->in_channels)
      st = pg_fail(PG_ERR_ARG, "%s: 'samples' has shape %s, the classifier takes [N, %lld, %lld, %lld]", path,
                   pg_shape_of(t), (long long)c->height, (long long)c->width, (long long)c->in_channels);
    for (int64_t i = 0; !st && i < t->numel; i++)
      if (!isfinite(t->data[i]))
        st = pg_fail(PG_ERR_ARG, "%s: sample %lld holds a non-finite value (%g)", path,
                     (long long)(i / (t->numel / t->shape[0])), (double)t->data[i]);
    x = t->data;
    n = st ? 0 : t->shape[0];
  } else {
    /* opening checks the shape's rank and that every value is finite */
    if (!(ds = pg_latents_load(path))) return pg_last_status();
    const pg_latents_info *in = &ds->info;
    if (in->height != c->height || in->width != c->width || in->channels != c->in_channels)
      st = pg_fail(PG_ERR_ARG, "%s holds [%lld, %lld, %lld] latents, the classifier takes [%lld, %lld, %lld]",
                   path, (long long)in->height, (long long)in->width, (long long)in->channels,
                   (long long)c->height, (long long)c->width, (long long)c->in_channels);
    if (!st && trained) st = pg_vit_check_data(trained, in, path);
    x = ds->all;
    n = in->n;
  }
  if (!st) st = pg_frechet_add_vit(ctx, m, x, n, batch, parts, stats);
  if (!st) *count = n;
  pg_tensor_free(t);
  pg_latents_close(ds);
  return st;
}
