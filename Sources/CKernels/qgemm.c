#include "ckernels.h"
#include <string.h>

// Several tokens against block-quantized weights in the sixteen-interleaved layout (ckernels.h), with
// the activations quantized per block of 32 as well (llama.cpp's Q8_0 x Q8_0): each 64-byte weight
// vector, loaded once, feeds one VNNI dot product per token of a tile of up to eight, so the weights are
// read from memory once per sixteen rows and the work is integer multiply-adds at 64 per instruction.
// Per (token, block) the integer sum starts at −128·Σx (Q8_0, whose weights' sign bit is flipped to make
// them unsigned) or −8·Σx (Q4_0's nibble offset) and is then scaled by d_w · d_x into a float
// accumulator, as the single-token kernels do.
//
// The activations are first packed tile by tile (ck_gemm_pack): per block, the eight 4-byte pieces of
// each token side by side, then the tokens' starting sums and scales. Every operand of the inner loop is
// then at a constant offset from one pointer; with each token's row addressed on its own, the address
// arithmetic and the starting sums' scalar work took a quarter of the issue slots.

#define PACK_TILE 8
#define PACK_BLOCK (10 * PACK_TILE) /* int32 per block: pieces [8][PACK_TILE], start [PACK_TILE], d [PACK_TILE] */

long ck_gemm_packed_count(int cols, int tokens) {
    return (long)((tokens + PACK_TILE - 1) / PACK_TILE) * (cols / 32) * PACK_BLOCK;
}

