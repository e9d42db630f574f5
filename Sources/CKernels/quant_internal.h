// Helpers shared by the block-quantized kernels (quant.c, qgemm_plain.c); not part of the module's interface.
#ifndef CK_QUANT_INTERNAL_H
#define CK_QUANT_INTERNAL_H
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define CK_AVX2 1
#endif

static inline float f16_to_f32(uint16_t h) {
#ifdef CK_AVX2
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) { bits = sign; }
        else { exp = 127 - 15 + 1; while (!(man & 0x400)) { man <<= 1; exp--; } man &= 0x3FF; bits = sign | (exp << 23) | (man << 13); }
    } else if (exp == 31) { bits = sign | 0x7F800000 | (man << 13); }
    else { bits = sign | ((exp + 127 - 15) << 23) | (man << 13); }
    float f; memcpy(&f, &bits, 4); return f;
#endif
}

#ifdef CK_AVX2
// Σ a·b over 32 signed bytes, as 8 int32 lanes converted to float: |a| · sign(b, a) keeps the
// unsigned × signed form that maddubs needs.
static inline __m256 dot32(__m256i a, __m256i b) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

// The last block of an odd count, in scalar code.
static inline float q4_block_scalar(const uint8_t *w, const int8_t *x) {
    int acc = 0;
    for (int i = 0; i < 16; i++) {
        acc += ((int)(w[i] & 0x0F) - 8) * (int)x[i];
        acc += ((int)(w[i] >> 4) - 8) * (int)x[16 + i];
    }
    return (float)acc;
}

#endif
