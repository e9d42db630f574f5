// Prefill GEMM with bfloat16 dot products (AVX512_BF16's vdpbf16ps: 32 multiply-adds per
// instruction, twice float32 FMA): C[t, r] = Σ_k X[t, k] · W[r, k] with X already rounded to bf16
// and W bf16 [rows, k], as outer products over k-pairs: a 6×32 tile of C is 12 accumulators fed by one
// broadcast x pair per row and two loads of packed weights per pair.
#include "ckernels.h"
#include <string.h>

// The transpose of a bf16 matrix v [keys, ld] (columns d0 ..< d0 + dims, dims ≤ 32) packed as
// ck_bf16_pack32 packs rows: wp[p][j][e] = v[2p + e][d0 + j], so that Σ_key p[t, key] · v[key, d] (attention's
// P·V) runs on ck_bf16_gemm_packed with the keys as its k.
void ck_bf16_pack32_transposed(const uint16_t *v, int ld, int keys, int d0, int dims, uint16_t *out) {
    int pairs = (keys + 1) / 2;
    for (int p = 0; p < pairs; p++)
        for (int j = 0; j < 32; j++)
            for (int e = 0; e < 2; e++) {
                int key = 2 * p + e;
                out[(long)p * 64 + j * 2 + e] = (j < dims && key < keys) ? v[(long)key * ld + d0 + j] : 0;
            }
}

static void f32_to_bf16_scalar(const float *x, long n, float scale, uint16_t *out) {
    for (long i = 0; i < n; i++) {
        float v = x[i] * scale;
        uint32_t b;
        memcpy(&b, &v, 4);
        out[i] = v != v ? (uint16_t)((b >> 16) | 0x40) : (uint16_t)((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
    }
}

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

// A few tokens (decode batches, short prompts): packing 32 rows costs more than the product when each
// packed row serves only a handful of tokens, so the rows are read as stored. Three rows at a time, each
// 32-value slice of a row meets the same slice of every token of a tile of up to eight (24 accumulators,
// one horizontal sum each at the end); the tail past the last whole slice goes in masked. The next
// three rows are prefetched as these are read: three short streams alone do not keep the memory busy.
#define SKINNY_TILE 8
#define SKINNY_ROWS 3
// nr < SKINNY_ROWS (the last rows of a range) reads row nr − 1 again in the unused slots and writes nr.

// The three rows' sums for one token in one vector: halves added, then horizontal pairs, a third of the
// shuffles of three separate reductions (at k = 3584 those were a tenth of the kernel's instructions).
BF16DOT static inline __m128 hsum3(__m512 a, __m512 b, __m512 c) {
#define HALVES(v) _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(HALVES(a), HALVES(b)), _mm256_hadd_ps(HALVES(c), _mm256_setzero_ps()));
#undef HALVES
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}
#define DEFINE_SKINNY(NT)                                                                                    \
    BF16DOT static void skinny_##NT(const uint16_t *x, int ldx, const uint16_t *w, int k, int nr, float *y, int ldy) { \
        const uint16_t *row[SKINNY_ROWS];                                                                     \
        for (int r = 0; r < SKINNY_ROWS; r++) row[r] = w + (long)(r < nr ? r : nr - 1) * k;                   \
        __m512 a[SKINNY_ROWS][NT];                                                                            \
        for (int r = 0; r < SKINNY_ROWS; r++) for (int t = 0; t < NT; t++) a[r][t] = _mm512_setzero_ps();   \
        int i = 0;                                                                                            \
        for (; i + 32 <= k; i += 32) {                                                                        \
            __m512bh wr[SKINNY_ROWS];                                                                         \
            for (int r = 0; r < SKINNY_ROWS; r++) {                                                           \
                wr[r] = (__m512bh)_mm512_loadu_si512(row[r] + i);                                             \
                _mm_prefetch((const char *)(row[r] + (long)SKINNY_ROWS * k + i), _MM_HINT_T0);               \
            }                                                                                                 \
            for (int t = 0; t < NT; t++) {                                                                    \
                __m512bh xv = (__m512bh)_mm512_loadu_si512(x + (long)t * ldx + i);                            \
                for (int r = 0; r < SKINNY_ROWS; r++) a[r][t] = _mm512_dpbf16_ps(a[r][t], wr[r], xv);         \
            }                                                                                                 \
        }                                                                                                     \
        if (i < k) {                                                                                          \
            __mmask32 m = (__mmask32)((1ULL << (k - i)) - 1);                                                 \
            __m512bh wr[SKINNY_ROWS];                                                                         \
            for (int r = 0; r < SKINNY_ROWS; r++) wr[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, row[r] + i);  \
            for (int t = 0; t < NT; t++) {                                                                    \
                __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + (long)t * ldx + i);                   \
                for (int r = 0; r < SKINNY_ROWS; r++) a[r][t] = _mm512_dpbf16_ps(a[r][t], wr[r], xv);         \
            }                                                                                                 \
        }                                                                                                     \
        const __mmask8 keep = (__mmask8)((1u << nr) - 1);                                                     \
        for (int t = 0; t < NT; t++) _mm_mask_storeu_ps(y + (long)t * ldy, keep, hsum3(a[0][t], a[1][t], a[2][t])); \
    }
