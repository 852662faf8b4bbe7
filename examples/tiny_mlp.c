/* tiny_mlp: a two-layer network written by hand with patchgrad's ops and
 * trained by plain gradient descent to fit y = sin(x) on [-pi, pi].
 *
 *   y_hat = tanh(x W1 + b1) W2 + b2        x [N, 1], W1 [1, H], W2 [H, 1]
 *   loss  = mean((y_hat - y)^2)
 *
 * Read it top to bottom: data, parameters, a context, the training loop
 * (forward, backward, update, reset), clean-up. Run: build/examples/tiny_mlp */
#include <math.h>
#include <stdio.h>

#include <patchgrad/patchgrad.h>

enum { N = 64, HIDDEN = 32, STEPS = 800 };
static const float LEARNING_RATE = 0.05f;

/* The network. Each op returns a new step tensor (in ctx) and, when an input
 * needs a gradient, records itself on ctx's tape. [N, H] + [H] broadcasts the
 * bias over the rows, as in NumPy. */
static pg_tensor *forward(pg_ctx *ctx, pg_tensor *x, pg_tensor *w1, pg_tensor *b1, pg_tensor *w2,
                          pg_tensor *b2) {
  pg_tensor *hidden = pg_tanh(ctx, pg_add(ctx, pg_matmul(ctx, x, w1, false, false), b1));
  return pg_add(ctx, pg_matmul(ctx, hidden, w2, false, false), b2);
}

int main(void) {
  /* 1. The data. Heap tensors (pg_tensor_new): they live until we free them.
   *    No gradient is needed for data, so requires_grad is false. */
  pg_tensor *x = pg_tensor_new(PG_SHAPE(N, 1), false);
  pg_tensor *y = pg_tensor_new(PG_SHAPE(N, 1), false);
  for (int i = 0; i < N; i++) {
    x->data[i] = -3.14159265f + 6.2831853f * (float)i / (N - 1);
    y->data[i] = sinf(x->data[i]);
  }

  /* 2. The parameters: heap tensors with requires_grad, so each gets a
   *    gradient buffer that backward adds into. Random start, fixed seed. */
  pg_rng rng;
  pg_rng_seed(&rng, 42);
  pg_tensor *w1 = pg_tensor_new(PG_SHAPE(1, HIDDEN), true);
  pg_tensor *b1 = pg_tensor_new(PG_SHAPE(HIDDEN), true);
  pg_tensor *w2 = pg_tensor_new(PG_SHAPE(HIDDEN, 1), true);
  pg_tensor *b2 = pg_tensor_new(PG_SHAPE(1), true);
  if (!x || !y || !w1 || !b1 || !w2 || !b2) {
    fprintf(stderr, "tiny_mlp: %s\n", pg_last_error());
    return 1;
  }
  pg_fill_normal(w1, 0.0f, 1.0f, &rng);
  pg_fill_uniform(b1, -1.0f, 1.0f, &rng);
  pg_fill_normal(w2, 0.0f, 1.0f / sqrtf(HIDDEN), &rng); /* b2 starts at 0 */
  pg_tensor *params[] = {w1, b1, w2, b2};

  /* 3. A context: it owns each step's memory (every op's output, the
   *    gradients of intermediate results, the tape) in one arena. */
  pg_ctx *ctx = pg_ctx_new(0);
  if (!ctx) return 1;

  float first_loss = 0.0f, loss_value = 0.0f;
  for (int step = 0; step < STEPS; step++) {
    /* 4a. Forward, recorded on the tape since the parameters need gradients. */
    pg_tensor *loss = pg_mse(ctx, forward(ctx, x, w1, b1, w2, b2), y);

    /* 4b. Backward: walks the tape in reverse and adds d loss / d p into
     *     each parameter's grad. A failed op returns NULL and leaves a
     *     message; the NULL flows through the later ops, so one check at
     *     the end is enough. */
    if (!loss || pg_backward(ctx, loss)) {
      fprintf(stderr, "tiny_mlp: %s\n", pg_last_error());
      return 1;
    }
    loss_value = loss->data[0];
    if (step == 0) first_loss = loss_value;
    if (step % 100 == 0 || step == STEPS - 1) printf("step %3d  loss %.5f\n", step, loss_value);

    /* 4c. Plain gradient descent, then zero the gradients: they accumulate
     *     across backward calls until zeroed. */
    for (int p = 0; p < 4; p++) {
      for (int64_t i = 0; i < params[p]->numel; i++)
        params[p]->data[i] -= LEARNING_RATE * params[p]->grad[i];
      pg_tensor_zero_grad(params[p]);
    }

    /* 4d. End of the step: every step tensor and the tape are forgotten at
     *     once; the arena keeps its memory, so later steps call no malloc. */
    pg_ctx_reset(ctx);
  }
  printf("loss fell from %.5f to %.5f in %d steps\n", first_loss, loss_value, STEPS);

  /* 5. Use the trained network. In no-grad mode nothing is recorded. */
  pg_set_grad_enabled(ctx, false);
  const float probe[] = {-1.5707963f, 0.0f, 0.5235988f, 1.5707963f};
  pg_tensor *pred = forward(ctx, pg_from_array(ctx, PG_SHAPE(4, 1), probe), w1, b1, w2, b2);
  for (int i = 0; pred && i < 4; i++)
    printf("sin(%+.4f) = %+.4f, the network says %+.4f\n", probe[i], sinf(probe[i]), pred->data[i]);
  pg_ctx_reset(ctx);

  /* 6. Clean up what we allocated: the heap tensors and the context. */
  pg_ctx_free(ctx);
  for (int p = 0; p < 4; p++) pg_tensor_free(params[p]);
  pg_tensor_free(x);
  pg_tensor_free(y);
  return loss_value < first_loss / 10 ? 0 : 1; /* a test runs this example too */
}
