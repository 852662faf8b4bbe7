/* `patchgrad check` handlers of the patch VAE (vae/, tests/data/vae_cases.h5):
 *   reparameterize                 mean, logvar, eps (one shape);
 *                                  out = mean + exp(0.5 logvar) eps; grad/mean, grad/logvar, grad/eps
 *   kl_normal                      mean, logvar [B, ...]; out the 0-d
 *                                  -0.5 * sum(1 + logvar - mean^2 - exp(logvar)) / B
 *   vae       the settings of pg_vae_config_fields (vae/vae.h): height, width,
 *             in_channels, patch_size, latent_channels, hidden, encoder_depth,
 *             decoder_depth, heads (1), mlp_ratio (4); and beta (float, default 1)
 *                                  x [B, H, W, C], eps [B, H/p, W/p, C_lat],
 *                                  params/<every name of vae/vae.h>; `out` the 0-d
 *                                  loss mse(recon, x) + beta * KL, and the arrays
 *                                  recon, mean, logvar, z when present; grad/x,
 *                                  grad/eps and grad/params/<name> */
#include "check_model.h"
#include "check_ops.h"
#include "patchgrad/autograd/gaussian.h"
#include "patchgrad/vae/vae.h"

void pg_check_reparameterize(pg_case *c) {
  pg_tensor *mean = pg_case_array(c, "mean");
  pg_tensor *logvar = pg_case_array(c, "logvar");
  pg_tensor *eps = pg_case_array(c, "eps");
  if (c->error) return;
  const char *names[] = {"mean", "logvar", "eps"};
  pg_tensor *inputs[] = {mean, logvar, eps};
  pg_case_check_op(c, pg_reparameterize_eps(c->ctx, mean, logvar, eps), 3, names, inputs);
}

void pg_check_kl_normal(pg_case *c) {
  pg_tensor *mean = pg_case_array(c, "mean");
  pg_tensor *logvar = pg_case_array(c, "logvar");
  if (c->error) return;
  const char *names[] = {"mean", "logvar"};
  pg_tensor *inputs[] = {mean, logvar};
  pg_case_check_op(c, pg_kl_normal(c->ctx, mean, logvar), 2, names, inputs);
}

void pg_check_vae(pg_case *c) {
  pg_vae_config cfg = {0};
  pg_case_read_fields(c, PG_VAE_CONFIG_FIELDS, pg_vae_config_fields, &cfg);
  const double beta = pg_case_attr_double(c, "beta", 1.0);
  if (c->error) return;
  pg_vae m;
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  if (pg_vae_init(&m, &cfg, &rng)) {
    pg_case_fail(c, "bad config: %s", pg_last_error());
    return;
  }
  pg_tensor *x = pg_case_array(c, "x");
  pg_tensor *eps = pg_case_array(c, "eps");
  /* every parameter comes from the file; the sin-cos tables are compared */
  pg_case_load_params(c, &m.params);
  if (!c->error) {
    pg_vae_output o;
    pg_tensor *loss = NULL;
    if (!pg_vae_forward(c->ctx, &m, x, eps, NULL, &o)) {
      loss = pg_vae_loss(c->ctx, &o, x, (float)beta, NULL, NULL);
      pg_case_compare(c, "recon", o.recon);
      pg_case_compare(c, "mean", o.mean);
      pg_case_compare(c, "logvar", o.logvar);
      pg_case_compare(c, "z", o.z);
    }
    const char *names[] = {"x", "eps"};
    pg_tensor *inputs[] = {x, eps};
    pg_case_check_op(c, loss, 2, names, inputs);
    pg_case_compare_param_grads(c, &m.params);
  }
  pg_vae_free(&m);
}