DEFINE_SKINNY(1)
DEFINE_SKINNY(2)
DEFINE_SKINNY(3)
DEFINE_SKINNY(4)
DEFINE_SKINNY(5)
DEFINE_SKINNY(6)
DEFINE_SKINNY(7)
DEFINE_SKINNY(8)

BF16DOT void ck_bf16_gemm_rows(const uint16_t *x, int m, int ldx, const uint16_t *w, int k, int r0, int r1, float *y, int ldy) {
    for (int r = r0; r < r1; r += SKINNY_ROWS) {
        const int nr = r1 - r < SKINNY_ROWS ? r1 - r : SKINNY_ROWS;
        for (int t0 = 0; t0 < m; t0 += SKINNY_TILE) {
            const uint16_t *xt = x + (long)t0 * ldx, *wr = w + (long)r * k;
            float *yt = y + (long)t0 * ldy + r;
            switch (m - t0 < SKINNY_TILE ? m - t0 : SKINNY_TILE) {
            case 8: skinny_8(xt, ldx, wr, k, nr, yt, ldy); break;
            case 7: skinny_7(xt, ldx, wr, k, nr, yt, ldy); break;
            case 6: skinny_6(xt, ldx, wr, k, nr, yt, ldy); break;
            case 5: skinny_5(xt, ldx, wr, k, nr, yt, ldy); break;
            case 4: skinny_4(xt, ldx, wr, k, nr, yt, ldy); break;
            case 3: skinny_3(xt, ldx, wr, k, nr, yt, ldy); break;
            case 2: skinny_2(xt, ldx, wr, k, nr, yt, ldy); break;
            default: skinny_1(xt, ldx, wr, k, nr, yt, ldy); break;
            }
        }
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
// The same rounding as the scalar floatToBF16 (nearest even; NaN stays NaN), sixteen at a time.
BF16DOT static inline __m256i round_bf16(__m512 v) {
    const __m512i b = _mm512_castps_si512(v), hi = _mm512_srli_epi32(b, 16);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), _mm512_and_si512(hi, _mm512_set1_epi32(1)))), 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r);
}

static inline __mmask16 first(long n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

BF16DOT static void f32_to_bf16_avx512(const float *x, long n, float scale, uint16_t *out) {
    const __m512 s = _mm512_set1_ps(scale);
    for (long i = 0; i < n; i += 16) {
        const __mmask16 m = first(n - i);
        _mm256_mask_storeu_epi16(out + i, m, round_bf16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    }
}

// exp as Kernels' exp8 computes it (Cody–Waite reduction, the same degree-6 polynomial), sixteen lanes.
BF16DOT static inline __m512 exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.72283f);
    const __m512 c = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(1.442695041f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), c);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 er = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1));
    __m512 y = _mm512_scalef_ps(er, n);
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), _mm512_setzero_ps());
    return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), _mm512_set1_ps(__builtin_inff()));
}

BF16DOT void ck_softmax_bf16(float *x, int visible, int width, uint16_t *out) {
    const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    __m512 mv = ninf;
    for (int i = 0; i < visible; i += 16) mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(ninf, first(visible - i), x + i));
    const float m = _mm512_reduce_max_ps(mv);
    if (m == -__builtin_inff()) {  // nothing visible: zeros, as Activation.softmax keeps them
        memset(out, 0, sizeof(uint16_t) * (size_t)width);
        return;
    }
    const __m512 mm = _mm512_set1_ps(m);
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < visible; i += 16) {
        const __mmask16 k = first(visible - i);
        const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mm)));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm512_add_ps(acc, e);
    }
    const __m512 inv = _mm512_set1_ps(1 / _mm512_reduce_add_ps(acc));
    for (int i = 0; i < width; i += 16) {
        const __m512 v = i < visible ? _mm512_maskz_loadu_ps(first(visible - i), x + i) : _mm512_setzero_ps();
        _mm256_mask_storeu_epi16(out + i, first(width - i), round_bf16(_mm512_mul_ps(v, inv)));
    }
}

