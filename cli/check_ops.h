/* Op handlers of `patchgrad check`: one function per op of casefile.md. A
 * handler reads its case's settings and arrays through pg_case, runs the op
 * on the tape, and ends with pg_case_check_op (or its own comparisons).
 * To add an op: write the handler in the check_*.c file of its family,
 * declare it here, and add one line to the table in cmd_check.c. */
#ifndef PG_CHECK_OPS_H
#define PG_CHECK_OPS_H

#include "patchgrad/io/casefile.h"

typedef void (*pg_case_handler)(pg_case *c);

/* check_patch.c */
void pg_check_patchify(pg_case *c);
void pg_check_unpatchify(pg_case *c);

/* check_optim.c */
void pg_check_sgd(pg_case *c);
void pg_check_adam(pg_case *c);
void pg_check_adamw(pg_case *c);

/* check_nn.c */
void pg_check_linear(pg_case *c);
void pg_check_layernorm(pg_case *c);
void pg_check_attention(pg_case *c);
void pg_check_attention_head(pg_case *c);

/* check_dit.c */
void pg_check_dit(pg_case *c);

/* check_basic.c: the generic ops of autograd/ops.h */
void pg_check_gelu(pg_case *c);
void pg_check_silu(pg_case *c);
void pg_check_softmax(pg_case *c);
void pg_check_mse(pg_case *c);
void pg_check_add(pg_case *c);
void pg_check_sub(pg_case *c);
void pg_check_mul(pg_case *c);
void pg_check_div(pg_case *c);
void pg_check_matmul(pg_case *c);
void pg_check_sum(pg_case *c);
void pg_check_mean(pg_case *c);
void pg_check_embedding(pg_case *c);

/* check_vit.c: the ViT example's loss and model */
void pg_check_cross_entropy(pg_case *c);
void pg_check_vit(pg_case *c);

/* check_vae.c: the patch VAE's Gaussian latent ops and the whole VAE */
void pg_check_reparameterize(pg_case *c);
void pg_check_kl_normal(pg_case *c);
void pg_check_vae(pg_case *c);

#endif
