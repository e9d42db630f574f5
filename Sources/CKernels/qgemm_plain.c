#include "ckernels.h"
#include "quant_internal.h"

// Several tokens against block-quantized weights in plain rows (the layout kept where the CPU has no
// VNNI), with AVX2's maddubs: for each token the very arithmetic of the one-token kernels ck_gemv_q8_0
// and ck_gemv_q4_0, in their order, so that a batched decode step gives each token the bits that
// decoding it alone gives. A row (Q8_0 3.5 KB at K = 3584) is read once from memory and then from L1
// for every tile of up to four tokens; the tokens go in stretches whose activations stay in L2.

#define STRETCH_BYTES (256 << 10)

int ck_gemm_plain_vectorized(void) {
#ifdef CK_AVX2
    return 1;
#else
    return 0;
#endif
}

static inline int stretch_tokens(long bytes_per_token) {
    const long n = STRETCH_BYTES / bytes_per_token;
    return n < 4 ? 4 : (int)(n - n % 4);
}

static inline void add_bias(const float *bias, int tokens, float *y, int ldy, int r0, int r1) {
    if (!bias) return;
    for (int t = 0; t < tokens; t++)
        for (int r = r0; r < r1; r++) y[(long)t * ldy + r] += bias[r];
}

#ifdef CK_AVX2
#define PLAIN_TILE 4

// One row against nt tokens: ck_gemv_q8_0's two accumulators per token (even and odd blocks).
__attribute__((always_inline)) static inline void row_q8(const int8_t *w, const uint16_t *s, int nb, int cols, const int8_t *xq,
                                                         const float *xd, float *y, long ldy, const int nt) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0[PLAIN_TILE], acc1[PLAIN_TILE];
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    int b = 0;
    for (; b + 1 < nb; b += 2) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(w + 32 * b)), a1 = _mm256_loadu_si256((const __m256i *)(w + 32 * b + 32));
        const __m256i u0 = _mm256_sign_epi8(a0, a0), u1 = _mm256_sign_epi8(a1, a1);
        const float d0 = f16_to_f32(s[b]), d1 = f16_to_f32(s[b + 1]);
        for (int t = 0; t < nt; t++) {
            const int8_t *x = xq + (long)t * cols + 32 * b;
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)x), x1 = _mm256_loadu_si256((const __m256i *)(x + 32));
            const __m256 p0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(x0, a0)), ones));
            const __m256 p1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(x1, a1)), ones));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * xd[(long)t * nb + b]), p0, acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * xd[(long)t * nb + b + 1]), p1, acc1[t]);
        }
    }
    if (b < nb) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(w + 32 * b));
        const float d0 = f16_to_f32(s[b]);
        for (int t = 0; t < nt; t++) {
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + (long)t * cols + 32 * b));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * xd[(long)t * nb + b]), dot32(a0, x0), acc0[t]);
        }
    }
    for (int t = 0; t < nt; t++) y[t * ldy] = hsum(_mm256_add_ps(acc0[t], acc1[t]));
}

// One row against nt tokens: ck_gemv_q4_0's order (pairs of blocks four at a time, alternating
// accumulators, the remaining pairs into the first, an odd last block in scalar code). The pair scales
// d_w · d_x are the same products, taken lane by lane: [d_w(2p)·d_x(2p)] × 4, [d_w(2p+1)·d_x(2p+1)] × 4.
__attribute__((always_inline)) static inline void row_q4(const uint8_t *w, const uint16_t *s, int nb, int cols, const int8_t *xq,
                                                         const float *xd, const int8_t *xp, const int32_t *xs, float *y,
                                                         long ldy, const int nt) {
    const __m256i mask = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const int npairs = nb / 2;
    __m256 acc0[PLAIN_TILE], acc1[PLAIN_TILE];
    for (int t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
#define PAIR_DOT(P, ACC, WS)                                                                                                       \
    do {                                                                                                                          \
        const __m256i packed = _mm256_loadu_si256((const __m256i *)(w + 32 * (P)));                                                \
        const __m256i lo = _mm256_and_si256(packed, mask), hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);             \
        for (int t = 0; t < nt; t++) {                                                                                            \
            const int8_t *x = xp + (long)t * cols + 64 * (P);                                                                     \
            const __m256i d16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)x)),                \
                                                 _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(x + 32))));        \
            const __m256i d32 = _mm256_sub_epi32(_mm256_madd_epi16(d16, ones),                                                     \
                                                 _mm256_loadu_si256((const __m256i *)(xs + (long)t * (cols / 8) + 8 * (P))));    \
            const __m256 xv = _mm256_permutevar8x32_ps(                                                                          \
                _mm256_castps128_ps256(_mm_castpd_ps(_mm_load_sd((const double *)(xd + (long)t * nb + 2 * (P))))), spread);   \
            ACC[t] = _mm256_fmadd_ps(_mm256_mul_ps(WS, xv), _mm256_cvtepi32_ps(d32), ACC[t]);                                     \
        }                                                                                                                         \
    } while (0)
    int pair = 0;
    for (; pair + 4 <= npairs; pair += 4) {
        const __m256 ws = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * pair)));
        for (int j = 0; j < 4; j++) {
            const __m256 wj = _mm256_permutevar8x32_ps(ws, _mm256_add_epi32(spread, _mm256_set1_epi32(2 * j)));
            if (j & 1) PAIR_DOT(pair + j, acc1, wj);
            else PAIR_DOT(pair + j, acc0, wj);
        }
    }
    for (; pair < npairs; pair++) {
        const __m256 ws = _mm256_set_m128(_mm_set1_ps(f16_to_f32(s[2 * pair + 1])), _mm_set1_ps(f16_to_f32(s[2 * pair])));
        PAIR_DOT(pair, acc0, ws);
    }
