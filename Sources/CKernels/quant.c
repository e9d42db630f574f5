#include "ckernels.h"
#include "quant_internal.h"
#include <math.h>
#include <string.h>

// The sixteen-row decode layout (ckernels.h): a group of 16 rows is one record of 16·nb·(bb + 2) bytes
// (bb: one row's bytes per block), blocks in pairs, each pair's 16-row scales right after its values.
static inline long x16_group_bytes(int nb, int bb) { return 16L * nb * (bb + 2); }
// Row r's block b in a matrix of that layout: the address of its first 4-byte piece (piece k is 64k
// bytes on) and its scale. For the portable twins; the fast kernels walk the record in order.
static inline const uint8_t *x16_block(const void *base, int r, int b, int nb, int bb, float *scale) {
    const uint8_t *pair = (const uint8_t *)base + (r / 16) * x16_group_bytes(nb, bb) + (long)(b & ~1) * 16 * (bb + 2);
    const int blocks = nb - (b & ~1) < 2 ? 1 : 2;
    *scale = f16_to_f32(((const uint16_t *)(pair + blocks * 16 * bb))[16 * (b & 1) + r % 16]);
    return pair + (b & 1) * 16 * bb + 4 * (r % 16);
}

void ck_quantize_q8_blocks(const float *x, int n, int8_t *q, float *d) {
    int b = 0;
#ifdef CK_AVX2
    // the scalar loop's arithmetic, eight lanes at a time (cvtps rounds to nearest even, as lrintf)
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
        m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0x4E));
        m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0xB1));
        const float amax = _mm256_cvtss_f32(m), s = amax / 127.0f, inv = s > 0 ? 1.0f / s : 0;
        d[b] = s;
        const __m256 iv = _mm256_set1_ps(inv);
        const __m256i p01 = _mm256_packs_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v0, iv)), _mm256_cvtps_epi32(_mm256_mul_ps(v1, iv)));
        const __m256i p23 = _mm256_packs_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v2, iv)), _mm256_cvtps_epi32(_mm256_mul_ps(v3, iv)));
        _mm256_storeu_si256((__m256i *)(q + 32 * b), _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), order));
    }
#endif
    for (; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0;
        for (int i = 0; i < 32; i++) { float a = fabsf(xb[i]); if (a > amax) amax = a; }
        float s = amax / 127.0f, inv = s > 0 ? 1.0f / s : 0;
        d[b] = s;
        for (int i = 0; i < 32; i++) q[32 * b + i] = (int8_t)lrintf(xb[i] * inv);
    }
}

static inline uint16_t f32_to_f16(float f) {
#ifdef CK_AVX2
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    _Float16 h = (_Float16)f;
    uint16_t bits;
    memcpy(&bits, &h, 2);
    return bits;
#endif
}

// Weight quantization at load, bit for bit as Quant.quantizeRow (its naive twin). Products and sums
// are separate statements so that they are never contracted into FMAs.
void ck_quantize_row_q8_0(const float *x, int cols, int8_t *q, uint16_t *d) {
    for (int b = 0; b < cols / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0;
        for (int i = 0; i < 32; i++) { float a = fabsf(xb[i]); amax = a > amax ? a : amax; }
        const float s = amax / 127.0f, inv = s > 0 ? 1.0f / s : 0;
        d[b] = f32_to_f16(s);
        for (int i = 0; i < 32; i++) {
            const float v = nearbyintf(xb[i] * inv);
            q[32 * b + i] = (int8_t)(v > -128 ? (v < 127 ? v : 127) : -128);
        }
    }
}

void ck_quantize_row_q4_0(const float *x, int cols, uint8_t *q, uint16_t *d) {
    for (int b = 0; b < cols / 32; b++) {
        const float *xb = x + 32 * b;
        float m = 0;
        for (int i = 0; i < 32; i++) if (fabsf(xb[i]) > fabsf(m)) m = xb[i];
        const float s = m / -8.0f, inv = s != 0 ? 1.0f / s : 0;
        d[b] = f32_to_f16(s);
        for (int i = 0; i < 16; i++) {
            float lo = xb[i] * inv, hi = xb[i + 16] * inv;
            lo = floorf(lo + 8.5f);
            hi = floorf(hi + 8.5f);
            const int l = lo > 0 ? (lo < 15 ? (int)lo : 15) : 0, h = hi > 0 ? (hi < 15 ? (int)hi : 15) : 0;
            q[16 * b + i] = (uint8_t)(l | h << 4);
        }
    }
}


