/* The two ops of a diagonal Gaussian latent, as a variational autoencoder
 * uses them (Kingma & Welling, "Auto-Encoding Variational Bayes", 2014):
 * the encoder gives mean and logvar = log sigma^2, both of one shape (any
 * rank, the batch first); the latent is drawn from N(mean, exp(logvar)) and
 * its divergence from the prior N(0, I) is the regulariser of the loss.
 * Forward and backward side by side in gaussian.c; tests/test_vae.c checks
 * both against finite differences and against PyTorch (tests/data/vae_cases.h5,
 * ops `reparameterize` and `kl_normal` of `patchgrad check`). */
#ifndef PG_GAUSSIAN_H
#define PG_GAUSSIAN_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/rng.h"
#include "patchgrad/autograd/tape.h"
#include "patchgrad/autograd/tensor.h"

/* The reparameterisation trick (the paper's section 2.4):
 *   z = mean + exp(0.5 * logvar) * eps
 * with eps ~ N(0, I) drawn from rng: mean->numel calls of pg_rng_normal, in
 * row-major order (the same draws as pg_normal(ctx, ..., 0, 1, rng)). eps is
 * kept in the step arena for backward:
 *   dmean = g,  dlogvar = g * 0.5 * exp(0.5 * logvar) * eps.
 * mean and logvar must have the same shape; z has it too. As diffusers'
 * DiagonalGaussianDistribution.sample() without its clamp of logvar to
 * [-30, 20]: beyond logvar ~ 177 exp(0.5 * logvar) is Inf in float32 (the
 * caller sees a non-finite z and loss). NULL with a message naming the op and
 * the shapes on bad arguments (rng NULL included). */
PG_API pg_tensor *pg_reparameterize(pg_ctx *ctx, pg_tensor *mean, pg_tensor *logvar, pg_rng *rng);

/* The same with eps given (a tensor of mean's shape), to replay a draw (the
 * PyTorch twin, case files, evaluation with eps = 0, i.e. z = mean). eps
 * receives a gradient too when it requires one: deps = g * exp(0.5 * logvar). */
PG_API pg_tensor *pg_reparameterize_eps(pg_ctx *ctx, pg_tensor *mean, pg_tensor *logvar,
                                        pg_tensor *eps);

/* KL(N(mean, exp(logvar)) || N(0, I)) per sample, summed over every latent
 * element of the sample and averaged over the batch (axis 0 of size B):
 *   KL = -0.5 / B * sum(1 + logvar - mean^2 - exp(logvar))
 * (the paper's appendix B). This is the reduction of latent-diffusion's
 * autoencoder loss (ldm's LPIPSWithDiscriminator: kl = posterior.kl(), a sum
 * over the latent axes, then torch.sum(kl) / batch). A 0-d scalar, summed in
 * double. Backward: dmean = g * mean / B, dlogvar = g * 0.5 * (exp(logvar) - 1) / B.
 * mean and logvar: the same shape, rank >= 1; B = 0 gives NaN (a mean over
 * nothing, as PyTorch). */
PG_API pg_tensor *pg_kl_normal(pg_ctx *ctx, pg_tensor *mean, pg_tensor *logvar);

#endif
