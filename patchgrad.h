/* patchgrad: one include for the whole public API.
 *
 *   #include <patchgrad/patchgrad.h>     cc prog.c $(pkg-config --cflags --libs patchgrad)
 *
 * Floors, each using only those above it in this list (the build enforces
 * it; docs/architecture.md draws them):
 *   autograd  autograd/ tensors, the step arena, the tape, ops (the Gaussian
 *                     latent's in gaussian.h), gradient checking
 *   layers    layers/ Linear, Patchify/Unpatchify, position embeddings, LayerNorm,
 *                     attention, MLP, the pre-norm transformer block, embeddings,
 *                     adaLN pieces
 *   optim     optim/  SGD, Adam, AdamW, param groups, clipping, schedules, EMA,
 *                     parameter counts per module
 *   io        io/     HDF5 helpers, latent files and their loader, checkpoints,
 *                     case files
 *   io        render/ PNG images and loss plots
 *   io        data/   dataset makers: IDX, Fashion-MNIST, synthetic shapes, folders
 *                     of images, the image <-> latent transform
 *   models    train/  the training loop every model runs through (callbacks)
 *   models    dit/    the DiT denoiser, diffusion objective, samplers, trainer,
 *                     sample sheet
 *   models    vit/    the ViT classifier, its training, the sample score, the
 *                     Frechet distance of its features
 *   models    vae/    the patch VAE, its checkpoints, datasets encoded and decoded,
 *                     its training
 */
#ifndef PATCHGRAD_H
#define PATCHGRAD_H

#include "patchgrad/autograd/api.h"
#include "patchgrad/autograd/arena.h"
#include "patchgrad/autograd/autocast.h"
#include "patchgrad/autograd/batches.h"
#include "patchgrad/autograd/blas.h"
#include "patchgrad/autograd/error.h"
#include "patchgrad/autograd/gaussian.h"
#include "patchgrad/autograd/gemm_engine.h"
#include "patchgrad/autograd/gradcheck.h"
#include "patchgrad/autograd/op.h"
#include "patchgrad/autograd/ops.h"
#include "patchgrad/autograd/parallel.h"
#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/rng.h"
#include "patchgrad/autograd/runtime.h"
#include "patchgrad/autograd/tape.h"
#include "patchgrad/autograd/tensor.h"

#include "patchgrad/layers/attention.h"
#include "patchgrad/layers/embedding_layer.h"
#include "patchgrad/layers/layernorm.h"
#include "patchgrad/layers/linear.h"
#include "patchgrad/layers/mlp.h"
#include "patchgrad/layers/modulate.h"
#include "patchgrad/layers/patch_geometry.h"
#include "patchgrad/layers/patchify.h"
#include "patchgrad/layers/pos_embed.h"
#include "patchgrad/layers/transformer_block.h"
#include "patchgrad/layers/unpatchify.h"

#include "patchgrad/optim/clip.h"
#include "patchgrad/optim/ema.h"
#include "patchgrad/optim/optimizer.h"
#include "patchgrad/optim/schedule.h"
#include "patchgrad/optim/summary.h"
#include "patchgrad/optim/update.h"

#include "patchgrad/dist/dist.h"
#include "patchgrad/dist/reducer.h"
#include "patchgrad/dist/zero.h"

#include "patchgrad/io/atomic.h"
#include "patchgrad/io/casefile.h"
#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/kv.h"
#include "patchgrad/io/latents.h"
#include "patchgrad/io/limits.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/io/optim_kv.h"

#include "patchgrad/render/plot.h"
#include "patchgrad/render/png_image.h"

#include "patchgrad/data/fashion_mnist.h"
#include "patchgrad/data/idx.h"
#include "patchgrad/data/image_folder.h"
#include "patchgrad/data/latent_image.h"
#include "patchgrad/data/synthetic.h"

#include "patchgrad/train/run.h"

#include "patchgrad/dit/diffusion.h"
#include "patchgrad/dit/dit.h"
#include "patchgrad/dit/sample_sheet.h"
#include "patchgrad/dit/trainer.h"

#include "patchgrad/vit/classify.h"
#include "patchgrad/vit/frechet.h"
#include "patchgrad/vit/score.h"
#include "patchgrad/vit/vit.h"

#include "patchgrad/vae/autoencode.h"
#include "patchgrad/vae/train.h"
#include "patchgrad/vae/vae.h"

#endif