void ck_gemv_q8_0(const int8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                  float *y, int r0, int r1) {
    const int nb = cols / 32;
    for (int r = r0; r < r1; r++) {
        const int8_t *w = wq + (long)r * cols;
        const uint16_t *s = wd + (long)r * nb;
#ifdef CK_AVX2
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int b = 0;
        for (; b + 1 < nb; b += 2) {
            __m256i a0 = _mm256_loadu_si256((const __m256i *)(w + 32 * b));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
            __m256i a1 = _mm256_loadu_si256((const __m256i *)(w + 32 * b + 32));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + 32 * b + 32));
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(s[b]) * xd[b]), dot32(a0, x0), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(s[b + 1]) * xd[b + 1]), dot32(a1, x1), acc1);
        }
        for (; b < nb; b++) {
            __m256i a0 = _mm256_loadu_si256((const __m256i *)(w + 32 * b));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(s[b]) * xd[b]), dot32(a0, x0), acc0);
        }
        y[r] = hsum(_mm256_add_ps(acc0, acc1));
#else
        float sum = 0;
        for (int b = 0; b < nb; b++) {
            int acc = 0;
            for (int i = 0; i < 32; i++) acc += (int)w[32 * b + i] * (int)xq[32 * b + i];
            sum += f16_to_f32(s[b]) * xd[b] * (float)acc;
        }
        y[r] = sum;
#endif
    }
}

void ck_prepare_q4_activations(const int8_t *xq, int cols, int8_t *xp, int32_t *xs) {
    const int nb = cols / 32;
    for (int pair = 0; pair < nb / 2; pair++) {
        const int8_t *x0 = xq + 64 * pair, *x1 = x0 + 32;
        int8_t *o = xp + 64 * pair;
        memcpy(o, x0, 16); memcpy(o + 16, x1, 16); memcpy(o + 32, x0 + 16, 16); memcpy(o + 48, x1 + 16, 16);
        // lane l of the kernel's int32 result covers bytes 4l..4l+3 of both halves
        for (int l = 0; l < 8; l++) {
            int sum = 0;
            for (int i = 0; i < 4; i++) sum += o[4 * l + i] + o[32 + 4 * l + i];
            xs[8 * pair + l] = 8 * sum;
        }
    }
}


void ck_gemv_q4_0(const uint8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                  const int8_t *xp, const int32_t *xs, float *y, int r0, int r1) {
    const int nb = cols / 32, npairs = nb / 2;
    for (int r = r0; r < r1; r++) {
        const uint8_t *w = wq + (long)r * (cols / 2);
        const uint16_t *s = wd + (long)r * nb;
        float tail = 0;
        if (nb & 1) tail = f16_to_f32(s[nb - 1]) * xd[nb - 1] * q4_block_scalar(w + 16 * (nb - 1), xq + 32 * (nb - 1));
#ifdef CK_AVX2
        // Nibbles are unsigned (0..15): maddubs(q, x) needs no sign trick, and the −8 offset is
        // taken off afterwards as 8·Σx, precomputed per lane in xs. x is pre-permuted (xp) so that
        // the low/high nibbles of two packed blocks meet their x values without shuffles.
        const __m256i mask = _mm256_set1_epi8(0x0F);
        const __m256i ones = _mm256_set1_epi16(1);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        int pair = 0;
        for (; pair + 4 <= npairs; pair += 4) {
            // scales of 8 blocks at once: d_w (f16) · d_x
            __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * pair))),
                                      _mm256_loadu_ps(xd + 2 * pair));
            for (int j = 0; j < 4; j++) {
                const int p = pair + j;
                __m256i packed = _mm256_loadu_si256((const __m256i *)(w + 32 * p));
                __m256i lo = _mm256_and_si256(packed, mask);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
                __m256i xl = _mm256_loadu_si256((const __m256i *)(xp + 64 * p));
                __m256i xh = _mm256_loadu_si256((const __m256i *)(xp + 64 * p + 32));
                __m256i d16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
                __m256i d32 = _mm256_sub_epi32(_mm256_madd_epi16(d16, ones),
                                               _mm256_loadu_si256((const __m256i *)(xs + 8 * p)));
                const __m256i idx = _mm256_setr_epi32(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1);
                __m256 sv = _mm256_permutevar8x32_ps(sc, idx);
                if (j & 1) acc1 = _mm256_fmadd_ps(sv, _mm256_cvtepi32_ps(d32), acc1);
                else acc0 = _mm256_fmadd_ps(sv, _mm256_cvtepi32_ps(d32), acc0);
            }
        }
        for (; pair < npairs; pair++) {
            __m256i packed = _mm256_loadu_si256((const __m256i *)(w + 32 * pair));
            __m256i lo = _mm256_and_si256(packed, mask);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
            __m256i xl = _mm256_loadu_si256((const __m256i *)(xp + 64 * pair));
            __m256i xh = _mm256_loadu_si256((const __m256i *)(xp + 64 * pair + 32));
            __m256i d16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
            __m256i d32 = _mm256_sub_epi32(_mm256_madd_epi16(d16, ones), _mm256_loadu_si256((const __m256i *)(xs + 8 * pair)));
            float s0 = f16_to_f32(s[2 * pair]) * xd[2 * pair], s1 = f16_to_f32(s[2 * pair + 1]) * xd[2 * pair + 1];
            __m256 sv = _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
            acc0 = _mm256_fmadd_ps(sv, _mm256_cvtepi32_ps(d32), acc0);
        }
        y[r] = hsum(_mm256_add_ps(acc0, acc1)) + tail;
