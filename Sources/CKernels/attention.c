#include "ckernels.h"
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CK_AVX2 1
#endif

// Key and value rows of a long context live in memory. A paged cache keeps one head's rows back to back
// within a page, but pages lie anywhere: each loop prefetches the row PF positions ahead, which carries
// the stream across page boundaries (and across the strides of position-major rows).
#define PF 8

static inline void prefetch_row(const float *row, int hd) {
#if defined(__GNUC__) || defined(__clang__)
    for (int i = 0; i < hd; i += 16) __builtin_prefetch(row + i, 0, 3);
#else
    (void)row; (void)hd;
#endif
}

#ifdef CK_AVX2
static inline float hsum(__m256 t) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
#endif

static inline float dot(const float *a, const float *b, int n) {
    int i = 0;
    float sum = 0;
#ifdef CK_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    }
    if (i + 8 <= n) { a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0); i += 8; }
    sum = hsum(_mm256_add_ps(a0, a1));
#endif
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

void ck_attn_scores(const float *q, int group, int hd, const float *const *krows, int n, float scale, float *s, int lds) {
    for (int j = 0; j < n; j++) {
        if (j + PF < n) prefetch_row(krows[j + PF], hd);
        for (int g = 0; g < group; g++) s[(long)g * lds + j] = dot(q + (long)g * hd, krows[j], hd) * scale;
    }
}

void ck_attn_values(const float *p, int ldp, int group, int hd, const float *const *vrows, int n, float *o) {
    for (long i = 0; i < (long)group * hd; i++) o[i] = 0;
    int j0 = 0;
#ifdef CK_AVX2
    // Blocks of rows stay in L1 while every head sweeps them with its 64 outputs in registers: o is
    // read and written once per block instead of once per row.
    enum { RB = 16 };
    if (hd % 64 == 0)
        for (; j0 + RB <= n; j0 += RB) {
            for (int jj = 0; jj < RB && j0 + RB + jj < n; jj++) prefetch_row(vrows[j0 + RB + jj], hd);
            for (int g = 0; g < group; g++) {
                const float *pg = p + (long)g * ldp + j0;
                for (int i = 0; i < hd; i += 64) {
                    float *og = o + (long)g * hd + i;
                    __m256 acc[8];
                    for (int k = 0; k < 8; k++) acc[k] = _mm256_loadu_ps(og + 8 * k);
                    for (int jj = 0; jj < RB; jj++) {
                        const __m256 w = _mm256_set1_ps(pg[jj]);
                        const float *v = vrows[j0 + jj] + i;
                        for (int k = 0; k < 8; k++) acc[k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8 * k), acc[k]);
                    }
                    for (int k = 0; k < 8; k++) _mm256_storeu_ps(og + 8 * k, acc[k]);
                }
            }
        }
#endif
    for (int j = j0; j < n; j++) {
        if (j + PF < n) prefetch_row(vrows[j + PF], hd);
        const float *v = vrows[j];
        for (int g = 0; g < group; g++) {
            const float w = p[(long)g * ldp + j];
            float *og = o + (long)g * hd;
            for (int i = 0; i < hd; i++) og[i] += w * v[i];
        }
    }
}
