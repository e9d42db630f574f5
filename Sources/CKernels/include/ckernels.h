#ifndef CKERNELS_H
#define CKERNELS_H
// Integer dot-product kernels for block-quantized weights. Swift cannot express AVX2's
// maddubs/sign byte instructions, which make int8 x int8 dot products about twice as fast as
// widening to float; everything else stays in Swift.
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Quantizes n floats (n % 32 == 0) to blocks of 32 int8 with one float scale per block:
/// x ≈ q · d, d = max|x| / 127 (round to nearest).
void ck_quantize_q8_blocks(const float *x, int n, int8_t *q, float *d);

/// One row of weights (cols % 32 == 0) to Q8_0 / Q4_0 blocks with f16 scales, as Quant.quantizeRow.
void ck_quantize_row_q8_0(const float *x, int cols, int8_t *q, uint16_t *d);
void ck_quantize_row_q4_0(const float *x, int cols, uint8_t *q, uint16_t *d);

/// y[r] = Σ_b wd[r,b] · xd[b] · Σ_i wq[r,b,i] · xq[b,i] for rows r in [r0, r1).
/// Q8_0 weights: wq int8 [rows, cols], wd f16 bits [rows, cols/32].
void ck_gemv_q8_0(const int8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                  float *y, int r0, int r1);

/// Rearranges quantized activations for ck_gemv_q4_0, once per product: xp (cols bytes) holds each
/// pair of blocks as [x0[0:16] x1[0:16] x0[16:32] x1[16:32]]; xs (cols/8 int32) holds 8 × the sums
/// of x that each int32 lane of the kernel covers, to remove the nibbles' +8 offset.
void ck_prepare_q4_activations(const int8_t *xq, int cols, int8_t *xp, int32_t *xs);

/// Q4_0 weights: per block of 32, 16 bytes whose low nibbles are elements 0..15 and high nibbles
/// elements 16..31, value = (nibble − 8) · d; wq uint8 [rows, cols/2], wd f16 bits [rows, cols/32].
void ck_gemv_q4_0(const uint8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                  const int8_t *xp, const int32_t *xs, float *y, int r0, int r1);

/// Whether the AVX512-VNNI kernels (Q8_0 and Q4_0) can run here.
int ck_vnni_available(void);

/// As ck_prepare_q4_activations, for ck_gemv_q4_0_vnni: groups of four blocks
/// [x0..x3 elements 0..15 | x0..x3 elements 16..31] and per group the 16 lanes' −8·Σx (cols/8 int32).
void ck_prepare_q4_activations_vnni(const int8_t *xq, int cols, int8_t *xp, int32_t *xs);

/// ck_gemv_q4_0 with 512-bit VNNI dot products over four blocks at a time.
void ck_gemv_q4_0_vnni(const uint8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                       const int8_t *xp, const int32_t *xs, float *y, int r0, int r1);

/// −128 × the sum of each 4 bytes of xq (cols/4 int32): the start of ck_gemv_q8_0_vnni's lanes.
void ck_prepare_q8_activations_vnni(const int8_t *xq, int cols, int32_t *xs);

/// ck_gemv_q8_0 with 512-bit VNNI dot products over eight blocks at a time.
void ck_gemv_q8_0_vnni(const int8_t *wq, const uint16_t *wd, int cols, const int8_t *xq, const float *xd,
                       const int32_t *xs, float *y, int r0, int r1);

/// Sixteen-interleaved rows (the decode layout made at load): each group of 16 rows is one record of
/// 16·nb·(bb + 2) bytes (nb = cols/32 blocks, bb = a row's bytes per block: Q8_0 32, Q4_0 16). In it
/// the blocks go in pairs: block 2p's values, block 2p+1's values, then the pair's 32 f16 scales (16 of
/// 2p, 16 of 2p+1); an odd last block is alone with its 16 scales. A block's values are vectors of 64
/// bytes, vector k = [row 0: piece k]…[row 15: piece k], pieces of 4 bytes (Q8_0: 8 vectors, Q4_0: 4).
/// Q4_0 keeps the plain packing: byte j of piece k holds values 4k+j (low nibble) and 16+4k+j (high).
/// xsum: Σxq per block (ck_block_sums). The VNNI kernels take r0, r1 multiples of 16; the portable twins
/// any rows; the dequantizers rows r0..<r1.
void ck_block_sums(const int8_t *xq, int cols, int32_t *xsum);
void ck_gemv_q8_0x16_vnni(const int8_t *wq, int cols, const int8_t *xq, const float *xd, const int32_t *xsum,
                          float *y, int r0, int r1);