#else
        (void)xp; (void)xs;
        float sum = tail;
        for (int b = 0; b < 2 * npairs; b++) sum += f16_to_f32(s[b]) * xd[b] * q4_block_scalar(w + 16 * b, xq + 32 * b);
        y[r] = sum;
#endif
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))

// Several rows at a time share each load of x (the kernels are otherwise bound by L1 loads), and
// each row is its own sequential stream. Which walk reads fastest was measured on both of this
// machine's bandwidth regimes (~35 and ~60 GB/s): rows that span pages go eight neighbours at a time;
// short Q4_0 rows go four at a time a quarter of the range apart (neighbouring short rows interleaved
// within a page defeat the hardware prefetcher: a third of the read rate lost) with software prefetch
// into L2; short Q8_0 rows, whose dot products are cheaper, stream fastest one at a time, unprefetched.
// (Weights quantized at load are stored sixteen-interleaved instead: ck_gemv_q8_0x16_vnni and
// ck_gemv_q4_0x16_vnni. The row walks serve checkpoints written by `minicpmo quantize` and the rows
// past the last whole group.)
#define Q_LONG_ROWS 8192
#define Q_PREFETCH 2048

int ck_vnni_available(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
}

void ck_prepare_q4_activations_vnni(const int8_t *xq, int cols, int8_t *xp, int32_t *xs) {
    // groups of 4 blocks: [x0[0:16] x1[0:16] x2[0:16] x3[0:16] | x0[16:32] .. x3[16:32]], and per
    // int32 lane (4 bytes of each half) −8 × Σx, the start of the lane's sum
    const int nq = cols / 128;
    for (int g = 0; g < nq; g++) {
        const int8_t *x = xq + 128 * g;
        int8_t *o = xp + 128 * g;
        for (int b = 0; b < 4; b++) {
            memcpy(o + 16 * b, x + 32 * b, 16);
            memcpy(o + 64 + 16 * b, x + 32 * b + 16, 16);
        }
        for (int l = 0; l < 16; l++) {
            int sum = 0;
            for (int i = 0; i < 4; i++) sum += o[4 * l + i] + o[64 + 4 * l + i];
            xs[16 * g + l] = -8 * sum;
        }
    }
}

