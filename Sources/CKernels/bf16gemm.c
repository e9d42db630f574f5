// Prefill GEMM with bfloat16 dot products (AVX512_BF16's vdpbf16ps: 32 multiply-adds per
// instruction, twice float32 FMA): C[t, r] = Σ_k X[t, k] · W[r, k] with X already rounded to bf16
// and W bf16 [rows, k]. Each 4×6 tile of C is 24 float accumulators fed by 4 token rows and 6
// weight rows along k; token blocks of TB rows stay in L2 while weight rows stream through L1.
#include "ckernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BF16DOT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define TB 64

#define DEFINE_TILE(RM, RN)                                                                                   \
    BF16DOT static void tile_##RM##_##RN(const uint16_t *x, int k, const uint16_t *w, long r0, float *c,        \
                                         int ldc) {                                                            \
        __m512 acc[RM][RN];                                                                                    \
        for (int i = 0; i < RM; i++)                                                                           \
            for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();                                      \
        for (int kk = 0; kk < k; kk += 32) {                                                                   \
            __mmask32 mask = k - kk >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (k - kk)) - 1);        \
            __m512bh xv[RM];                                                                                   \
            for (int i = 0; i < RM; i++)                                                                       \
                xv[i] = (__m512bh)_mm512_maskz_loadu_epi16(mask, x + (long)i * k + kk);                        \
            for (int j = 0; j < RN; j++) {                                                                     \
                __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + (r0 + j) * (long)k + kk);           \
                for (int i = 0; i < RM; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);               \
            }                                                                                                  \
        }                                                                                                      \
        for (int i = 0; i < RM; i++)                                                                           \
            for (int j = 0; j < RN; j++) c[(long)i * ldc + r0 + j] = _mm512_reduce_add_ps(acc[i][j]);           \
    }

DEFINE_TILE(4, 6)
DEFINE_TILE(1, 6)
DEFINE_TILE(4, 1)
DEFINE_TILE(1, 1)

BF16DOT static void block(const uint16_t *x, int m, int k, const uint16_t *w, int r0, int r1, float *c, int ldc) {
    int r = r0;
    for (; r + 6 <= r1; r += 6) {
        int t = 0;
        for (; t + 4 <= m; t += 4) tile_4_6(x + (long)t * k, k, w, r, c + (long)t * ldc, ldc);
        for (; t < m; t++) tile_1_6(x + (long)t * k, k, w, r, c + (long)t * ldc, ldc);
    }
    for (; r < r1; r++) {
        int t = 0;
        for (; t + 4 <= m; t += 4) tile_4_1(x + (long)t * k, k, w, r, c + (long)t * ldc, ldc);
        for (; t < m; t++) tile_1_1(x + (long)t * k, k, w, r, c + (long)t * ldc, ldc);
    }
}

int ck_bf16_gemm_available(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

void ck_bf16_gemm(const uint16_t *x, int m, int k, const uint16_t *w, int r0, int r1, float *c, int ldc) {
    for (int t = 0; t < m; t += TB) block(x + (long)t * k, m - t < TB ? m - t : TB, k, w, r0, r1, c + (long)t * ldc, ldc);
}
#else
int ck_bf16_gemm_available(void) { return 0; }
void ck_bf16_gemm(const uint16_t *x, int m, int k, const uint16_t *w, int r0, int r1, float *c, int ldc) {
    (void)x; (void)m; (void)k; (void)w; (void)r0; (void)r1; (void)c; (void)ldc;
}
#endif
