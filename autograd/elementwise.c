/* Elementwise ops: add, sub, mul, div with NumPy broadcasting, ops with a
 * scalar, and unary math. Forward and backward side by side.
 *
 * The binary ops share one path (binary_forward, grad_pass, grad_term): a
 * broadcasting plan (broadcast.h) runs a row kernel forward; backward, each
 * input's gradient is a kernel of the output gradient and the other operand,
 * summed over the axes along which that input was broadcast. */
#include <math.h>

#include "patchgrad/autograd/kernels.h"
#include "patchgrad/autograd/op_util.h"
#include "patchgrad/autograd/ops.h"

/* ---- Row kernels of the binary ops (x: a's element, y: b's) ---- */
PG_ROW_KERNEL(, pg_kernel_add, x + y)
PG_ROW_KERNEL(, pg_kernel_mul, x * y)
PG_ROW_KERNEL(static, kernel_sub, x - y)
PG_ROW_KERNEL(static, kernel_div, x / y)
PG_ROW_KERNEL(static, kernel_neg_mul, -(x * y))

/* ---- Shared machinery of the binary ops ---- */

static pg_tensor *binary_forward(pg_ctx *ctx, const char *op, pg_tensor *a, pg_tensor *b,
                                 pg_row_kernel kernel, pg_backward_fn backward) {
  if (!a || !b) return NULL;
  int nd;
  int64_t shape[PG_MAX_DIMS];
  int bad = pg_bcast_shape(a->ndim, a->shape, b->ndim, b->shape, &nd, shape);
  if (bad) {
    pg_fail(PG_ERR_ARG, "%s: a %s and b %s do not broadcast (axis %d: %lld vs %lld)", op,
            pg_shape_of(a), pg_shape_of(b), bad, (long long)a->shape[a->ndim + bad],
            (long long)b->shape[b->ndim + bad]);
    return NULL;
  }
  pg_tensor *out = pg_empty(ctx, nd, shape);
  if (!out) return NULL;
  pg_bcast plan;
  pg_bcast_plan(&plan, nd, shape, a->ndim, a->shape, b->ndim, b->shape);
  pg_bcast_apply(&plan, kernel, a->data, b->data, out->data, false);
  pg_tape_record(ctx, op, backward, out, 2, (pg_tensor *[]){a, b});
  return out;
}

/* Input `side` receives alpha * g, summed over the axes it was broadcast on. */
static void grad_pass(pg_ctx *ctx, pg_node *n, int side, float alpha) {
  pg_tensor *x = n->in[side], *out = n->out;
  bool fresh;
  float *dst = pg_grad_dest(ctx, x, &fresh);
  if (dst)
    pg_reduce_to(out->ndim, out->shape, out->grad, x->ndim, x->shape, alpha, dst, !fresh);
}

/* Input `side` receives kernel(g, other), summed over the axes it was
 * broadcast on; `other` (of shape other_ndim/other_shape) broadcasts to the
 * output's shape. */
static void grad_term(pg_ctx *ctx, pg_node *n, int side, pg_row_kernel kernel, const float *other,
                      int other_ndim, const int64_t *other_shape) {
  pg_tensor *x = n->in[side], *out = n->out;
  bool fresh;
  float *dst = pg_grad_dest(ctx, x, &fresh);
  if (!dst) return;
  pg_bcast plan;
  pg_bcast_plan(&plan, out->ndim, out->shape, out->ndim, out->shape, other_ndim, other_shape);
  if (x->numel == out->numel) { /* not broadcast: straight into the gradient */
    pg_bcast_apply(&plan, kernel, out->grad, other, dst, !fresh);
    return;
  }
  float *full = pg_scratch(ctx, (size_t)out->numel * sizeof *full);
  if (!full) return;
  pg_bcast_apply(&plan, kernel, out->grad, other, full, false);
  pg_reduce_to(out->ndim, out->shape, full, x->ndim, x->shape, 1.0f, dst, !fresh);
}

/* ---- add, sub, mul, div ---- */

static void add_backward(pg_ctx *ctx, pg_node *n) {
  grad_pass(ctx, n, 0, 1.0f);
  grad_pass(ctx, n, 1, 1.0f);
}

pg_tensor *pg_add(pg_ctx *ctx, pg_tensor *a, pg_tensor *b) {
  return binary_forward(ctx, "pg_add", a, b, pg_kernel_add, add_backward);
}

static void sub_backward(pg_ctx *ctx, pg_node *n) {
  grad_pass(ctx, n, 0, 1.0f);
  grad_pass(ctx, n, 1, -1.0f);
}

pg_tensor *pg_sub(pg_ctx *ctx, pg_tensor *a, pg_tensor *b) {
  return binary_forward(ctx, "pg_sub", a, b, kernel_sub, sub_backward);
}

/* d(a*b)/da = b, d(a*b)/db = a */
static void mul_backward(pg_ctx *ctx, pg_node *n) {
  pg_tensor *a = n->in[0], *b = n->in[1];
  if (a->requires_grad) grad_term(ctx, n, 0, pg_kernel_mul, b->data, b->ndim, b->shape);
  if (b->requires_grad) grad_term(ctx, n, 1, pg_kernel_mul, a->data, a->ndim, a->shape);
}

pg_tensor *pg_mul(pg_ctx *ctx, pg_tensor *a, pg_tensor *b) {
  return binary_forward(ctx, "pg_mul", a, b, pg_kernel_mul, mul_backward);
}