// `rows` (1, 4 or 8) rows r + i·stride at a time.
// Sixteen blocks (four vectors) per step share one conversion of their scales; each vector's
// accumulator starts at −8·Σx of its lanes (xs), which removes the nibbles' +8 offset.
VNNI static inline void q4_vnni_rows(const uint8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                                     const int8_t *xp, const int32_t *xs, float *y, int r, int stride, int rows) {
    const int nb = cols / 32, nq = nb / 4, n16 = nq / 4;
    const __m512i mask = _mm512_set1_epi8(0x0F);
    const __m512i lane_block = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i four = _mm512_set1_epi32(4);
    __m512 acc[8];
    for (int i = 0; i < rows; i++) acc[i] = _mm512_setzero_ps();
    for (int h = 0; h < n16; h++) {
        const __m512 dx = _mm512_loadu_ps(xd + 16 * h);
        for (int i = 0; i < rows; i++) {
            const long ri = r + (long)i * stride;
            const uint8_t *w = wq + ri * (cols / 2) + 256 * h;
            for (int l = 0; l < 256; l += 64) _mm_prefetch((const char *)(w + Q_PREFETCH + l), _MM_HINT_T1);
            const __m512 sc = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wd + ri * nb + 16 * h))), dx);
            __m512i idx = lane_block;
            __m512 a = acc[i];
            for (int j = 0; j < 4; j++) {
                const int g = 4 * h + j;
                __m512i packed = _mm512_loadu_si512((const void *)(w + 64 * j));
                __m512i lo = _mm512_and_si512(packed, mask);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
                __m512i d = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)(xs + 16 * g)), lo, _mm512_loadu_si512((const void *)(xp + 128 * g)));
                d = _mm512_dpbusd_epi32(d, hi, _mm512_loadu_si512((const void *)(xp + 128 * g + 64)));
                a = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, sc), _mm512_cvtepi32_ps(d), a);
                idx = _mm512_add_epi32(idx, four);
            }
            acc[i] = a;
        }
    }
    for (int i = 0; i < rows; i++) {
        const long ri = r + (long)i * stride;
        const uint8_t *w = wq + ri * (cols / 2);
        const uint16_t *s = wd + ri * nb;
        __m512 a = acc[i];
        for (int g = 4 * n16; g < nq; g++) {  // groups of four blocks left over
            __m512i packed = _mm512_loadu_si512((const void *)(w + 64 * g));
            __m512i lo = _mm512_and_si512(packed, mask);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
            __m512i d = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)(xs + 16 * g)), lo, _mm512_loadu_si512((const void *)(xp + 128 * g)));
            d = _mm512_dpbusd_epi32(d, hi, _mm512_loadu_si512((const void *)(xp + 128 * g + 64)));
            __m128 sc = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(s + 4 * g))), _mm_loadu_ps(xd + 4 * g));
            a = _mm512_fmadd_ps(_mm512_permutexvar_ps(lane_block, _mm512_castps128_ps512(sc)), _mm512_cvtepi32_ps(d), a);
        }
        float tail = 0;
        for (int b = 4 * nq; b < nb; b++) tail += _cvtsh_ss(s[b]) * xd[b] * q4_block_scalar(w + 16 * b, xq + 32 * b);
        y[ri] = _mm512_reduce_add_ps(a) + tail;
    }
}

// Rows stored sixteen-interleaved (ckernels.h): lane i of every vector is row i, so one stream feeds
// sixteen dot products with no horizontal sums, each block takes one scale conversion and one FMA for
// all sixteen rows, and x arrives as broadcasts. About half the instructions per weight byte of the row
// walks, which is what lets one core keep enough reads in flight. Rows r0, r1: multiples of 16.
// Each block's sum starts at −128·Σx (Q8_0: the weights' flipped sign bit) or −8·Σx (Q4_0: the
// nibbles' offset), so the unsigned-by-signed products come out signed.
// One block of sixteen rows: its integer sums (Q8_X16_DOTS), then scaled into acc (Q8_X16_SCALE).
#define Q8_X16_DOTS(WB, B, SUM)                                                                                      \
    __m512i SUM;                                                                                                     \
    do {                                                                                                             \
        const int32_t *xk = x4 + 8 * (B);                                                                            \
        __m512i a0 = _mm512_set1_epi32(-128 * xsum[B]), a1 = _mm512_setzero_si512(); /* two chains of four */         \
        for (int k = 0; k < 8; k += 2) {                                                                             \
            a0 = _mm512_dpbusd_epi32(a0, _mm512_xor_si512(_mm512_loadu_si512((const void *)((WB) + 64 * k)), flip), _mm512_set1_epi32(xk[k])); \
            a1 = _mm512_dpbusd_epi32(a1, _mm512_xor_si512(_mm512_loadu_si512((const void *)((WB) + 64 * k + 64)), flip), _mm512_set1_epi32(xk[k + 1])); \
        }                                                                                                            \
        SUM = _mm512_add_epi32(a0, a1);                                                                              \
    } while (0)
