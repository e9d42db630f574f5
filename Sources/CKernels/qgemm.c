#include "ckernels.h"
#include <string.h>

// Several tokens against block-quantized weights in the sixteen-interleaved layout (ckernels.h), with
// the activations quantized per block of 32 as well (llama.cpp's Q8_0 x Q8_0): each 64-byte weight
// vector, loaded once, feeds one VNNI dot product per token of a tile of up to eight, so the weights are
// read from memory once per sixteen rows and the work is integer multiply-adds at 64 per instruction.
// Per (token, block) the integer sum starts at −128·Σx (Q8_0, whose weights' sign bit is flipped to make
// them unsigned) or −8·Σx (Q4_0's nibble offset) and is then scaled by d_w · d_x into a float
// accumulator, as the single-token kernels do.

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define VNNI_GEMM __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#define TILE 8

static inline long group_bytes(int nb, int bb) { return 16L * nb * (bb + 2); }

// One group of sixteen rows against `nt` tokens (a compile-time constant where it is inlined). Both blocks
// of a pair are summed before the pair's scales (stored after them) are read, and the compiler may not
// hoist the second block's loads above the first's: reading ahead of the weight stream and back again
// costs a large part of a core's read rate (as in the one-token kernels).
#define STREAM_ORDER() __asm__ volatile("" ::: "memory")
#define SCALE_INTO(ACC, S, DW, B)                                                                                    \
    for (int t = 0; t < nt; t++)                                                                                     \
        ACC[t] = _mm512_fmadd_ps(_mm512_mul_ps(DW, _mm512_set1_ps(xd[(long)t * nb + (B)])), _mm512_cvtepi32_ps(S[t]), ACC[t])

VNNI_GEMM __attribute__((always_inline)) static inline void dots_q8(const uint8_t *v, int b, int nb, const int8_t *xq, int cols,
                                                                    const int32_t *xsum, __m512i *s, const int nt) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int t = 0; t < nt; t++) s[t] = _mm512_set1_epi32(-128 * xsum[(long)t * nb + b]);
    for (int k = 0; k < 8; k++) {
        const __m512i w = _mm512_xor_si512(_mm512_loadu_si512((const void *)(v + 64 * k)), flip);
        for (int t = 0; t < nt; t++) {
            int32_t x4;
            memcpy(&x4, xq + (long)t * cols + 32 * b + 4 * k, 4);
            s[t] = _mm512_dpbusd_epi32(s[t], w, _mm512_set1_epi32(x4));
        }
    }
}

// Q4_0: byte j of piece k holds values 4k+j (low nibble) and 16+4k+j (high nibble).
VNNI_GEMM __attribute__((always_inline)) static inline void dots_q4(const uint8_t *v, int b, int nb, const int8_t *xq, int cols,
                                                                    const int32_t *xsum, __m512i *s, const int nt) {
    const __m512i mask = _mm512_set1_epi8(0x0F);
    for (int t = 0; t < nt; t++) s[t] = _mm512_set1_epi32(-8 * xsum[(long)t * nb + b]);
    for (int k = 0; k < 4; k++) {
        const __m512i packed = _mm512_loadu_si512((const void *)(v + 64 * k));
        const __m512i lo = _mm512_and_si512(packed, mask), hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
        for (int t = 0; t < nt; t++) {
            int32_t xl, xh;
            memcpy(&xl, xq + (long)t * cols + 32 * b + 4 * k, 4);
            memcpy(&xh, xq + (long)t * cols + 32 * b + 16 + 4 * k, 4);
            s[t] = _mm512_dpbusd_epi32(s[t], lo, _mm512_set1_epi32(xl));
            s[t] = _mm512_dpbusd_epi32(s[t], hi, _mm512_set1_epi32(xh));
        }
    }
}