/* d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b */
static void div_backward(pg_ctx *ctx, pg_node *n) {
  pg_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
  if (a->requires_grad) grad_term(ctx, n, 0, kernel_div, b->data, b->ndim, b->shape);
  if (b->requires_grad) {
    float *q = pg_scratch(ctx, (size_t)out->numel * sizeof *q);
    if (!q) return;
    pg_bcast plan; /* q = out / b, on the output's shape */
    pg_bcast_plan(&plan, out->ndim, out->shape, out->ndim, out->shape, b->ndim, b->shape);
    pg_bcast_apply(&plan, kernel_div, out->data, b->data, q, false);
    grad_term(ctx, n, 1, kernel_neg_mul, q, out->ndim, out->shape);
  }
}

pg_tensor *pg_div(pg_ctx *ctx, pg_tensor *a, pg_tensor *b) {
  return binary_forward(ctx, "pg_div", a, b, kernel_div, div_backward);
}

/* ---- Unary ops: forward value and gradient from x, y = f(x), g, s ----
 * exp and tanh are kernels.h's vectorisable ones (within 2 and 3 ulp). */

PG_UNARY_OP(add_scalar, x + s, g)
PG_UNARY_OP(mul_scalar, x * s, g * s)
PG_UNARY_OP(neg, -x, -g)
PG_UNARY_OP(exp, pg_expf(x), g * y)
PG_UNARY_OP(log, logf(x), g / x)
PG_UNARY_OP(sqrt, sqrtf(x), g / (2.0f * y))
PG_UNARY_OP(tanh, pg_tanhf(x), g * (1.0f - y * y))
/* As PyTorch: the gradient of x^0 is 0 everywhere (also at x = 0). */
PG_UNARY_OP(pow_scalar, powf(x, s), s == 0.0f ? 0.0f : g * s * powf(x, s - 1.0f))

pg_tensor *pg_add_scalar(pg_ctx *ctx, pg_tensor *x, float s) {
  return pg_unary(ctx, "pg_add_scalar", &add_scalar_op, x, s);
}
pg_tensor *pg_mul_scalar(pg_ctx *ctx, pg_tensor *x, float s) {
  return pg_unary(ctx, "pg_mul_scalar", &mul_scalar_op, x, s);
}
pg_tensor *pg_neg(pg_ctx *ctx, pg_tensor *x) { return pg_unary(ctx, "pg_neg", &neg_op, x, 0); }
pg_tensor *pg_exp(pg_ctx *ctx, pg_tensor *x) { return pg_unary(ctx, "pg_exp", &exp_op, x, 0); }
pg_tensor *pg_log(pg_ctx *ctx, pg_tensor *x) { return pg_unary(ctx, "pg_log", &log_op, x, 0); }
pg_tensor *pg_sqrt(pg_ctx *ctx, pg_tensor *x) { return pg_unary(ctx, "pg_sqrt", &sqrt_op, x, 0); }
pg_tensor *pg_tanh(pg_ctx *ctx, pg_tensor *x) { return pg_unary(ctx, "pg_tanh", &tanh_op, x, 0); }
pg_tensor *pg_pow_scalar(pg_ctx *ctx, pg_tensor *x, float p) {
  return pg_unary(ctx, "pg_pow_scalar", &pow_scalar_op, x, p);
}

/* ---- The unary builder (op_util.h), also used by activation.c ---- */

#define UNARY_BLOCK ((int64_t)8192)

/* Elements [off, off + len) of block b of an n-element tensor. */
static int64_t block_len(int64_t n, int64_t b, int64_t *off) {
  *off = b * UNARY_BLOCK;
  return n - *off < UNARY_BLOCK ? n - *off : UNARY_BLOCK;
}

static void unary_forward_block(const pg_unary_op *op, const pg_tensor *x, pg_tensor *y, float s,
                                int64_t b) {
  int64_t off, len = block_len(x->numel, b, &off);
  op->forward(len, x->data + off, y->data + off, s);
}

/* What a unary op's backward needs besides x and y: the op and its setting. */
typedef struct {
  const pg_unary_op *op;
  float s;
} unary_saved;

static void unary_backward_block(const pg_node *n, float *gx, bool acc, int64_t b) {
  const unary_saved *u = n->saved;
  const pg_tensor *x = n->in[0], *y = n->out;
  int64_t off, len = block_len(y->numel, b, &off);
  u->op->backward(len, x->data + off, y->data + off, y->grad + off, gx + off, u->s, acc);
}

static void unary_backward(pg_ctx *ctx, pg_node *n) {
  bool fresh;
  float *gx = pg_grad_dest(ctx, n->in[0], &fresh);
  if (!gx) return;
  const int64_t numel = n->out->numel;
  PG_FOR(numel, b, (numel + UNARY_BLOCK - 1) / UNARY_BLOCK,
         unary_backward_block(n, gx, !fresh, b));
}

pg_tensor *pg_unary(pg_ctx *ctx, const char *name, const pg_unary_op *op, pg_tensor *x, float s) {
  if (!x) return NULL;
  pg_tensor *y = pg_empty(ctx, x->ndim, x->shape);
  if (!y) return NULL;
  PG_FOR(x->numel, b, (x->numel + UNARY_BLOCK - 1) / UNARY_BLOCK,
         unary_forward_block(op, x, y, s, b));
  pg_node *node = pg_tape_record(ctx, name, unary_backward, y, 1, &x);
  PG_SAVE(ctx, node, unary_saved, .op = op, .s = s);
  return y;
}

/* ---- A small helper of op_util.h ---- */

bool pg_norm_axis(int axis, int ndim, int *out) {
  if (axis < -ndim || axis >= ndim) return false;
  *out = axis < 0 ? axis + ndim : axis;
  return true;
}