#define X16_SCALE(S, B, SUM)                                                                                         \
    acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(S))), _mm512_set1_ps(xd[B])), \
                          _mm512_cvtepi32_ps(SUM), acc)

// Both blocks of a pair are summed before their scales are read, and the compiler may not hoist the
// second block's loads above the first's (STREAM_ORDER), so that every load of the stream lands at or
// after the one before: reading back or ahead of the stream (the second block first, or the scales
// between the blocks) cost more than half of one core's read rate here.
#define STREAM_ORDER() __asm__ volatile("" ::: "memory")
VNNI void ck_gemv_q8_0x16_vnni(const int8_t *wq, int cols, const int8_t *xq, const float *xd,
                               const int32_t *xsum, float *y, int r0, int r1) {
    const int nb = cols / 32;
    const int32_t *x4 = (const int32_t *)xq;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int group = r0 / 16; group < r1 / 16; group++) {
        const int8_t *g = wq + group * x16_group_bytes(nb, 32);
        __m512 acc = _mm512_setzero_ps();
        int b = 0;
        for (; b + 2 <= nb; b += 2, g += 2 * 16 * 34) {  // a pair: 1024 bytes of values, then 64 of scales
            Q8_X16_DOTS(g, b, d0);
            STREAM_ORDER();
            Q8_X16_DOTS(g + 512, b + 1, d1);
            X16_SCALE(g + 1024, b, d0);
            X16_SCALE((const uint16_t *)(g + 1024) + 16, b + 1, d1);
        }
        if (b < nb) {
            Q8_X16_DOTS(g, b, d0);
            X16_SCALE(g + 512, b, d0);
        }
        _mm512_storeu_ps(y + 16 * group, acc);
    }
}
#undef Q8_X16_DOTS


// Q4_0: byte j of piece k holds values 4k+j (low nibble) and 16+4k+j (high nibble). GFNI moves the high
// nibbles down in one instruction (an affine map over GF(2) per byte) instead of a shift and a mask.
// The two variants are one body with their own target each, so that neither calls the other.
#define X16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,gfni,f16c,fma")))
#define HIGH_GFNI(v) _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(0x1020408000000000LL), 0)  // bit i = bit i+4
#define HIGH_SHIFT(v) _mm512_and_si512(_mm512_srli_epi16(v, 4), mask)
#define Q4_X16_DOTS(WB, B, SUM, HIGH)                                                                                \
    __m512i SUM;                                                                                                     \
    do {                                                                                                             \
        const int32_t *xk = x4 + 8 * (B);                                                                            \
        __m512i a0 = _mm512_set1_epi32(-8 * xsum[B]), a1 = _mm512_setzero_si512();                                    \
        for (int k = 0; k < 4; k++) {                                                                                \
            const __m512i v = _mm512_loadu_si512((const void *)((WB) + 64 * k));                                     \
            a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(v, mask), _mm512_set1_epi32(xk[k]));                       \
            a1 = _mm512_dpbusd_epi32(a1, HIGH(v), _mm512_set1_epi32(xk[4 + k]));                                     \
        }                                                                                                            \
        SUM = _mm512_add_epi32(a0, a1);                                                                              \
    } while (0)
#define Q4_X16(NAME, TARGET, HIGH)                                                                                   \
    TARGET static void NAME(const uint8_t *wq, int cols, const int8_t *xq, const float *xd, const int32_t *xsum,     \
                            float *y, int r0, int r1) {                                                              \
        const int nb = cols / 32;                                                                                    \
        const int32_t *x4 = (const int32_t *)xq;                                                                     \
        const __m512i mask = _mm512_set1_epi8(0x0F);                                                                 \
        for (int group = r0 / 16; group < r1 / 16; group++) {                                                        \
            const uint8_t *g = wq + group * x16_group_bytes(nb, 16);                                                 \
            __m512 acc = _mm512_setzero_ps();                                                                        \
            int b = 0;                                                                                               \
            for (; b + 2 <= nb; b += 2, g += 2 * 16 * 18) { /* a pair: 512 bytes of values, then 64 of scales */     \
                Q4_X16_DOTS(g, b, d0, HIGH);                                                                         \
                STREAM_ORDER();                                                                                      \
                Q4_X16_DOTS(g + 256, b + 1, d1, HIGH);                                                               \
                X16_SCALE(g + 512, b, d0);                                                                           \
                X16_SCALE((const uint16_t *)(g + 512) + 16, b + 1, d1);                                              \
            }                                                                                                        \
            if (b < nb) {                                                                                            \
                Q4_X16_DOTS(g, b, d0, HIGH);                                                                         \
                X16_SCALE(g + 256, b, d0);                                                                           \
            }                                                                                                        \
            _mm512_storeu_ps(y + 16 * group, acc);                                                                   \
        }                                                                                                            \
    }