void ck_f32_to_bf16(const float *x, long n, float scale, uint16_t *out) {
    static int avx512 = -1;
    if (avx512 < 0) avx512 = ck_bf16_gemm_available();
    if (avx512) f32_to_bf16_avx512(x, n, scale, out); else f32_to_bf16_scalar(x, n, scale, out);
}
#else
void ck_f32_to_bf16(const float *x, long n, float scale, uint16_t *out) { f32_to_bf16_scalar(x, n, scale, out); }
void ck_softmax_bf16(float *x, int visible, int width, uint16_t *out) { (void)x; (void)visible; (void)width; (void)out; }
int ck_bf16_gemm_available(void) { return 0; }
void ck_bf16_gemm_rows(const uint16_t *x, int m, int ldx, const uint16_t *w, int k, int r0, int r1, float *y, int ldy) {
    (void)x; (void)m; (void)ldx; (void)w; (void)k; (void)r0; (void)r1; (void)y; (void)ldy;
}
void ck_bf16_pack32(const uint16_t *w, int rows, int k, uint16_t *out) { (void)w; (void)rows; (void)k; (void)out; }
void ck_bf16_gemm_packed(const uint16_t *x, int m, int ldx, const uint16_t *wp, int k, int ncols, float *c, int ldc) {
    (void)x; (void)m; (void)ldx; (void)wp; (void)k; (void)ncols; (void)c; (void)ldc;
}
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

int ck_avx512_available(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

// 16 bf16 → 16 floats: the bf16 bits are the high half of the float.
AVX512 static inline __m512 widen16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

// Decode GEMV on bf16 weights in float32: four rows at a time share each load of x; 512-bit FMAs halve
// the instruction count of the 256-bit path.
// Four rows at a time share each load of x. Rows shorter than 16 KiB go a quarter of the range apart
// rather than as neighbours, so that each is its own stream of pages for the hardware prefetcher
// (as in the quantized kernels of quant.c).
AVX512 void ck_gemv_bf16_avx512(const uint16_t *w, int cols, int r0, int r1, const float *x, float *y) {
    const int n4 = (r1 - r0) / 4, rs = cols < 8192 ? n4 : 1;  // rs: rows between the four
    int r;
    for (int k = 0; k < n4; k++) {
        r = rs == 1 ? r0 + 4 * k : r0 + k;
        const uint16_t *p0 = w + (long)r * cols, *p1 = p0 + (long)rs * cols, *p2 = p1 + (long)rs * cols, *p3 = p2 + (long)rs * cols;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        int i = 0;
        for (; i + 16 <= cols; i += 16) {
            __m512 xv = _mm512_loadu_ps(x + i);
            a0 = _mm512_fmadd_ps(widen16(p0 + i), xv, a0);
            a1 = _mm512_fmadd_ps(widen16(p1 + i), xv, a1);
            a2 = _mm512_fmadd_ps(widen16(p2 + i), xv, a2);
            a3 = _mm512_fmadd_ps(widen16(p3 + i), xv, a3);
        }
        float s0 = _mm512_reduce_add_ps(a0), s1 = _mm512_reduce_add_ps(a1);
        float s2 = _mm512_reduce_add_ps(a2), s3 = _mm512_reduce_add_ps(a3);
        for (; i < cols; i++) {
            float xv = x[i];
            uint32_t b0 = (uint32_t)p0[i] << 16, b1 = (uint32_t)p1[i] << 16, b2 = (uint32_t)p2[i] << 16, b3 = (uint32_t)p3[i] << 16;
            float f0, f1, f2, f3;
            memcpy(&f0, &b0, 4); memcpy(&f1, &b1, 4); memcpy(&f2, &b2, 4); memcpy(&f3, &b3, 4);
            s0 += f0 * xv; s1 += f1 * xv; s2 += f2 * xv; s3 += f3 * xv;
        }
        y[r] = s0; y[r + rs] = s1; y[r + 2 * rs] = s2; y[r + 3 * rs] = s3;
    }
    for (r = r0 + 4 * n4; r < r1; r++) {
        const uint16_t *p = w + (long)r * cols;
        __m512 a = _mm512_setzero_ps();
        int i = 0;
        for (; i + 16 <= cols; i += 16) a = _mm512_fmadd_ps(widen16(p + i), _mm512_loadu_ps(x + i), a);
        float s = _mm512_reduce_add_ps(a);
        for (; i < cols; i++) {
            uint32_t b = (uint32_t)p[i] << 16;
            float f;
            memcpy(&f, &b, 4);
            s += f * x[i];
        }
        y[r] = s;
    }
}

// Several tokens (a batched decode step) against bf16 rows in float32, each (row, token) with
// ck_gemv_bf16_avx512's own arithmetic: one 16-lane accumulator over the row in steps of 16, reduced,
// then the scalar tail; so each sequence of the batch gets the bits it gets alone. Three rows against a
// tile of up to eight tokens: each widened weight vector serves eight FMAs instead of one.
#define EXACT_ROWS 3
#define EXACT_TILE 8
AVX512 __attribute__((always_inline)) static inline void exact_tile(const uint16_t *w, int cols, int nr, const float *x, int ldx,
                                                                     float *y, int ldy, const int nt) {
    const uint16_t *row[EXACT_ROWS];
    for (int r = 0; r < EXACT_ROWS; r++) row[r] = w + (long)(r < nr ? r : nr - 1) * cols;
    __m512 a[EXACT_ROWS][EXACT_TILE];
    for (int r = 0; r < EXACT_ROWS; r++) for (int t = 0; t < nt; t++) a[r][t] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= cols; i += 16) {
        __m512 wv[EXACT_ROWS];
        for (int r = 0; r < EXACT_ROWS; r++) {
            wv[r] = widen16(row[r] + i);
            _mm_prefetch((const char *)(row[r] + (long)EXACT_ROWS * cols + i), _MM_HINT_T0);  // the next three rows
        }
        for (int t = 0; t < nt; t++) {
            const __m512 xv = _mm512_loadu_ps(x + (long)t * ldx + i);
            for (int r = 0; r < EXACT_ROWS; r++) a[r][t] = _mm512_fmadd_ps(wv[r], xv, a[r][t]);
        }
    }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++) {
            float s = _mm512_reduce_add_ps(a[r][t]);
            for (int j = i; j < cols; j++) {
                uint32_t b = (uint32_t)row[r][j] << 16;
                float f;
                memcpy(&f, &b, 4);
                s += f * x[(long)t * ldx + j];
            }
            y[(long)t * ldy + r] = s;
        }
}

