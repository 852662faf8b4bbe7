/* The kernels of attention_fused.c for one instruction set. That file
 * includes this one three times, inside a matching `#pragma GCC target`,
 * with these defined (this file undefines them at its end, ready for the
 * next set):
 *   W          floats per vector (16 AVX-512, 8 AVX2, 4 SSE2)
 *   RB         rows of a register tile
 *   NV         vectors across a register tile (RB * NV accumulators)
 *   ISA(name)  name##_<isa>, so that each inclusion defines its own functions
 *   FMADD(a, b, c)  a * b + c on vectors
 *   VMAX(a, b), VMIN(a, b)  lane-wise max, min; the second operand when
 *                           either is NaN (x86's maxps/minps)
 *   BF16       (optional, with W 16 under AVX512_BF16) the six products of a
 *              pair run on bf16 operands (below); everything else as float32
 * Not a public header. */

_Static_assert(RB <= MAX_RB, "the dropout tile in scratch holds MAX_RB rows");

typedef float ISA(vec) __attribute__((vector_size(W * sizeof(float))));
typedef int32_t ISA(ivec) __attribute__((vector_size(W * sizeof(float))));
#define VEC ISA(vec)
#define IVEC ISA(ivec)

static inline VEC ISA(load)(const float *p) {
  VEC v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void ISA(store)(float *p, VEC v) { memcpy(p, &v, sizeof v); }

/* Every lane s: one broadcast. (Written s - 0, which the compiler may fold
 * away; 0 + s it may not, since -0 + 0 is +0, and an add would remain.) */
static inline VEC ISA(splat)(float s) { return s - (VEC){0}; }

/* Lanes of a where `take` is all ones, else lanes of b. */
static inline VEC ISA(select)(IVEC take, VEC a, VEC b) {
  return (VEC)((take & (IVEC)a) | (~take & (IVEC)b));
}

/* v with its lanes rotated by `by`: constant index vectors, so that each
 * rotation is one permute. */
#define ROT4(by) ((0 + by) % W), ((1 + by) % W), ((2 + by) % W), ((3 + by) % W)
#define ROT8(by) ROT4(by), ((4 + by) % W), ((5 + by) % W), ((6 + by) % W), ((7 + by) % W)
#define ROT16(by)                                                                             \
  ROT8(by), ((8 + by) % W), ((9 + by) % W), ((10 + by) % W), ((11 + by) % W), ((12 + by) % W), \
      ((13 + by) % W), ((14 + by) % W), ((15 + by) % W)
#ifdef __clang__
#define SHUFFLE(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define SHUFFLE(v, ...) __builtin_shuffle(v, (IVEC){__VA_ARGS__})
#endif
#if W == 16
#define ROT(v, by) SHUFFLE(v, ROT16(by))
#elif W == 8
#define ROT(v, by) SHUFFLE(v, ROT8(by))
#else
#define ROT(v, by) SHUFFLE(v, ROT4(by))
#endif

/* Horizontal sum and max by halving: log2(W) vector steps, not W scalar ones. */
static inline float ISA(hsum)(VEC v) {
#if W >= 16
  v += ROT(v, 8);
#endif
#if W >= 8
  v += ROT(v, 4);
#endif
  v += ROT(v, 2);
  v += ROT(v, 1);
  return v[0];
}

static inline float ISA(hmax)(VEC v) {
#if W >= 16
  v = VMAX(v, ROT(v, 8));
#endif
#if W >= 8
  v = VMAX(v, ROT(v, 4));
#endif
  v = VMAX(v, ROT(v, 2));
  v = VMAX(v, ROT(v, 1));
  return v[0];
}

#undef ROT
#undef SHUFFLE
#undef ROT4
#undef ROT8
#undef ROT16

/* exp(x), W lanes at a time: kernels.h's pg_expf (its range reduction,
 * Cephes polynomial and clamp of the input to [-104, 89], 2^n applied as
 * two exact powers of two so that small results underflow gradually to 0,
 * e^-inf = 0 exactly), with fused multiply-adds in the polynomial. */
static inline VEC ISA(exp)(VEC x_in) {
  /* clamped; a NaN becomes -104 here (VMAX returns its second operand then)
   * and is passed through at the end */
  VEC x = VMIN(VMAX(x_in, ISA(splat)(-104.0f)), ISA(splat)(89.0f));
  const VEC round = ISA(splat)(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
  VEC n = (x * ISA(splat)(1.44269504088896341f) + round) - round;
  VEC r = x - n * ISA(splat)(0.693359375f);
  r = r + n * ISA(splat)(2.12194440e-4f);
  VEC p = ISA(splat)(1.9875691500e-4f);
  p = FMADD(p, r, ISA(splat)(1.3981999507e-3f));
  p = FMADD(p, r, ISA(splat)(8.3334519073e-3f));
  p = FMADD(p, r, ISA(splat)(4.1665795894e-2f));
  p = FMADD(p, r, ISA(splat)(1.6666665459e-1f));
  p = FMADD(p, r, ISA(splat)(5.0000001201e-1f));
  p = FMADD(p, r * r, r + ISA(splat)(1.0f));
  /* n in [-150, 129]: 2^n as 2^half * 2^(n - half), each a valid exponent */
  const IVEC ni = __builtin_convertvector(n, IVEC), half = ni / 2;
  const IVEC e1 = (half + 127) << 23, e2 = (ni - half + 127) << 23;
  return ISA(select)(x_in == x_in, p * (VEC)e1 * (VEC)e2, x_in);
}

/* One register tile: C[rows, NV*W] (=, or += when acc) alpha * A[rows, K] B[K, NV*W],
 * A's element (r, p) at a[r*a_rs + p*a_cs], B's row p at b + p*ldb. Rows
 * past `rows` (< RB) repeat the last row and are not stored. */
static inline __attribute__((always_inline)) void ISA(tile)(
    int nv, int64_t K, const float *a, int64_t a_rs, int64_t a_cs, const float *b, int64_t ldb,
    float *c, int64_t ldc, int rows, float alpha, bool acc) {
  VEC s[RB][NV];
  const float *ar[RB];
  for (int r = 0; r < RB; r++) {
    ar[r] = a + (r < rows ? r : rows - 1) * a_rs;
    for (int v = 0; v < NV; v++) s[r][v] = ISA(splat)(0.0f);
  }
  for (int64_t p = 0; p < K; p++) {
    VEC bv[NV];
    for (int v = 0; v < nv; v++) bv[v] = ISA(load)(b + p * ldb + v * W);
    for (int r = 0; r < RB; r++) {
      const VEC av = ISA(splat)(ar[r][p * a_cs]);
      for (int v = 0; v < nv; v++) s[r][v] = FMADD(av, bv[v], s[r][v]);
    }
  }
  const VEC al = ISA(splat)(alpha);
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < nv; v++) {
      float *dst = c + r * ldc + v * W;
      VEC val = al * s[r][v];
      if (acc) val += ISA(load)(dst);
      ISA(store)(dst, val);
    }
}

#ifndef BF16 /* (the bf16 set multiplies with gemm_bf16 instead) */
/* C[M, N] (=, or += when acc) alpha * A[M, K] B[K, N], strides as in tile. */
static void ISA(gemm)(int64_t M, int64_t N, int64_t K, float alpha, const float *a, int64_t a_rs,
                      int64_t a_cs, const float *b, int64_t ldb, float *c, int64_t ldc, bool acc) {
  int64_t j = 0;
  while (j + W <= N) {
    int nv = (int)((N - j) / W);
    if (nv > NV) nv = NV;
    for (int64_t i = 0; i < M; i += RB) {
      int rows = M - i < RB ? (int)(M - i) : RB;
      const float *ai = a + i * a_rs;
      float *ci = c + i * ldc + j;
      /* constant nv per call, so that each case compiles to its own unrolled tile */
      switch (nv) {
      case 1: ISA(tile)(1, K, ai, a_rs, a_cs, b + j, ldb, ci, ldc, rows, alpha, acc); break;
#if NV >= 2
      case 2: ISA(tile)(2, K, ai, a_rs, a_cs, b + j, ldb, ci, ldc, rows, alpha, acc); break;
#endif
#if NV >= 3
      case 3: ISA(tile)(3, K, ai, a_rs, a_cs, b + j, ldb, ci, ldc, rows, alpha, acc); break;
#endif
#if NV >= 4
      default: ISA(tile)(4, K, ai, a_rs, a_cs, b + j, ldb, ci, ldc, rows, alpha, acc); break;
#endif
      }
    }
    j += nv * W;
  }
  for (; j < N; j++) /* columns past the last full vector */
    for (int64_t i = 0; i < M; i++) {
      float s = 0.0f;
      for (int64_t p = 0; p < K; p++) s += a[i * a_rs + p * a_cs] * b[p * ldb + j];
      c[i * ldc + j] = alpha * s + (acc ? c[i * ldc + j] : 0.0f);
    }
}
#endif

/* Softmax of one row in place: max-subtracted, so any magnitude is safe. */
static void ISA(softmax_row)(float *s, int64_t n) {
  VEC mv = ISA(splat)(-INFINITY);
  int64_t j = 0;
  for (; j + W <= n; j += W) mv = VMAX(ISA(load)(s + j), mv); /* a NaN is skipped here, */
  float max = ISA(hmax)(mv);
  for (; j < n; j++) max = s[j] > max ? s[j] : max;
  VEC sv = ISA(splat)(0.0f);
  const VEC maxv = ISA(splat)(max);
  for (j = 0; j + W <= n; j += W) { /* and makes its row NaN here */
    VEC e = ISA(exp)(ISA(load)(s + j) - maxv);
    ISA(store)(s + j, e);
    sv += e;
  }
  float sum = ISA(hsum)(sv);
  for (; j < n; j++) {
    s[j] = ISA(exp)(ISA(splat)(s[j] - max))[0];
    sum += s[j];
  }
  const float inv = 1.0f / sum;
  const VEC invv = ISA(splat)(inv);
  for (j = 0; j + W <= n; j += W) ISA(store)(s + j, ISA(load)(s + j) * invv);
  for (; j < n; j++) s[j] *= inv;
}

/* Softmax backward of one row in place: ds = p * (dp - sum(p * dp)). */
static void ISA(softmax_grad_row)(const float *p, float *ds, int64_t n) {
  VEC dv = ISA(splat)(0.0f);
  int64_t j = 0;
  for (; j + W <= n; j += W) dv = FMADD(ISA(load)(p + j), ISA(load)(ds + j), dv);
  float dot = ISA(hsum)(dv);
  for (; j < n; j++) dot += p[j] * ds[j];
  const VEC dotv = ISA(splat)(dot);
  for (j = 0; j + W <= n; j += W)
    ISA(store)(ds + j, ISA(load)(p + j) * (ISA(load)(ds + j) - dotv));
  for (; j < n; j++) ds[j] = p[j] * (ds[j] - dot);
}

/* The softmax of score row `row` as the masks shape it: keys j < limit are
 * visible unless padded (pad NULL: none); hidden keys get weight 0 and a
 * row that sees no key is all zeros. */
static void ISA(masked_softmax_row)(float *s, int64_t n, int64_t limit, const uint8_t *pad) {
  if (limit == n && !pad) {
    ISA(softmax_row)(s, n);
    return;
  }
  bool any = false;
  for (int64_t j = 0; j < limit; j++) {
    if (pad && pad[j]) s[j] = -INFINITY; /* e^-inf = 0 exactly */
    else any = true;
  }
  if (any) ISA(softmax_row)(s, limit);
  for (int64_t j = any ? limit : 0; j < n; j++) s[j] = 0.0f;
}

/* Dropout of `rows` weight rows p [rows, n] into d: keep with probability
 * 1 - dropout, drawn in row-major order; kept weights times 1 / (1 - p). The
 * keep-mask goes to keep when non-NULL. */
static void ISA(drop_rows)(const float *p, float *d, uint8_t *keep, int64_t rows, int64_t n,
                           float dropout, pg_rng *rng) {
  const float rescale = 1.0f / (1.0f - dropout);
  for (int64_t i = 0; i < rows * n; i++) {
    const bool k = pg_rng_uniform(rng) >= dropout;
    if (keep) keep[i] = k;
    d[i] = k ? p[i] * rescale : 0.0f;
  }
}

static void ISA(exp_values)(const float *x, float *y, int64_t n) {
  int64_t j = 0;
  for (; j + W <= n; j += W) ISA(store)(y + j, ISA(exp)(ISA(load)(x + j)));
  for (; j < n; j++) y[j] = ISA(exp)(ISA(splat)(x[j]))[0];
}

/* dst[c, r] = src[r * ld + c]: r < rows, c < cols (dst is [cols, rows]).
 * In blocks of 16 rows, so that each store fills a cache line while the 16
 * source rows stay in L1. */
static void ISA(transpose)(const float *src, int64_t ld, int64_t rows, int64_t cols, float *dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t r1 = r0 + 16 < rows ? r0 + 16 : rows;
    for (int64_t c = 0; c < cols; c++)
      for (int64_t r = r0; r < r1; r++) dst[c * rows + r] = src[r * ld + c];
  }
}