Q4_X16(q4_x16_gfni, X16, HIGH_GFNI)
Q4_X16(q4_x16_shift, VNNI, HIGH_SHIFT)
#undef Q4_X16
#undef Q4_X16_DOTS
#undef STREAM_ORDER
#undef X16_SCALE
#undef HIGH_GFNI
#undef HIGH_SHIFT

int ck_gfni_available(void) { return __builtin_cpu_supports("gfni"); }

void ck_gemv_q4_0x16_vnni(const uint8_t *wq, int cols, const int8_t *xq, const float *xd,
                          const int32_t *xsum, float *y, int r0, int r1, int gfni) {
    (gfni ? q4_x16_gfni : q4_x16_shift)(wq, cols, xq, xd, xsum, y, r0, r1);
}

void ck_prepare_q8_activations_vnni(const int8_t *xq, int cols, int32_t *xs) {
    for (int l = 0; l < cols / 4; l++) xs[l] = -128 * (xq[4 * l] + xq[4 * l + 1] + xq[4 * l + 2] + xq[4 * l + 3]);
}

static inline float q8_block_scalar(const int8_t *w, const int8_t *x) {
    int acc = 0;
    for (int i = 0; i < 32; i++) acc += (int)w[i] * (int)x[i];
    return (float)acc;
}

// VNNI multiplies unsigned by signed bytes: the weights are made unsigned by flipping their sign bit
// (w + 128), and the accumulators start at −128·Σx of their lane (xs), which takes the offset back.
// `rows` (1, 4 or 8) rows r + i·stride at a time.
#define Q8_FLIP(P) _mm512_xor_si512(_mm512_loadu_si512((const void *)(P)), _mm512_set1_epi8((char)0x80))
VNNI static inline void q8_vnni_rows(const int8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                                     const int32_t *xs, float *y, int r, int stride, int rows) {
    const int nb = cols / 32, ng = nb / 8;
    const __m512i pair0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i two = _mm512_set1_epi32(2);
    __m512 acc[8];
    for (int i = 0; i < rows; i++) acc[i] = _mm512_setzero_ps();
    for (int g = 0; g < ng; g++) {
        const int8_t *xg = xq + 256 * g;
        const int32_t *og = xs + 64 * g;
        const __m256 dx = _mm256_loadu_ps(xd + 8 * g);
        for (int i = 0; i < rows; i++) {
            const long ri = r + (long)i * stride;
            const int8_t *wg = wq + ri * cols + 256 * g;
            // d_w · d_x of eight blocks; vector j covers blocks 2j and 2j+1 (eight lanes each)
            const __m512 sc = _mm512_castps256_ps512(
                _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wd + ri * nb + 8 * g))), dx));
            __m512i idx = pair0;
            __m512 a = acc[i];
            for (int j = 0; j < 4; j++) {
                __m512i d = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)(og + 16 * j)), Q8_FLIP(wg + 64 * j),
                                                _mm512_loadu_si512((const void *)(xg + 64 * j)));
                a = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, sc), _mm512_cvtepi32_ps(d), a);
                idx = _mm512_add_epi32(idx, two);
            }
            acc[i] = a;
        }
    }
    for (int i = 0; i < rows; i++) {
        const long ri = r + (long)i * stride;
        const int8_t *w = wq + ri * cols;
        const uint16_t *s = wd + ri * nb;
        __m512 a = acc[i];
        int b = 8 * ng;
        for (; b + 2 <= nb; b += 2) {  // pairs left over from the groups of eight
            __m512i d = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)(xs + 8 * b)), Q8_FLIP(w + 32 * b),
                                            _mm512_loadu_si512((const void *)(xq + 32 * b)));
            __m512 sc = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(s[b]) * xd[b]), _mm256_set1_ps(_cvtsh_ss(s[b + 1]) * xd[b + 1]), 1);
            a = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(d), a);
        }
        float tail = b < nb ? _cvtsh_ss(s[b]) * xd[b] * q8_block_scalar(w + 32 * b, xq + 32 * b) : 0;
        y[ri] = _mm512_reduce_add_ps(a) + tail;
    }
}
#undef Q8_FLIP