/// gfni: unpack the high nibbles with GFNI (where ck_gfni_available) instead of a shift and a mask.
void ck_gemv_q4_0x16_vnni(const uint8_t *wq, int cols, const int8_t *xq, const float *xd, const int32_t *xsum,
                          float *y, int r0, int r1, int gfni);
int ck_gfni_available(void);
/// Several tokens at once (prefill): y[t·ldy + r] for tokens t < `tokens`, rows r0 ≤ r < r1 (multiples of
/// 16) of a sixteen-interleaved matrix, from the tokens' activations packed by ck_gemm_pack, plus bias[r]
/// unless bias is null. VNNI only (ck_vnni_available).
void ck_gemm_q8_0x16_vnni(const int8_t *wq, int cols, int tokens, const int32_t *packed, const float *bias, float *y, int ldy,
                          int r0, int r1);
void ck_gemm_q4_0x16_vnni(const uint8_t *wq, int cols, int tokens, const int32_t *packed, const float *bias, float *y, int ldy,
                          int r0, int r1);
/// Several tokens against plain rows r0 ≤ r < r1 (the layout kept without VNNI): y[t·ldy + r] for tokens
/// t < `tokens` is bit for bit what ck_gemv_q8_0 / ck_gemv_q4_0 give token t (xq [tokens, cols], xd
/// [tokens, cols/32]; Q4_0 also xp [tokens, cols] and xs [tokens, cols/8] from ck_prepare_q4_activations
/// per token), plus bias[r] unless bias is null. AVX2 where the build targets it, else token by token.
void ck_gemm_q8_0_plain(const int8_t *wq, const uint16_t *wd, int cols, int tokens, const int8_t *xq, const float *xd,
                        const float *bias, float *y, int ldy, int r0, int r1);
void ck_gemm_q4_0_plain(const uint8_t *wq, const uint16_t *wd, int cols, int tokens, const int8_t *xq, const float *xd,
                        const int8_t *xp, const int32_t *xs, const float *bias, float *y, int ldy, int r0, int r1);
/// Whether the two above are vectorized in this build (AVX2); otherwise they loop over the one-token kernels.
int ck_gemm_plain_vectorized(void);
/// int32 values ck_gemm_pack writes for `tokens` tokens (tiles of 8).
long ck_gemm_packed_count(int cols, int tokens);
/// Packs xq [tokens, cols] int8 blocks with scales xd [tokens, cols/32] and block sums xsum [tokens,
/// cols/32] (ck_block_sums of each token) for the Q4_0 (q4 ≠ 0) or Q8_0 GEMM. Tokens t0 < tokens with t0 a
/// multiple of 8 start at packed + ck_gemm_packed_count(cols, t0), so parts can be packed apart.
void ck_gemm_pack(const int8_t *xq, const float *xd, const int32_t *xsum, int cols, int tokens, int q4, int32_t *packed);
void ck_gemv_q8_0x16(const int8_t *wq, int cols, const int8_t *xq, const float *xd, float *y, int r0, int r1);
void ck_gemv_q4_0x16(const uint8_t *wq, int cols, const int8_t *xq, const float *xd, float *y, int r0, int r1);
void ck_dequantize_q8_0x16(const int8_t *q, int cols, int r0, int r1, float *out);
void ck_dequantize_q4_0x16(const uint8_t *q, int cols, int r0, int r1, float *out);