void ck_gemm_pack(const int8_t *xq, const float *xd, const int32_t *xsum, int cols, int tokens, int q4, int32_t *packed) {
    const int nb = cols / 32, offset = q4 ? 8 : 128;
    for (int t0 = 0; t0 < tokens; t0 += PACK_TILE) {
        const int nt = tokens - t0 < PACK_TILE ? tokens - t0 : PACK_TILE;
        int32_t *p = packed + (long)(t0 / PACK_TILE) * nb * PACK_BLOCK;
        for (int b = 0; b < nb; b++, p += PACK_BLOCK) {
            for (int t = 0; t < PACK_TILE; t++) {
                const int s = t0 + (t < nt ? t : nt - 1);  // a short tile's unused slots repeat its last token
                for (int k = 0; k < 8; k++) memcpy(&p[k * PACK_TILE + t], xq + (long)s * cols + 32 * b + 4 * k, 4);
                p[8 * PACK_TILE + t] = -offset * xsum[(long)s * nb + b];
                memcpy(&p[9 * PACK_TILE + t], &xd[(long)s * nb + b], 4);
            }
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define VNNI_GEMM __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#define TILE PACK_TILE

static inline long group_bytes(int nb, int bb) { return 16L * nb * (bb + 2); }

// One group of sixteen rows against `nt` tokens (a compile-time constant where it is inlined). Both blocks
// of a pair are summed before the pair's scales (stored after them) are read, and the compiler may not
// hoist the second block's loads above the first's: reading ahead of the weight stream and back again
// costs a large part of a core's read rate (as in the one-token kernels).
#define STREAM_ORDER() __asm__ volatile("" ::: "memory")
#define SCALE_INTO(ACC, S, DW, P)                                                                                    \
    for (int t = 0; t < nt; t++)                                                                                     \
        ACC[t] = _mm512_fmadd_ps(_mm512_mul_ps(DW, _mm512_set1_ps(((const float *)(P))[9 * TILE + t])), _mm512_cvtepi32_ps(S[t]), ACC[t])

VNNI_GEMM __attribute__((always_inline)) static inline void dots_q8(const uint8_t *v, const int32_t *p, __m512i *s, const int nt) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int t = 0; t < nt; t++) s[t] = _mm512_set1_epi32(p[8 * TILE + t]);
    for (int k = 0; k < 8; k++) {
        const __m512i w = _mm512_xor_si512(_mm512_loadu_si512((const void *)(v + 64 * k)), flip);
        for (int t = 0; t < nt; t++) s[t] = _mm512_dpbusd_epi32(s[t], w, _mm512_set1_epi32(p[k * TILE + t]));
    }
}

// Q4_0: byte j of piece k holds values 4k+j (low nibble) and 16+4k+j (high nibble): pieces k and 4+k.
VNNI_GEMM __attribute__((always_inline)) static inline void dots_q4(const uint8_t *v, const int32_t *p, __m512i *s, const int nt) {
    const __m512i mask = _mm512_set1_epi8(0x0F);
    for (int t = 0; t < nt; t++) s[t] = _mm512_set1_epi32(p[8 * TILE + t]);
    for (int k = 0; k < 4; k++) {
        const __m512i packed = _mm512_loadu_si512((const void *)(v + 64 * k));
        const __m512i lo = _mm512_and_si512(packed, mask), hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
        for (int t = 0; t < nt; t++) {
            s[t] = _mm512_dpbusd_epi32(s[t], lo, _mm512_set1_epi32(p[k * TILE + t]));
            s[t] = _mm512_dpbusd_epi32(s[t], hi, _mm512_set1_epi32(p[(4 + k) * TILE + t]));
        }
    }
}

// PF: whether the first pass over a group prefetches the next group (Q4_0: its read rate then rises by a
// tenth; Q8_0 reads twice the bytes, near a core's memory bandwidth, and the extra stream slows it).
#define TILE_BODY(NAME, DOTS, BB, PF)                                                                                \
    VNNI_GEMM __attribute__((always_inline)) static inline void NAME(const uint8_t *g, int nb, const int32_t *p, float *y, \
                                                                     long ldy, const int nt, const uint8_t *pf,       \
                                                                     const float *bias) {                             \
        __m512 acc[TILE];                                                                                            \
        __m512i s0[TILE], s1[TILE];                                                                                  \
        for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();                                                   \
        int b = 0;                                                                                                   \
        for (; b + 2 <= nb; b += 2, g += 2 * 16 * ((BB) + 2), p += 2 * PACK_BLOCK) { /* a pair, then its scales */ \
            if ((PF) && pf) {                                                                                        \
                for (int l = 0; l < 2 * 16 * ((BB) + 2); l += 64) _mm_prefetch((const char *)pf + l, _MM_HINT_T0);   \
                pf += 2 * 16 * ((BB) + 2);                                                                           \
            }                                                                                                        \
            DOTS(g, p, s0, nt);                                                                                      \
            STREAM_ORDER();                                                                                          \
            DOTS(g + 16 * (BB), p + PACK_BLOCK, s1, nt);                                                             \
            const uint16_t *sc = (const uint16_t *)(g + 32 * (BB));                                                  \
            const __m512 dw0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc));                             \
            const __m512 dw1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + 16)));                      \
            SCALE_INTO(acc, s0, dw0, p);                                                                             \
            SCALE_INTO(acc, s1, dw1, p + PACK_BLOCK);                                                                \
        }                                                                                                            \
        if (b < nb) { /* an odd last block, alone with its scales */                                                 \
            DOTS(g, p, s0, nt);                                                                                      \
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 16 * (BB))));                 \
            SCALE_INTO(acc, s0, dw, p);                                                                              \
        }                                                                                                            \
        const __m512 bv = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();                                        \
        for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + t * ldy, _mm512_add_ps(acc[t], bv));                       \
    }
TILE_BODY(tile_q8, dots_q8, 32, 0)
TILE_BODY(tile_q4, dots_q4, 16, 1)
#undef TILE_BODY
#undef SCALE_INTO
#undef STREAM_ORDER

