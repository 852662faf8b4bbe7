/* patchgrad: one include for the whole public API.
 *
 *   #include <patchgrad.h>        cc prog.c $(pkg-config --cflags --libs patchgrad)
 *
 * Floors, each using only those above it in this list:
 *   autograd  tensors, the step arena, the tape, ops, gradient checking
 *   layers    Linear, Patchify/Unpatchify, position embeddings, LayerNorm,
 *             attention, MLP, embeddings, adaLN pieces
 *   optim     SGD, Adam, AdamW, clipping, schedules, EMA
 *   io        HDF5 latent datasets, loader, checkpoints, case files, PNG
 *   dit       the DiT denoiser, diffusion objective, samplers, trainer */
#ifndef PATCHGRAD_H
#define PATCHGRAD_H

#include "blas.h"
#include "error.h"
#include "gradcheck.h"
#include "ops.h"
#include "params.h"
#include "rng.h"
#include "tape.h"
#include "tensor.h"

#include "attention.h"
#include "embedding_layer.h"
#include "layernorm.h"
#include "linear.h"
#include "mlp.h"
#include "modulate.h"
#include "patchify.h"
#include "pos_embed.h"
#include "unpatchify.h"

#include "clip.h"
#include "ema.h"
#include "optimizer.h"
#include "schedule.h"

#include "checkpoint.h"
#include "latents.h"
#include "loader.h"
#include "png_image.h"

#include "diffusion.h"
#include "dit.h"
#include "trainer.h"

#endif