/// Dequantizes `rows` consecutive rows (cols % 32 == 0) to floats: Q8_0 (values int8) or Q4_0
/// (values packed nibbles), with f16 block scales.
void ck_dequantize_q8_0(const int8_t *q, const uint16_t *d, int rows, int cols, float *out);
void ck_dequantize_q4_0(const uint8_t *q, const uint16_t *d, int rows, int cols, float *out);

/// Attention of `group` query heads that share one kv head over n positions (krows/vrows: that head's
/// slice of each key/value row). Scores: s[g·lds + j] = scale · q_g · k_j. Values: o_g = Σ_j p[g·ldp + j] · v_j
/// (o: group × hd floats, overwritten).
void ck_attn_scores(const float *q, int group, int hd, const float *const *krows, int n, float scale, float *s, int lds);
void ck_attn_values(const float *p, int ldp, int group, int hd, const float *const *vrows, int n, float *o);

/// Whether this CPU has AVX-512 F/BW/VL (the 512-bit bf16 GEMV).
int ck_avx512_available(void);

/// y[r] = Σ_i w[r, i] · x[i] for r0 ≤ r < r1, w bf16 [rows, cols], in float32.
void ck_gemv_bf16_avx512(const uint16_t *w, int cols, int r0, int r1, const float *x, float *y);
/// y[t·ldy + r] for tokens t < m (x [m, ldx] floats), rows r0 ≤ r < r1 of bf16 w [rows, cols]: each bit for bit
/// what ck_gemv_bf16_avx512 gives token t alone. AVX-512 only (ck_avx512_available).
void ck_gemm_bf16_exact(const uint16_t *w, int cols, int r0, int r1, const float *x, int m, int ldx, float *y, int ldy);

/// Whether this CPU has AVX512_BF16 (the packed GEMM's instruction).
int ck_bf16_gemm_available(void);

/// Packs `rows` ≤ 32 bf16 rows of w [rows, k] (row stride k) as wp[p][j][e] = w[j][2p + e], zero padded
/// to 32 rows and an even k: ((k + 1) / 2) · 64 values.
void ck_bf16_pack32(const uint16_t *w, int rows, int k, uint16_t *out);

/// out[i] = bf16(x[i] · scale) for i < n, rounded to nearest even (NaN stays NaN).
void ck_f32_to_bf16(const float *x, long n, float scale, uint16_t *out);
/// A softmax over x[0 ..< visible] (float32, in place: x keeps the exps) written to out[0 ..< width] as
/// bf16 probabilities, zero past `visible` (and all zero when nothing is visible). AVX512_BF16 CPUs only
/// (ck_bf16_gemm_available).
void ck_softmax_bf16(float *x, int visible, int width, uint16_t *out);
/// Packs columns d0 ..< d0 + dims (dims ≤ 32) of v [keys, ld] transposed, as ck_bf16_pack32 packs 32 rows:
/// wp[p][j][e] = v[2p + e][d0 + j], zero past `keys` and `dims`: ((keys + 1) / 2) · 64 values.
void ck_bf16_pack32_transposed(const uint16_t *v, int ld, int keys, int d0, int dims, uint16_t *out);
/// c[t, j] = Σ_i x[t, i] · w[j, i] for t < m, j < ncols ≤ 32, with w packed by ck_bf16_pack32; x is
/// bf16 with row stride ldx ≥ k (ldx even, zero padded past k when k is odd); c row stride ldc.
void ck_bf16_gemm_packed(const uint16_t *x, int m, int ldx, const uint16_t *wp, int k, int ncols, float *c, int ldc);
/// y[t·ldy + r] = Σ_i x[t, i] · w[r, i] for t < m and r0 ≤ r < r1, w bf16 [rows, k] as stored (row stride
/// k), x bf16 with row stride ldx ≥ k: for a few tokens, where packing the rows would cost more than it saves.
void ck_bf16_gemm_rows(const uint16_t *x, int m, int ldx, const uint16_t *w, int k, int r0, int r1, float *y, int ldy);

#ifdef __cplusplus
}
#endif
#endif
