/* A patch VAE: a KL-regularised autoencoder (Kingma & Welling 2014; the
 * first stage of latent diffusion, Rombach et al. 2022) built from the
 * library's layers, the transformer way: the encoder is a ViT without class
 * token, the decoder a DiT without conditioning. docs/vae.md has the whole
 * definition. Parameter names are those of a PyTorch module laid out the
 * same way (tools/vae_torch.py is one):
 *
 *   x [B, H, W, C] (channels last: the images of a pixel-space latent file,
 *                   in its normalised units; pg_vae_images_of makes them)
 * encoder:
 *   encoder.patch_embed.proj  Patchify(C -> h, patch p, stride p)  -> [B, T, h], T = (H/p)(W/p)
 *   encoder.pos_embed         [1, T, h] fixed 2-D sin-cos (a buffer) added
 *   encoder.blocks.{i}        pre-norm: x + attn(norm1(x)), x + mlp(norm2(x))
 *   encoder.norm              LayerNorm
 *   encoder.moments           Linear(h -> 2 C_lat): channels [0, C_lat) are the
 *                             mean, [C_lat, 2 C_lat) the log-variance
 *                             -> mean, logvar [B, H/p, W/p, C_lat]
 * latent: z = mean + exp(0.5 logvar) eps (autograd/gaussian.h)
 * decoder:
 *   decoder.latent_embed      Linear(C_lat -> h) per latent pixel -> [B, T, h]
 *   decoder.pos_embed         [1, T, h] fixed 2-D sin-cos (a buffer) added
 *   decoder.blocks.{i}        as the encoder's
 *   decoder.norm              LayerNorm
 *   decoder.unpatchify        Unpatchify(h -> C, patch p)          -> [B, H, W, C]
 *
 * Blocks: layers/transformer_block.h (multi-head attention attn.qkv and
 * attn.proj, MLP fc1 -> GELU (tanh form) -> fc2), LayerNorms eps 1e-6
 * (timm's ViT). Initialisation: Patchify
 * as PyTorch's Conv default; block Linears, moments and latent_embed
 * xavier_uniform with zero biases; Unpatchify as PyTorch's ConvTranspose
 * default; LayerNorms 1 and 0.
 *
 * Loss (pg_vae_loss): reconstruction + beta * KL, where reconstruction is
 * the MSE of recon against x, a mean over every pixel and channel of the
 * batch, and KL is pg_kl_normal's: summed over the latent elements of a
 * sample, averaged over the batch. */
#ifndef PG_VAE_H
#define PG_VAE_H

#include "patchgrad/autograd/api.h"

#include "patchgrad/autograd/params.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/layers/layernorm.h"
#include "patchgrad/layers/linear.h"
#include "patchgrad/layers/patchify.h"
#include "patchgrad/layers/transformer_block.h"
#include "patchgrad/layers/unpatchify.h"

#define PG_VAE_MAX_DEPTH 32

typedef struct {
  int64_t height, width;   /* image H, W (the patch size divides both) */
  int64_t in_channels;     /* image channels C (the output has them too) */
  int64_t patch_size;      /* p: the latent is H/p x W/p */
  int64_t latent_channels; /* C_lat */
  int64_t hidden;          /* h, divisible by heads and by 4 (2-D sin-cos table) */
  int64_t encoder_depth;   /* blocks of the encoder */
  int64_t decoder_depth;   /* blocks of the decoder */
  int64_t heads;
  int64_t mlp_ratio;       /* MLP width = mlp_ratio * h */
} pg_vae_config;

typedef struct {
  pg_vae_config cfg;
  pg_params params; /* owns every tensor below */
  pg_patchify patch_embed;
  pg_tensor *enc_pos_embed; /* [1, T, h] buffer */
  pg_transformer_block enc_blocks[PG_VAE_MAX_DEPTH];
  pg_layernorm enc_norm;
  pg_linear moments;
  pg_linear latent_embed;
  pg_tensor *dec_pos_embed; /* [1, T, h] buffer */
  pg_transformer_block dec_blocks[PG_VAE_MAX_DEPTH];
  pg_layernorm dec_norm;
  pg_unpatchify unpatchify;
} pg_vae;

/* Checks a config; the message names the first bad field and its value. */
PG_API pg_status pg_vae_config_check(const pg_vae_config *cfg);
/* Builds the model, initialised from rng. On error m holds nothing. */
PG_API pg_status pg_vae_init(pg_vae *m, const pg_vae_config *cfg, pg_rng *rng);
PG_API void pg_vae_free(pg_vae *m);

/* The latent's shape for one image: [H/p, W/p, C_lat]. */
PG_API void pg_vae_latent_shape(const pg_vae_config *cfg, int64_t shape[3]);

/* Encoder: x [B, H, W, C] -> mean [B, H/p, W/p, C_lat] (returned) and
 * *logvar (same shape). NULL with a message on a bad input shape. */
PG_API pg_tensor *pg_vae_encode(pg_ctx *ctx, pg_vae *m, pg_tensor *x, pg_tensor **logvar);
/* Decoder: z [B, H/p, W/p, C_lat] -> [B, H, W, C]. */
PG_API pg_tensor *pg_vae_decode(pg_ctx *ctx, pg_vae *m, pg_tensor *z);

/* One pass through the whole model. */
typedef struct {
  pg_tensor *mean, *logvar; /* [B, H/p, W/p, C_lat] */
  pg_tensor *eps;           /* the draw used, same shape */
  pg_tensor *z;             /* mean + exp(0.5 logvar) eps */
  pg_tensor *recon;         /* [B, H, W, C] */
} pg_vae_output;

/* Encodes x, draws z with eps (a tensor of the latent's shape, e.g. from
 * the PyTorch twin or zeros for z = mean) or, when eps is NULL, with a fresh
 * N(0, I) draw from rng (kept in out->eps), and decodes z. Records on ctx's
 * tape; every tensor of out lives in ctx's arena. */
PG_API pg_status pg_vae_forward(pg_ctx *ctx, pg_vae *m, pg_tensor *x, pg_tensor *eps, pg_rng *rng,
                                pg_vae_output *out);

/* The training loss of one forward (x the batch it encoded):
 *   loss = mse(recon, x) + beta * KL(mean, logvar)
 * (mse a mean over every element; KL summed per sample, mean over the
 * batch: gaussian.h). *rec and *kl (each may be NULL) receive the two terms
 * as 0-d tensors on the tape. Returns the 0-d loss, NULL on error. */
PG_API pg_tensor *pg_vae_loss(pg_ctx *ctx, const pg_vae_output *out, pg_tensor *x, float beta,
                              pg_tensor **rec, pg_tensor **kl);

/* The config's settings, one row each (io/kv.h): the checkpoint's integer
 * keys in this order, the attributes of a `vae` case of `patchgrad check`,
 * and the model flags of `patchgrad vae train` (the image shape comes from
 * the data and has no flag). */
#define PG_VAE_CONFIG_FIELDS 10
PG_API extern const pg_config_field pg_vae_config_fields[];

/* Config <-> a checkpoint's key/value list: "model" = "vae" (which marks
 * it) and the integer settings. */
PG_API pg_status pg_vae_config_to_kv(const pg_vae_config *c, pg_kv *kv);
PG_API pg_status pg_vae_config_from_kv(const pg_kv *kv, pg_vae_config *c);

#endif
