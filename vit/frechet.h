/* The Frechet distance between two sets of feature vectors, each summarised
 * by a Gaussian (its mean and covariance): the formula of the Frechet
 * Inception Distance (FID; Heusel et al. 2017, "GANs Trained by a Two
 * Time-Scale Update Rule Converge to a Local Nash Equilibrium", eq. 6, after
 * Dowson and Landau 1982 for the Frechet distance between two Gaussians):
 *
 *   d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})
 *
 * FID feeds Inception-v3's pool features to it; patchgrad feeds the
 * penultimate features of its own ViT classifier (pg_vit_features: the
 * normed class token the head reads). The number is therefore comparable
 * only between runs of this project scored by the same classifier
 * checkpoint, never with published FIDs (docs/frechet.md).
 *
 * Everything is in double. The statistics are accumulated batch by batch
 * (Chan, Golub and LeVeque's pairwise update of the mean and the co-moment,
 * so no pass over all the samples is kept); the covariance is the unbiased
 * one (divided by n - 1, as numpy.cov, which the reference FID code uses).
 * The matrix square roots come from LAPACK's symmetric eigen-decomposition
 * (LAPACKE_dsyevd): S1^{1/2} = V diag(sqrt(l)) V^T from S1 = V diag(l) V^T,
 * and Tr(M^{1/2}) = sum sqrt(eigenvalues of M) for the symmetric
 * M = S1^{1/2} S2 S1^{1/2}. Both matrices are positive semi-definite in exact
 * arithmetic; rounding leaves eigenvalues at or near 0 slightly negative, and
 * those are clamped to 0 (counted in pg_frechet_result.clamped). An
 * eigenvalue below -1e-8 times the largest one is not rounding: the input is
 * not a covariance, and that is an error. */
#ifndef PG_FRECHET_H
#define PG_FRECHET_H

#include "patchgrad/autograd/api.h"

#include <stdint.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/vit/classify.h"
#include "patchgrad/vit/vit.h"

/* ---- statistics of a set of feature vectors ---- */
typedef struct {
  int64_t dim;       /* d, the feature size */
  int64_t n;         /* vectors added so far */
  double *mean;      /* [d] */
  double *comoment;  /* [d, d], upper triangle: sum of (x - mean)(x - mean)^T */
  double *scratch;   /* [d] */
} pg_frechet_stats;

/* Empty statistics of d-dimensional vectors (d >= 1). Free with
 * pg_frechet_stats_free (also after an error: it holds nothing then). */
PG_API pg_status pg_frechet_stats_init(pg_frechet_stats *s, int64_t dim);
PG_API void pg_frechet_stats_free(pg_frechet_stats *s);
/* Adds n vectors x [n, d] (row-major float32). A non-finite value is an
 * error naming the row and column, and leaves s unchanged. */
PG_API pg_status pg_frechet_stats_add(pg_frechet_stats *s, const float *x, int64_t n);
/* Adds the vectors summarised by b to s (the pairwise update; b is left as
 * it is): s then holds the statistics of both sets. Feature sizes must match. */
PG_API pg_status pg_frechet_stats_merge(pg_frechet_stats *s, const pg_frechet_stats *b);
/* The unbiased covariance [d, d] (both triangles) into cov: comoment / (n - 1).
 * Fewer than 2 vectors is an error. */
PG_API pg_status pg_frechet_stats_cov(const pg_frechet_stats *s, double *cov);

/* ---- the distance ---- */
typedef struct {
  double distance;  /* d^2 = mean_term + cov_term (FID reports this square) */
  double mean_term; /* |mu1 - mu2|^2 */
  double cov_term;  /* Tr(S1) + Tr(S2) - 2 Tr((S1^{1/2} S2 S1^{1/2})^{1/2}); >= 0
                       in exact arithmetic, so a rounding residue below 0 is set to 0 */
  int64_t clamped;  /* eigenvalues (of S1 and of S1^{1/2} S2 S1^{1/2}) below 0
                       by rounding, set to 0 */
} pg_frechet_result;

/* d^2 between N(mu1, cov1) and N(mu2, cov2): mu [d], cov [d, d] symmetric
 * positive semi-definite (only the upper triangle is read). Errors: d < 1
 * or too large for LAPACK's int, a non-finite input, an eigenvalue clearly
 * below 0 (not a covariance: names the matrix and the value), LAPACK's
 * failure to converge (its info code). */
PG_API pg_status pg_frechet_distance(int64_t dim, const double *mu1, const double *cov1,
                                     const double *mu2, const double *cov2, pg_frechet_result *out);
/* The same between two sets of statistics. Errors: feature sizes that
 * differ, fewer than 2 vectors on either side (no covariance). */
PG_API pg_status pg_frechet_stats_distance(const pg_frechet_stats *a, const pg_frechet_stats *b,
                                           pg_frechet_result *out);

/* ---- the ViT as the feature network ---- */

/* Adds the penultimate features (pg_vit_features, [hidden] each) of x
 * [n, H, W, C] to stats[i % parts] for sample i: parts 1 puts all in
 * stats[0]; parts 2 splits them into the even- and odd-numbered samples
 * (the real-vs-real floor of docs/frechet.md). Runs in batches of `batch`,
 * without gradients and in evaluation mode (ctx is reset before each batch).
 * Each stats[k] must have dim == m->cfg.hidden. */
PG_API pg_status pg_frechet_add_vit(pg_ctx *ctx, pg_vit *m, const float *x, int64_t n, int64_t batch,
                                    int64_t parts, pg_frechet_stats *stats);

/* Reads the images of an HDF5 file, `samples` (the grid.h5 of patchgrad
 * sample) or `latents` (a latent dataset, latents.h), and adds their
 * features as pg_frechet_add_vit does; *count receives how many there were.
 * With `trained` (may be NULL) a latent dataset's normalisation must be the
 * classifier's (pg_vit_check_data). Errors name the file: no such dataset,
 * a shape other than the classifier's input, a non-finite value. */
PG_API pg_status pg_frechet_add_vit_file(pg_ctx *ctx, pg_vit *m, const pg_vit_data_info *trained,
                                         const char *path, int64_t batch, int64_t parts,
                                         pg_frechet_stats *stats, int64_t *count);

#endif