#undef PAIR_DOT
    for (int t = 0; t < nt; t++) {
        const float tail = nb & 1 ? f16_to_f32(s[nb - 1]) * xd[(long)t * nb + nb - 1] *
                                        q4_block_scalar(w + 16 * (nb - 1), xq + (long)t * cols + 32 * (nb - 1))
                                  : 0;
        y[t * ldy] = hsum(_mm256_add_ps(acc0[t], acc1[t])) + tail;
    }
}

#define TILED(CALL)                                                                                                       \
    switch (nt) {                                                                                                         \
    case 4: CALL(4); break;                                                                                               \
    case 3: CALL(3); break;                                                                                               \
    case 2: CALL(2); break;                                                                                               \
    default: CALL(1); break;                                                                                              \
    }
#endif

void ck_gemm_q8_0_plain(const int8_t *wq, const uint16_t *wd, int cols, int tokens, const int8_t *xq, const float *xd,
                        const float *bias, float *y, int ldy, int r0, int r1) {
    const int nb = cols / 32;
#ifdef CK_AVX2
    const int stretch = stretch_tokens(cols + 4L * nb);
    for (int s0 = 0; s0 < tokens; s0 += stretch) {
        const int s1 = tokens - s0 < stretch ? tokens : s0 + stretch;
        for (int r = r0; r < r1; r++)
            for (int t0 = s0; t0 < s1; t0 += PLAIN_TILE) {
                const int nt = s1 - t0 < PLAIN_TILE ? s1 - t0 : PLAIN_TILE;
#define CALL(N) row_q8(wq + (long)r * cols, wd + (long)r * nb, nb, cols, xq + (long)t0 * cols, xd + (long)t0 * nb, \
                       y + (long)t0 * ldy + r, ldy, N)
                TILED(CALL)
#undef CALL
            }
    }
#else
    for (int t = 0; t < tokens; t++) ck_gemv_q8_0(wq, wd, cols, xq + (long)t * cols, xd + (long)t * nb, y + (long)t * ldy, r0, r1);
#endif
    add_bias(bias, tokens, y, ldy, r0, r1);
}

void ck_gemm_q4_0_plain(const uint8_t *wq, const uint16_t *wd, int cols, int tokens, const int8_t *xq, const float *xd,
                        const int8_t *xp, const int32_t *xs, const float *bias, float *y, int ldy, int r0, int r1) {
    const int nb = cols / 32;
#ifdef CK_AVX2
    const int stretch = stretch_tokens(2L * cols + 4L * nb + 4L * (cols / 8));
    for (int s0 = 0; s0 < tokens; s0 += stretch) {
        const int s1 = tokens - s0 < stretch ? tokens : s0 + stretch;
        for (int r = r0; r < r1; r++)
            for (int t0 = s0; t0 < s1; t0 += PLAIN_TILE) {
                const int nt = s1 - t0 < PLAIN_TILE ? s1 - t0 : PLAIN_TILE;
#define CALL(N) row_q4(wq + (long)r * (cols / 2), wd + (long)r * nb, nb, cols, xq + (long)t0 * cols, xd + (long)t0 * nb, \
                       xp + (long)t0 * cols, xs + (long)t0 * (cols / 8), y + (long)t0 * ldy + r, ldy, N)
                TILED(CALL)
#undef CALL
            }
    }
#else
    for (int t = 0; t < tokens; t++)
        ck_gemv_q4_0(wq, wd, cols, xq + (long)t * cols, xd + (long)t * nb, xp + (long)t * cols, xs + (long)t * (cols / 8),
                     y + (long)t * ldy, r0, r1);
#endif
    add_bias(bias, tokens, y, ldy, r0, r1);
}