AVX512 void ck_gemm_bf16_exact(const uint16_t *w, int cols, int r0, int r1, const float *x, int m, int ldx, float *y, int ldy) {
    for (int r = r0; r < r1; r += EXACT_ROWS) {
        const int nr = r1 - r < EXACT_ROWS ? r1 - r : EXACT_ROWS;
        for (int t0 = 0; t0 < m; t0 += EXACT_TILE) {
            const uint16_t *wr = w + (long)r * cols;
            const float *xt = x + (long)t0 * ldx;
            float *yt = y + (long)t0 * ldy + r;
            switch (m - t0 < EXACT_TILE ? m - t0 : EXACT_TILE) {
            case 8: exact_tile(wr, cols, nr, xt, ldx, yt, ldy, 8); break;
            case 7: exact_tile(wr, cols, nr, xt, ldx, yt, ldy, 7); break;
            case 6: exact_tile(wr, cols, nr, xt, ldx, yt, ldy, 6); break;
            case 5: exact_tile(wr, cols, nr, xt, ldx, yt, ldy, 5); break;
            case 4: exact_tile(wr, cols, nr, xt, ldx, yt, ldy, 4); break;
            case 3: exact_tile(wr, cols, nr, xt, ldx, yt, ldy, 3); break;
            case 2: exact_tile(wr, cols, nr, xt, ldx, yt, ldy, 2); break;
            default: exact_tile(wr, cols, nr, xt, ldx, yt, ldy, 1); break;
            }
        }
    }
}
#else
int ck_avx512_available(void) { return 0; }
void ck_gemv_bf16_avx512(const uint16_t *w, int cols, int r0, int r1, const float *x, float *y) {
    (void)w; (void)cols; (void)r0; (void)r1; (void)x; (void)y;
}
void ck_gemm_bf16_exact(const uint16_t *w, int cols, int r0, int r1, const float *x, int m, int ldx, float *y, int ldy) {
    (void)w; (void)cols; (void)r0; (void)r1; (void)x; (void)m; (void)ldx; (void)y; (void)ldy;
}
#endif