VNNI void ck_gemv_q8_0_vnni(const int8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                            const int32_t *xs, float *y, int r0, int r1) {
    int r = r0;
    if (cols >= Q_LONG_ROWS)
        for (; r + 8 <= r1; r += 8) q8_vnni_rows(wq, wd, cols, xq, xd, xs, y, r, 1, 8);
    for (; r < r1; r++) q8_vnni_rows(wq, wd, cols, xq, xd, xs, y, r, 0, 1);
}

VNNI void ck_gemv_q4_0_vnni(const uint8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                            const int8_t *xp, const int32_t *xs, float *y, int r0, int r1) {
    int r = r0;
    if (cols >= Q_LONG_ROWS) {
        for (; r + 8 <= r1; r += 8) q4_vnni_rows(wq, wd, cols, xq, xd, xp, xs, y, r, 1, 8);
    } else {
        const int quarter = (r1 - r0) / 4;
        for (int k = 0; k < quarter; k++) q4_vnni_rows(wq, wd, cols, xq, xd, xp, xs, y, r0 + k, quarter, 4);
        r = r0 + 4 * quarter;
    }
    for (; r < r1; r++) q4_vnni_rows(wq, wd, cols, xq, xd, xp, xs, y, r, 0, 1);
}
#else
int ck_vnni_available(void) { return 0; }
void ck_prepare_q8_activations_vnni(const int8_t *xq, int cols, int32_t *xs) { (void)xq; (void)cols; (void)xs; }
void ck_gemv_q8_0x16_vnni(const int8_t *wq, int cols, const int8_t *xq, const float *xd,
                          const int32_t *xsum, float *y, int r0, int r1) {
    (void)wq; (void)cols; (void)xq; (void)xd; (void)xsum; (void)y; (void)r0; (void)r1;
}
int ck_gfni_available(void) { return 0; }
void ck_gemv_q4_0x16_vnni(const uint8_t *wq, int cols, const int8_t *xq, const float *xd,
                          const int32_t *xsum, float *y, int r0, int r1, int gfni) {
    (void)wq; (void)cols; (void)xq; (void)xd; (void)xsum; (void)y; (void)r0; (void)r1; (void)gfni;
}
void ck_gemv_q8_0_vnni(const int8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                       const int32_t *xs, float *y, int r0, int r1) {
    (void)xs;
    ck_gemv_q8_0(wq, wd, cols, xq, xd, y, r0, r1);
}
void ck_prepare_q4_activations_vnni(const int8_t *xq, int cols, int8_t *xp, int32_t *xs) { (void)xq; (void)cols; (void)xp; (void)xs; }
void ck_gemv_q4_0_vnni(const uint8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                       const int8_t *xp, const int32_t *xs, float *y, int r0, int r1) {
    ck_gemv_q4_0(wq, wd, cols, xq, xd, xp, xs, y, r0, r1);
}
#endif


void ck_block_sums(const int8_t *xq, int cols, int32_t *xsum) {
    int b = 0;
#ifdef CK_AVX2
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (; b < cols / 32; b++) {  // Σ(x + 128) by sums of absolute differences from zero, less 32·128
        const __m256i t = _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xq + 32 * b)), flip), _mm256_setzero_si256());
        const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        xsum[b] = (int32_t)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1)) - 32 * 128;
    }
#endif
    for (; b < cols / 32; b++) {
        int sum = 0;
        for (int i = 0; i < 32; i++) sum += xq[32 * b + i];
        xsum[b] = sum;
    }
}

