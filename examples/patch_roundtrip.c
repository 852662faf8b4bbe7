/* A 2-D image round trip: Patchify cuts a 32 x 32 RGB image into 8 x 8
 * tokens of 4 x 4 x 3 = 48 values, Unpatchify puts them back.
 *
 * With stride == patch and weights that invert each other the round trip is
 * exact; the identity weight (token channel k = patch value k, in PyTorch's
 * (c, p_row, p_col) order) is the simplest such pair, and turns the two
 * layers into unfold and fold. Run: build/examples/patch_roundtrip */
#include <math.h>
#include <stdio.h>

#include "patchgrad/autograd/params.h"
#include "patchgrad/layers/patchify.h"
#include "patchgrad/layers/unpatchify.h"

int main(void) {
  const int64_t H = 32, W = 32, C = 3, P = 4, K = C * P * P; /* 48 */
  pg_params ps;
  pg_params_init(&ps);
  pg_rng rng;
  pg_rng_seed(&rng, 0);
  pg_patchify embed;
  pg_unpatchify unembed;
  if (pg_patchify_init(&embed, &ps, "embed", C, K, 2, P, P, false, &rng) ||
      pg_unpatchify_init(&unembed, &ps, "unembed", K, C, 2, P, P, false, PG_UNPATCH_INIT_ZEROS,
                         &rng)) {
    fprintf(stderr, "init failed: %s\n", pg_last_error());
    return 1;
  }
  /* Both weights hold K x K numbers: make each the identity matrix. */
  pg_fill(embed.weight, 0.0f);
  for (int64_t k = 0; k < K; k++) {
    embed.weight->data[k * K + k] = 1.0f;   /* [K, C, P, P] */
    unembed.weight->data[k * K + k] = 1.0f; /* [K, C, P, P] as well */
  }

  pg_ctx *ctx = pg_ctx_new(0);
  /* channels-last image [1, H, W, C]: a smooth colour pattern */
  pg_tensor *image = pg_empty(ctx, PG_SHAPE(1, H, W, C));
  for (int64_t i = 0; i < H; i++)
    for (int64_t j = 0; j < W; j++)
      for (int64_t c = 0; c < C; c++)
        image->data[(i * W + j) * C + c] = sinf(0.2f * (float)(i + 2 * c)) * cosf(0.3f * (float)j);

  pg_tensor *tokens = pg_patchify_forward(ctx, &embed, image);        /* [1, 8, 8, 48] */
  pg_tensor *back = pg_unpatchify_forward(ctx, &unembed, tokens, NULL); /* [1, 32, 32, 3] */
  if (!back) {
    fprintf(stderr, "round trip failed: %s\n", pg_last_error());
    return 1;
  }
  float worst = 0.0f;
  for (int64_t i = 0; i < image->numel; i++) worst = fmaxf(worst, fabsf(back->data[i] - image->data[i]));
  printf("image %s -> tokens %s -> image %s, max |difference| = %g\n", pg_shape_of(image),
         pg_shape_of(tokens), pg_shape_of(back), worst);

  pg_ctx_free(ctx);
  pg_params_free(&ps);
  return worst == 0.0f ? 0 : 1;
}
