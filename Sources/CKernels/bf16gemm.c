// Prefill GEMM with bfloat16 dot products (AVX512_BF16's vdpbf16ps: 32 multiply-adds per
// instruction, twice float32 FMA): C[t, r] = Σ_k X[t, k] · W[r, k] with X already rounded to bf16
// and W bf16 [rows, k], as outer products over k-pairs: a 6×32 tile of C is 12 accumulators fed by one
// broadcast x pair per row and two loads of packed weights per pair.
#include "ckernels.h"
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BF16DOT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

int ck_bf16_gemm_available(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

// The packed form: 32 weight rows interleaved by k-pairs, wp[p][j][e] = w[r0 + j][2p + e], so that one
// 512-bit load holds the pair p of 16 rows and vdpbf16ps against a broadcast x pair updates 16 outputs
// (an outer product: no horizontal sums, and each x pair is reused for 32 columns).
void ck_bf16_pack32(const uint16_t *w, int rows, int k, uint16_t *out) {
    int pairs = (k + 1) / 2;
    for (int p = 0; p < pairs; p++)
        for (int j = 0; j < 32; j++)
            for (int e = 0; e < 2; e++) {
                int col = 2 * p + e;
                out[(long)p * 64 + j * 2 + e] = (j < rows && col < k) ? w[(long)j * k + col] : 0;
            }
}

#define DEFINE_PACKED(RM)                                                                                     \
    BF16DOT static void packed_##RM(const uint16_t *x, int pairs, int ldx, const uint16_t *wp, int ncols,      \
                                    float *c, int ldc) {                                                       \
        __m512 acc[RM][2];                                                                                     \
        for (int i = 0; i < RM; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();                             \
        for (int p = 0; p < pairs; p++) {                                                                      \
            __m512bh w0 = (__m512bh)_mm512_loadu_si512(wp + (long)p * 64);                                     \
            __m512bh w1 = (__m512bh)_mm512_loadu_si512(wp + (long)p * 64 + 32);                                \
            for (int i = 0; i < RM; i++) {                                                                     \
                int32_t pair;                                                                                  \
                memcpy(&pair, x + (long)i * ldx + 2 * p, 4);                                                   \
                __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);                                               \
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], xv, w0);                                               \
                acc[i][1] = _mm512_dpbf16_ps(acc[i][1], xv, w1);                                               \
            }                                                                                                  \
        }                                                                                                      \
        __mmask16 m0 = ncols >= 16 ? 0xFFFF : (__mmask16)((1u << ncols) - 1);                                  \
        __mmask16 m1 = ncols >= 32 ? 0xFFFF : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);         \
        for (int i = 0; i < RM; i++) {                                                                         \
            _mm512_mask_storeu_ps(c + (long)i * ldc, m0, acc[i][0]);                                           \
            _mm512_mask_storeu_ps(c + (long)i * ldc + 16, m1, acc[i][1]);                                      \
        }                                                                                                      \
    }

DEFINE_PACKED(6)
DEFINE_PACKED(5)
DEFINE_PACKED(4)
DEFINE_PACKED(3)
DEFINE_PACKED(2)
DEFINE_PACKED(1)

BF16DOT void ck_bf16_gemm_packed(const uint16_t *x, int m, int ldx, const uint16_t *wp, int k, int ncols, float *c, int ldc) {
    int pairs = (k + 1) / 2, t = 0;
    for (; t + 6 <= m; t += 6) packed_6(x + (long)t * ldx, pairs, ldx, wp, ncols, c + (long)t * ldc, ldc);
    switch (m - t) {
    case 5: packed_5(x + (long)t * ldx, pairs, ldx, wp, ncols, c + (long)t * ldc, ldc); break;
    case 4: packed_4(x + (long)t * ldx, pairs, ldx, wp, ncols, c + (long)t * ldc, ldc); break;
    case 3: packed_3(x + (long)t * ldx, pairs, ldx, wp, ncols, c + (long)t * ldc, ldc); break;
    case 2: packed_2(x + (long)t * ldx, pairs, ldx, wp, ncols, c + (long)t * ldc, ldc); break;
    case 1: packed_1(x + (long)t * ldx, pairs, ldx, wp, ncols, c + (long)t * ldc, ldc); break;
    default: break;
    }
}
#else
int ck_bf16_gemm_available(void) { return 0; }
void ck_bf16_pack32(const uint16_t *w, int rows, int k, uint16_t *out) { (void)w; (void)rows; (void)k; (void)out; }
void ck_bf16_gemm_packed(const uint16_t *x, int m, int ldx, const uint16_t *wp, int k, int ncols, float *c, int ldc) {
    (void)x; (void)m; (void)ldx; (void)wp; (void)k; (void)ncols; (void)c; (void)ldc;
}
#endif