// Each tile width gets its own unrolled body, so the accumulators live in registers. The tokens go in
// stretches whose packed activations (320 bytes per block per tile of eight) fill about 1 MiB, so that
// they stay in L2 while every group of the range passes over them; past that, each group would stream
// them from L3 again (a 1024-token encoder pass at K = 4320 packs 5.5 MB).
#define STRETCH_BYTES (1 << 20)
#define TILES(NAME, BODY, BB)                                                                                        \
    VNNI_GEMM static void NAME(const uint8_t *wq, int cols, int tokens, const int32_t *packed, const float *bias,    \
                               float *y, int ldy, int r0, int r1) {                                                  \
        const int nb = cols / 32;                                                                                    \
        int stretch = STRETCH_BYTES / (nb * PACK_BLOCK * 4) * TILE;                                                  \
        if (stretch < TILE) stretch = TILE;                                                                          \
        for (int s0 = 0; s0 < tokens; s0 += stretch) {                                                               \
            const int s1 = tokens - s0 < stretch ? tokens : s0 + stretch;                                            \
            for (int group = r0 / 16; group < r1 / 16; group++) {                                                    \
                const uint8_t *g = wq + group * group_bytes(nb, BB);                                                 \
                const float *bg = bias ? bias + 16 * group : 0;                                                      \
                for (int t0 = s0; t0 < s1; t0 += TILE) {                                                             \
                    const int32_t *p = packed + (long)(t0 / TILE) * nb * PACK_BLOCK;                                 \
                    float *out = y + (long)t0 * ldy + 16 * group;                                                    \
                    const uint8_t *pf = t0 == s0 && group + 1 < r1 / 16 ? g + group_bytes(nb, BB) : 0;              \
                    switch (s1 - t0 < TILE ? s1 - t0 : TILE) {                                                       \
                    case 8: BODY(g, nb, p, out, ldy, 8, pf, bg); break;                                              \
                    case 7: BODY(g, nb, p, out, ldy, 7, pf, bg); break;                                              \
                    case 6: BODY(g, nb, p, out, ldy, 6, pf, bg); break;                                              \
                    case 5: BODY(g, nb, p, out, ldy, 5, pf, bg); break;                                              \
                    case 4: BODY(g, nb, p, out, ldy, 4, pf, bg); break;                                              \
                    case 3: BODY(g, nb, p, out, ldy, 3, pf, bg); break;                                              \
                    case 2: BODY(g, nb, p, out, ldy, 2, pf, bg); break;                                              \
                    default: BODY(g, nb, p, out, ldy, 1, pf, bg); break;                                             \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }
TILES(gemm_q8_x16, tile_q8, 32)
TILES(gemm_q4_x16, tile_q4, 16)
#undef TILES

void ck_gemm_q8_0x16_vnni(const int8_t *wq, int cols, int tokens, const int32_t *packed, const float *bias, float *y, int ldy,
                          int r0, int r1) {
    gemm_q8_x16((const uint8_t *)wq, cols, tokens, packed, bias, y, ldy, r0, r1);
}

void ck_gemm_q4_0x16_vnni(const uint8_t *wq, int cols, int tokens, const int32_t *packed, const float *bias, float *y, int ldy,
                          int r0, int r1) {
    gemm_q4_x16(wq, cols, tokens, packed, bias, y, ldy, r0, r1);
}
#else
// Callers use these only where ck_vnni_available() says so.
void ck_gemm_q8_0x16_vnni(const int8_t *wq, int cols, int tokens, const int32_t *packed, const float *bias, float *y, int ldy,
                          int r0, int r1) {
    (void)wq; (void)cols; (void)tokens; (void)packed; (void)bias; (void)y; (void)ldy; (void)r0; (void)r1;
}
void ck_gemm_q4_0x16_vnni(const uint8_t *wq, int cols, int tokens, const int32_t *packed, const float *bias, float *y, int ldy,
                          int r0, int r1) {
    (void)wq; (void)cols; (void)tokens; (void)packed; (void)bias; (void)y; (void)ldy; (void)r0; (void)r1;
}
#endif