// Portable twins over the same layout, one row at a time.
void ck_gemv_q8_0x16(const int8_t *wq, int cols, const int8_t *xq, const float *xd, float *y, int r0, int r1) {
    const int nb = cols / 32;
    for (int r = r0; r < r1; r++) {
        float sum = 0, sb;
        for (int b = 0; b < nb; b++) {
            const int8_t *w = (const int8_t *)x16_block(wq, r, b, nb, 32, &sb);
            int acc = 0;
            for (int i = 0; i < 32; i++) acc += (int)w[64 * (i / 4) + i % 4] * (int)xq[32 * b + i];
            sum += sb * xd[b] * (float)acc;
        }
        y[r] = sum;
    }
}

void ck_dequantize_q8_0x16(const int8_t *q, int cols, int r0, int r1, float *out) {
    const int nb = cols / 32;
    float sb;
    for (int r = r0; r < r1; r++, out += cols)
        for (int b = 0; b < nb; b++) {
            const int8_t *w = (const int8_t *)x16_block(q, r, b, nb, 32, &sb);
            for (int i = 0; i < 32; i++) out[32 * b + i] = (float)w[64 * (i / 4) + i % 4] * sb;
        }
}

void ck_gemv_q4_0x16(const uint8_t *wq, int cols, const int8_t *xq, const float *xd, float *y, int r0, int r1) {
    const int nb = cols / 32;
    for (int r = r0; r < r1; r++) {
        float sum = 0, sb;
        for (int b = 0; b < nb; b++) {
            const uint8_t *w = x16_block(wq, r, b, nb, 16, &sb);
            int acc = 0;
            for (int i = 0; i < 16; i++) {  // byte j of piece k: values 4k+j (low nibble) and 16+4k+j (high)
                const uint8_t v = w[64 * (i / 4) + i % 4];
                acc += ((v & 0x0F) - 8) * xq[32 * b + i] + ((v >> 4) - 8) * xq[32 * b + 16 + i];
            }
            sum += sb * xd[b] * (float)acc;
        }
        y[r] = sum;
    }
}

void ck_dequantize_q4_0x16(const uint8_t *q, int cols, int r0, int r1, float *out) {
    const int nb = cols / 32;
    float sb;
    for (int r = r0; r < r1; r++, out += cols)
        for (int b = 0; b < nb; b++) {
            const uint8_t *w = x16_block(q, r, b, nb, 16, &sb);
            for (int i = 0; i < 16; i++) {
                const uint8_t v = w[64 * (i / 4) + i % 4];
                out[32 * b + i] = (float)((v & 0x0F) - 8) * sb;
                out[32 * b + 16 + i] = (float)((v >> 4) - 8) * sb;
            }
        }
}

void ck_dequantize_q8_0(const int8_t *q, const uint16_t *d, int rows, int cols, float *out) {
    const long nb = (long)rows * (cols / 32);
    for (long b = 0; b < nb; b++) {
        const float s = f16_to_f32(d[b]);
        const int8_t *qb = q + 32 * b;
        float *o = out + 32 * b;
#ifdef CK_AVX2
        const __m256 sv = _mm256_set1_ps(s);
        for (int i = 0; i < 32; i += 8) {
            __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qb + i))));
            _mm256_storeu_ps(o + i, _mm256_mul_ps(v, sv));
        }
#else
        for (int i = 0; i < 32; i++) o[i] = (float)qb[i] * s;
#endif
    }
}

void ck_dequantize_q4_0(const uint8_t *q, const uint16_t *d, int rows, int cols, float *out) {
    const long nb = (long)rows * (cols / 32);
    for (long b = 0; b < nb; b++) {
        const float s = f16_to_f32(d[b]);
        const uint8_t *qb = q + 16 * b;
        float *o = out + 32 * b;
#ifdef CK_AVX2
        const __m256 sv = _mm256_set1_ps(s);
        const __m128i p = _mm_loadu_si128((const __m128i *)qb), m = _mm_set1_epi8(0x0F);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(p, m), _mm_set1_epi8(8));
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(p, 4), m), _mm_set1_epi8(8));
        _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), sv));
        _mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), sv));
        _mm256_storeu_ps(o + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), sv));
        _mm256_storeu_ps(o + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), sv));
#else
        for (int i = 0; i < 16; i++) {
            o[i] = (float)((int)(qb[i] & 0x0F) - 8) * s;
            o[i + 16] = (float)((int)(qb[i] >> 4) - 8) * s;
        }
#endif
    }
}
