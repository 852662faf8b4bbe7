#include "patchgrad/autograd/op.h"

#include <string.h>

bool pg_needs_grad(const pg_ctx *ctx, int n_in, pg_tensor *const *in) {
  if (!ctx->grad_enabled) return false;
  for (int i = 0; i < n_in; i++)
    if (in[i] && in[i]->requires_grad) return true;
  return false;
}

pg_node *pg_tape_record(pg_ctx *ctx, const char *op, pg_backward_fn backward,
                        pg_tensor *out, int n_in, pg_tensor *const *in) {
  if (!pg_needs_grad(ctx, n_in, in)) return NULL;
  pg_node *node = pg_scratch(ctx, sizeof *node);
  pg_tensor **inputs = node ? pg_scratch(ctx, (size_t)n_in * sizeof *inputs) : NULL;
  if (!inputs) return NULL;
  memset(node, 0, sizeof *node);
  memcpy(inputs, in, (size_t)n_in * sizeof *inputs);
  node->op = op;
  node->backward = backward;
  node->out = out;
  node->in = inputs;
  node->n_in = n_in;
  node->prev = ctx->tape;
  ctx->tape = node;
  ctx->tape_len++;
  out->requires_grad = true;
  out->node = node;
  return node;
}

void *pg_node_save(pg_ctx *ctx, pg_node *node, const void *state, size_t bytes) {
  if (!node) return NULL;
  void *dst = bytes <= sizeof node->saved_inline ? node->saved_inline : pg_scratch(ctx, bytes);
  if (!dst) return NULL;
  memcpy(dst, state, bytes);
  node->saved = dst;
  return dst;
}

void *pg_scratch(pg_ctx *ctx, size_t bytes) {
  void *p = pg_arena_alloc(&ctx->arena, bytes);
  if (!p) ctx->tape_broken = true; /* pg_backward reports it */
  return p;
}

/* Recycled gradient buffers. An op's output needs its gradient only until
 * the op's backward has passed it on (only leaves keep theirs), so its arena
 * memory then goes on a free list that later gradients of the same size
 * take from: backward needs memory for its few live gradients instead of
 * one buffer per activation. Exact sizes only (a transformer's gradients
 * come in a few repeated shapes), so a buffer never shrinks. The same steps
 * take and give back in the same order every time: no malloc after the
 * first step. */
struct pg_grad_block {
  float *data;
  size_t bytes;
  pg_grad_block *next;
};

static float *take_free_grad(pg_ctx *ctx, size_t bytes) {
  for (pg_grad_block **b = &ctx->free_grads; *b; b = &(*b)->next)
    if ((*b)->bytes == bytes) {
      pg_grad_block *blk = *b;
      *b = blk->next;
      blk->next = ctx->spare_blocks;
      ctx->spare_blocks = blk;
      return blk->data;
    }
  return NULL;
}

static void give_back_grad(pg_ctx *ctx, float *data, size_t bytes) {
  pg_grad_block *blk = ctx->spare_blocks;
  if (blk) ctx->spare_blocks = blk->next;
  else blk = pg_arena_alloc(&ctx->arena, sizeof *blk);
  if (!blk) return; /* then this buffer is simply not reused */
  *blk = (pg_grad_block){data, bytes, ctx->free_grads};
  ctx->free_grads = blk;
}

/* After n's backward: its output's gradient is dead, unless an input adopted
 * the very buffer (pg_grad_adopt). */
static void release_out_grad(pg_ctx *ctx, pg_node *n) {
  float *g = n->out->grad;
  n->out->grad = NULL;
  if (!g || n->out->heap) return;
  for (int i = 0; i < n->n_in; i++)
    if (n->in[i] && n->in[i]->grad == g) return;
  give_back_grad(ctx, g, (size_t)n->out->numel * sizeof(float));
}

float *pg_grad_dest(pg_ctx *ctx, pg_tensor *t, bool *fresh) {
  *fresh = false;
  if (!t || !t->requires_grad) return NULL;
  if (!t->grad) {
    size_t bytes = (size_t)t->numel * sizeof(float);
    t->grad = take_free_grad(ctx, bytes);
    if (!t->grad) t->grad = pg_scratch(ctx, bytes);
    *fresh = t->grad != NULL;
  }
  return t->grad;
}

bool pg_grad_adoptable(const pg_tensor *t) {
  return t && t->requires_grad && !t->grad && !t->heap;
}

bool pg_grad_adopt(pg_tensor *t, float *grad) {
  if (!pg_grad_adoptable(t)) return false;
  t->grad = grad;
  return true;
}

float *pg_grad_accum(pg_ctx *ctx, pg_tensor *t) {
  bool fresh;
  float *g = pg_grad_dest(ctx, t, &fresh);
  if (fresh) memset(g, 0, (size_t)t->numel * sizeof(float));
  return g;
}

pg_status pg_backward_with(pg_ctx *ctx, pg_tensor *t, const float *grad_out) {
  return pg_backward_hooked(ctx, t, grad_out, NULL, NULL);
}

pg_status pg_backward_hooked(pg_ctx *ctx, pg_tensor *t, const float *grad_out, pg_backward_hook after,
                             void *self) {
  if (!t) return pg_fail(PG_ERR_ARG, "pg_backward: the tensor is NULL (an earlier op failed: %s)", pg_last_error());
  if (!grad_out)
    return pg_fail(PG_ERR_ARG, "pg_backward_with: grad_out is NULL (it needs the %lld values of the gradient of the tensor %s)",
                   (long long)t->numel, pg_shape_of(t));
  if (ctx->tape_broken)
    return pg_fail(PG_ERR_MEMORY, "pg_backward: the tape is incomplete (the arena ran out of memory during forward)");
  if (!t->requires_grad)
    return pg_fail(PG_ERR_STATE, "pg_backward: the tensor %s does not require a gradient (no input needed one, or grad mode was off)", pg_shape_of(t));
  float *g = pg_grad_accum(ctx, t);
  if (!g) return pg_fail(PG_ERR_MEMORY, "pg_backward: out of arena memory");
  for (int64_t i = 0; i < t->numel; i++) g[i] += grad_out[i];
  /* Records after t's own cannot lead to t, so start at t's record. Records
   * whose output received no gradient are skipped. */
  for (pg_node *n = t->node; n; n = n->prev) {
    if (n->out->grad) {
      n->backward(ctx, n);
      /* As in PyTorch, an op's output keeps no gradient once it has been
       * passed on (only leaves do), so a second pg_backward in the same step
       * adds its own contributions and never replays the first one's. */
      release_out_grad(ctx, n);
      if (ctx->tape_broken)
        return pg_fail(PG_ERR_MEMORY, "pg_backward: out of arena memory in the backward of '%s'", n->op);
    }
    if (after) after(self, n);
  }
  return PG_OK;
}

pg_status pg_backward(pg_ctx *ctx, pg_tensor *t) {
  if (t && t->numel != 1)
    return pg_fail(PG_ERR_ARG, "pg_backward: needs a scalar, got a tensor of shape %s (use pg_backward_with)", pg_shape_of(t));
  const float one = 1.0f;
  return pg_backward_with(ctx, t, &one);
}