#define TILE_BODY(NAME, DOTS, BB)                                                                                    \
    VNNI_GEMM __attribute__((always_inline)) static inline void NAME(const uint8_t *g, int nb, const int8_t *xq, int cols, \
                                                                     const float *xd, const int32_t *xsum, float *y,  \
                                                                     long ldy, const int nt) {                        \
        __m512 acc[TILE];                                                                                            \
        __m512i s0[TILE], s1[TILE];                                                                                  \
        for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();                                                   \
        int b = 0;                                                                                                   \
        for (; b + 2 <= nb; b += 2, g += 2 * 16 * ((BB) + 2)) { /* a pair: values of both, then their scales */    \
            DOTS(g, b, nb, xq, cols, xsum, s0, nt);                                                                  \
            STREAM_ORDER();                                                                                          \
            DOTS(g + 16 * (BB), b + 1, nb, xq, cols, xsum, s1, nt);                                                  \
            const uint16_t *sc = (const uint16_t *)(g + 32 * (BB));                                                  \
            const __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc));                             \
            const __m512 dw1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + 16)));                      \
            SCALE_INTO(acc, s0, dw0, b);                                                                             \
            SCALE_INTO(acc, s1, dw1, b + 1);                                                                         \
        }                                                                                                            \
        if (b < nb) { /* an odd last block, alone with its scales */                                                 \
            DOTS(g, b, nb, xq, cols, xsum, s0, nt);                                                                  \
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 16 * (BB))));                 \
            SCALE_INTO(acc, s0, dw, b);                                                                              \
        }                                                                                                            \
        for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + t * ldy, acc[t]);                                          \
    }
TILE_BODY(tile_q8, dots_q8, 32)
TILE_BODY(tile_q4, dots_q4, 16)
#undef TILE_BODY
#undef SCALE_INTO
#undef STREAM_ORDER

// Each tile width gets its own unrolled body, so the accumulators live in registers.
#define TILES(NAME, BODY, BB)                                                                                        \
    VNNI_GEMM static void NAME(const uint8_t *wq, int cols, int tokens, const int8_t *xq, const float *xd,           \
                               const int32_t *xsum, float *y, int ldy, int r0, int r1) {                             \
        const int nb = cols / 32;                                                                                    \
        for (int group = r0 / 16; group < r1 / 16; group++) {                                                        \
            const uint8_t *g = wq + group * group_bytes(nb, BB);                                                     \
            for (int t0 = 0; t0 < tokens; t0 += TILE) {                                                              \
                const int8_t *x = xq + (long)t0 * cols;                                                              \
                const float *d = xd + (long)t0 * nb;                                                                 \
                const int32_t *s = xsum + (long)t0 * nb;                                                             \
                float *out = y + (long)t0 * ldy + 16 * group;                                                        \
                switch (tokens - t0 < TILE ? tokens - t0 : TILE) {                                                   \
                case 8: BODY(g, nb, x, cols, d, s, out, ldy, 8); break;                                              \
                case 7: BODY(g, nb, x, cols, d, s, out, ldy, 7); break;                                              \
                case 6: BODY(g, nb, x, cols, d, s, out, ldy, 6); break;                                              \
                case 5: BODY(g, nb, x, cols, d, s, out, ldy, 5); break;                                              \
                case 4: BODY(g, nb, x, cols, d, s, out, ldy, 4); break;                                              \
                case 3: BODY(g, nb, x, cols, d, s, out, ldy, 3); break;                                              \
                case 2: BODY(g, nb, x, cols, d, s, out, ldy, 2); break;                                              \
                default: BODY(g, nb, x, cols, d, s, out, ldy, 1); break;                                             \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }
TILES(gemm_q8_x16, tile_q8, 32)
TILES(gemm_q4_x16, tile_q4, 16)
#undef TILES

void ck_gemm_q8_0x16_vnni(const int8_t *wq, int cols, int tokens, const int8_t *xq, const float *xd,
                          const int32_t *xsum, float *y, int ldy, int r0, int r1) {
    gemm_q8_x16((const uint8_t *)wq, cols, tokens, xq, xd, xsum, y, ldy, r0, r1);
}

void ck_gemm_q4_0x16_vnni(const uint8_t *wq, int cols, int tokens, const int8_t *xq, const float *xd,
                          const int32_t *xsum, float *y, int ldy, int r0, int r1) {
    gemm_q4_x16(wq, cols, tokens, xq, xd, xsum, y, ldy, r0, r1);
}
#else
// Callers use these only where ck_vnni_available() says so.
void ck_gemm_q8_0x16_vnni(const int8_t *wq, int cols, int tokens, const int8_t *xq, const float *xd,
                          const int32_t *xsum, float *y, int ldy, int r0, int r1) {
    (void)wq; (void)cols; (void)tokens; (void)xq; (void)xd; (void)xsum; (void)y; (void)ldy; (void)r0; (void)r1;
}
void ck_gemm_q4_0x16_vnni(const uint8_t *wq, int cols, int tokens, const int8_t *xq, const float *xd,
                          const int32_t *xsum, float *y, int ldy, int r0, int r1) {
    (void)wq; (void)cols; (void)tokens; (void)xq; (void)xd; (void)xsum; (void)y; (void)ldy; (void)r0; (void)r1;
}
#endif