#ifdef BF16
/* ---- bf16 products (AVX512_BF16; bf16 autocast, autocast.h) ----
 * The operands of each product are rounded to bf16 (round to nearest even,
 * VCVTNE2PS2BF16, which reads subnormal inputs as zero, as oneDNN's bf16
 * products do) and stored in pairs along the sum index: one uint32 holds
 * (x[p], x[p + 1]) as its low and high halves, the layout VDPBF16PS
 * multiplies; sums accumulate in float32. The softmax, its backward, the
 * masks and dropout stay float32, as under torch.autocast, whose bmm is
 * bf16 and whose softmax is float32. */

/* Lane e of the interleave: even lanes from the first operand's e / 2,
 * odd lanes from the second's (16 + e / 2). */
static const uint16_t ISA(interleave)[32] = {0,  16, 1,  17, 2,  18, 3,  19, 4,  20, 5,
                                             21, 6,  22, 7,  23, 8,  24, 9,  25, 10, 26,
                                             11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

static inline __mmask16 ISA(mask16)(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/* Pairs down the rows: dst[p2 * ldd + j] = (bf16 src[2 p2][j], bf16
 * src[2 p2 + 1][j]) for p2 < ceil(rows / 2), j < ldd (a multiple of 16);
 * zero past the last row and the last column. src rows are ld floats apart. */
static void ISA(pack_pairs)(const float *src, int64_t ld, int64_t rows, int64_t cols, uint32_t *dst,
                            int64_t ldd) {
  const __m512i idx = _mm512_loadu_si512((const void *)ISA(interleave));
  for (int64_t p2 = 0; p2 < (rows + 1) / 2; p2++) {
    const float *r0 = src + 2 * p2 * ld;
    const bool second = 2 * p2 + 1 < rows;
    for (int64_t j = 0; j < ldd; j += 16) {
      const __mmask16 m = ISA(mask16)(cols - j);
      const __m512 lo = _mm512_maskz_loadu_ps(m, r0 + (j < cols ? j : 0));
      const __m512 hi = second ? _mm512_maskz_loadu_ps(m, r0 + ld + (j < cols ? j : 0)) : _mm512_setzero_ps();
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* lo's 16 halves, then hi's */
      _mm512_storeu_si512((void *)(dst + p2 * ldd + j), _mm512_permutexvar_epi16(idx, both));
    }
  }
}

/* Pairs along the rows: row r's bf16 values two by two, dst[r * ldd + p2] =
 * (src[r][2 p2], src[r][2 p2 + 1]) for p2 < ldd = ceil(cols / 2), the odd
 * last one paired with zero. The rounding is autocast.h's row kernel. */
static void ISA(pack_rows)(const float *src, int64_t ld, int64_t rows, int64_t cols, uint32_t *dst,
                           int64_t ldd) {
  for (int64_t r = 0; r < rows; r++) {
    uint16_t *d = (uint16_t *)(void *)(dst + r * ldd);
    pg_bf16_round_row(src + r * ld, cols, d);
    if (cols < 2 * ldd) d[cols] = 0;
  }
}

/* One register tile: C[rows, cols] (=, or += when acc) alpha * sum over
 * p2 < K2 of A's pair (r, p2), at a[r * a_rs + p2 * a_cs], times B's pair
 * row p2 (b + p2 * ldb, 16 columns per vector, nv vectors); cols <= nv * 16
 * are stored. Rows past `rows` repeat the last row and are not stored. */
static inline __attribute__((always_inline)) void ISA(tile_bf16)(
    int nv, int64_t K2, const uint32_t *a, int64_t a_rs, int64_t a_cs, const uint32_t *b, int64_t ldb,
    float *c, int64_t ldc, int rows, int64_t cols, float alpha, bool acc) {
  __m512 s[RB][NV];
  const uint32_t *ar[RB];
  for (int r = 0; r < RB; r++) {
    ar[r] = a + (r < rows ? r : rows - 1) * a_rs;
    for (int v = 0; v < NV; v++) s[r][v] = _mm512_setzero_ps();
  }
  for (int64_t p2 = 0; p2 < K2; p2++) {
    __m512i bv[NV];
    for (int v = 0; v < nv; v++) bv[v] = _mm512_loadu_si512((const void *)(b + p2 * ldb + v * 16));
    for (int r = 0; r < RB; r++) {
      const __m512i av = _mm512_set1_epi32((int)ar[r][p2 * a_cs]);
      for (int v = 0; v < nv; v++) s[r][v] = _mm512_dpbf16_ps(s[r][v], (__m512bh)av, (__m512bh)bv[v]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < nv; v++) {
      const __mmask16 m = ISA(mask16)(cols - v * 16);
      float *dst = c + r * ldc + v * 16;
      __m512 val = _mm512_mul_ps(al, s[r][v]);
      if (acc) val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(m, dst));
      _mm512_mask_storeu_ps(dst, m, val);
    }
}

/* C[M, N] (=, or += when acc) alpha * A B from pairs (tile_bf16's layout);
 * B's pair rows hold at least N columns rounded up to 16 (zeros past N). */
static void ISA(gemm_bf16)(int64_t M, int64_t N, int64_t K2, float alpha, const uint32_t *a, int64_t a_rs,
                           int64_t a_cs, const uint32_t *b, int64_t ldb, float *c, int64_t ldc, bool acc) {
  for (int64_t j = 0; j < N;) {
    int nv = (int)((N - j + 15) / 16);
    if (nv > NV) nv = NV;
    const int64_t cols = N - j < nv * 16 ? N - j : nv * 16;
    for (int64_t i = 0; i < M; i += RB) {
      const int rows = M - i < RB ? (int)(M - i) : RB;
      const uint32_t *ai = a + i * a_rs;
      float *ci = c + i * ldc + j;
      switch (nv) {
      case 1: ISA(tile_bf16)(1, K2, ai, a_rs, a_cs, b + j, ldb, ci, ldc, rows, cols, alpha, acc); break;
      case 2: ISA(tile_bf16)(2, K2, ai, a_rs, a_cs, b + j, ldb, ci, ldc, rows, cols, alpha, acc); break;
      case 3: ISA(tile_bf16)(3, K2, ai, a_rs, a_cs, b + j, ldb, ci, ldc, rows, cols, alpha, acc); break;
      default: ISA(tile_bf16)(4, K2, ai, a_rs, a_cs, b + j, ldb, ci, ldc, rows, cols, alpha, acc); break;
      }
    }
    j += nv * 16;
  }
}
#endif

static void ISA(forward_pair)(const pg_attn_fused_args *a, int64_t pair, float *scratch) {
  const int64_t T = a->tokens, b = pair / a->heads, n = pair % a->heads;
  const float *q = a->q + b * T * a->q_ld + n * a->dk;
  const float *k = a->k + b * T * a->k_ld + n * a->dk;
  const float *v = a->v + b * T * a->v_ld + n * a->dv;
  float *kt = scratch; /* [dk, T]: k transposed, so that score rows are vectors */
  float *p = a->probs ? a->probs + pair * T * T : scratch + a->dk * T;
  float *dropped = scratch + (a->dk > a->dv ? a->dk : a->dv) * T + T * T; /* [RB, T] */
  uint8_t *keep = a->keep ? a->keep + pair * T * T : NULL;
  float *out = a->out + b * T * a->out_ld + n * a->dv;
  const uint8_t *pad = a->pad ? a->pad + b * T : NULL;
  pg_rng rng;
  if (a->dropout > 0.0f) pg_rng_seed(&rng, a->seeds[pair]);
  ISA(transpose)(k, a->k_ld, T, a->dk, kt);
#ifdef BF16
  const bf16_layout L = bf16_layout_of(a);
  uint32_t *const base = (uint32_t *)(void *)(scratch + fp32_scratch_floats(a));
  ISA(pack_pairs)(kt, T, a->dk, T, base + L.kt, L.Tp);       /* scores' B, [dk / 2][T] */
  ISA(pack_pairs)(v, a->v_ld, T, a->dv, base + L.v, L.dvp);  /* the output's B, [T / 2][dv] */
#endif
  /* One register tile's rows at a time, start to finish: their scores,
   * softmax, dropout and output while the rows are still in L1. */
  for (int64_t i = 0; i < T; i += RB) {
    const int64_t rows = T - i < RB ? T - i : RB;
    float *pi = p + i * T;
#ifdef BF16
    ISA(pack_rows)(q + i * a->q_ld, a->q_ld, rows, a->dk, base + L.rows_d, L.dk2);
    ISA(gemm_bf16)(rows, T, L.dk2, a->scale, base + L.rows_d, L.dk2, 1, base + L.kt, L.Tp, pi, T, false);
#else
    ISA(gemm)(rows, T, a->dk, a->scale, q + i * a->q_ld, a->q_ld, 1, kt, T, pi, T, false);
#endif
    for (int64_t r = 0; r < rows; r++)
      ISA(masked_softmax_row)(pi + r * T, T, a->causal ? i + r + 1 : T, pad);
    const float *weights = pi;
    if (a->dropout > 0.0f) {
      ISA(drop_rows)(pi, dropped, keep ? keep + i * T : NULL, rows, T, a->dropout, &rng);
      weights = dropped;
    }
#ifdef BF16
    ISA(pack_rows)(weights, T, rows, T, base + L.rows_t, L.T2);
    ISA(gemm_bf16)(rows, a->dv, L.T2, 1.0f, base + L.rows_t, L.T2, 1, base + L.v, L.dvp,
                   out + i * a->out_ld, a->out_ld, false);
#else
    ISA(gemm)(rows, a->dv, T, 1.0f, weights, T, 1, v, a->v_ld, out + i * a->out_ld, a->out_ld,
              false);
#endif
  }
}

static void ISA(backward_pair)(const pg_attn_fused_args *a, const pg_attn_fused_grads *g,
                               int64_t pair, float *scratch) {
  const int64_t T = a->tokens, b = pair / a->heads, n = pair % a->heads;
  const float *q = a->q + b * T * a->q_ld + n * a->dk;
  const float *k = a->k + b * T * a->k_ld + n * a->dk;
  const float *v = a->v + b * T * a->v_ld + n * a->dv;
  const float *p = a->probs + pair * T * T;
  const float *dout = g->dout + b * T * a->out_ld + n * a->dv;
  const uint8_t *keep = a->dropout > 0.0f ? a->keep + pair * T * T : NULL;
  const float rescale = keep ? 1.0f / (1.0f - a->dropout) : 1.0f;
  float *vt = scratch, *ds = scratch + (a->dk > a->dv ? a->dk : a->dv) * T;
#ifdef BF16
  const bf16_layout L = bf16_layout_of(a);
  uint32_t *const base = (uint32_t *)(void *)(scratch + fp32_scratch_floats(a));
#endif
  /* dv = W^T dout, W the weights that multiplied v (P after dropout) */
  if (g->dv) {
    const float *w = p;
    if (keep) {
      float *dropped = ds + T * T;
      for (int64_t i = 0; i < T * T; i++) dropped[i] = keep[i] ? p[i] * rescale : 0.0f;
      w = dropped;
    }
#ifdef BF16
    /* A = W^T: W's pairs down its rows are A's pairs along its rows */
    ISA(pack_pairs)(w, T, T, T, base + L.square, L.Tp);
    ISA(pack_pairs)(dout, a->out_ld, T, a->dv, base + L.v, L.dvp);
    ISA(gemm_bf16)(T, a->dv, L.T2, 1.0f, base + L.square, 1, L.Tp, base + L.v, L.dvp,
                   g->dv + b * T * g->dv_ld + n * a->dv, g->dv_ld, g->acc_v);
#else
    ISA(gemm)(T, a->dv, T, 1.0f, w, 1, T, dout, a->out_ld, g->dv + b * T * g->dv_ld + n * a->dv,
              g->dv_ld, g->acc_v);
#endif
  }
  if (!g->dq && !g->dk) return;
  /* dW = dout v^T, through dropout, then through the softmax (masked
   * weights are 0 in P, so their scores get no gradient) */
  float *dq = g->dq ? g->dq + b * T * g->dq_ld + n * a->dk : NULL;
  ISA(transpose)(v, a->v_ld, T, a->dv, vt);
#ifdef BF16
  ISA(pack_pairs)(vt, T, a->dv, T, base + L.kt, L.Tp);      /* dP's B, [dv / 2][T] */
  ISA(pack_pairs)(k, a->k_ld, T, a->dk, base + L.v, L.dkp);  /* dq's B, [T / 2][dk] */
#endif
  /* A register tile's rows at a time: dP, dS and (scores = scale * q k^T)
   * dq = scale * dS k while the rows are in L1; dk needs every row of dS. */
  for (int64_t i = 0; i < T; i += RB) {
    const int64_t rows = T - i < RB ? T - i : RB;
    float *dsi = ds + i * T;
#ifdef BF16
    ISA(pack_rows)(dout + i * a->out_ld, a->out_ld, rows, a->dv, base + L.rows_d, L.dv2);
    ISA(gemm_bf16)(rows, T, L.dv2, 1.0f, base + L.rows_d, L.dv2, 1, base + L.kt, L.Tp, dsi, T, false);
#else
    ISA(gemm)(rows, T, a->dv, 1.0f, dout + i * a->out_ld, a->out_ld, 1, vt, T, dsi, T, false);
#endif
    if (keep)
      for (int64_t e = 0; e < rows * T; e++) dsi[e] = keep[i * T + e] ? dsi[e] * rescale : 0.0f;
    for (int64_t r = 0; r < rows; r++) ISA(softmax_grad_row)(p + (i + r) * T, dsi + r * T, T);
    if (dq) {
#ifdef BF16
      ISA(pack_rows)(dsi, T, rows, T, base + L.rows_t, L.T2);
      ISA(gemm_bf16)(rows, a->dk, L.T2, a->scale, base + L.rows_t, L.T2, 1, base + L.v, L.dkp,
                     dq + i * g->dq_ld, g->dq_ld, g->acc_q);
#else
      ISA(gemm)(rows, a->dk, T, a->scale, dsi, T, 1, k, a->k_ld, dq + i * g->dq_ld, g->dq_ld,
                g->acc_q);
#endif
    }
  }
  if (g->dk) {
#ifdef BF16
    ISA(pack_pairs)(ds, T, T, T, base + L.square, L.Tp);       /* A = dS^T */
    ISA(pack_pairs)(q, a->q_ld, T, a->dk, base + L.v, L.dkp);  /* B = q, [T / 2][dk] */
    ISA(gemm_bf16)(T, a->dk, L.T2, a->scale, base + L.square, 1, L.Tp, base + L.v, L.dkp,
                   g->dk + b * T * g->dk_ld + n * a->dk, g->dk_ld, g->acc_k);
#else
    ISA(gemm)(T, a->dk, T, a->scale, ds, 1, T, q, a->q_ld, g->dk + b * T * g->dk_ld + n * a->dk,
              g->dk_ld, g->acc_k);
#endif
  }
}

static const pg_attn_kernels ISA(kernels) = {
    ISA(forward_pair), ISA(backward_pair), {ISA(exp_values), ISA(softmax_row), ISA(softmax_grad_row)}};

#undef VEC
#undef IVEC
#undef W
#undef RB
#undef NV
#undef ISA
#undef FMADD
#undef VMAX
#undef VMIN
#undef BF16
