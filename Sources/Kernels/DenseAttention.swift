#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif
#if canImport(CKernels)
import CKernels
#endif

extension Attention {
    /// Multi-head attention of the encoders (SigLIP, the resampler, Whisper): every query row sees a
    /// prefix of the keys, `visibleKeys(i)` long (all keys, key padding, or Whisper's block-causal
    /// chunks). Per head, S = Q·Kᵀ and O = softmax(S)·V run as BLAS products, so long sequences run
    /// at GEMM speed rather than one dot product at a time.
    /// - q: [queries, qStride], k/v: [keys, kvStride]; head h reads columns h·headDim ..< (h+1)·headDim.
    /// - out: [queries, outStride], written at the same head columns.
    public static func dense(q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             kvStride: Int, queries: Int, keys: Int, heads: Int, headDim: Int, scale: Float,
                             visibleKeys: ((Int) -> Int)? = nil, into out: UnsafeMutablePointer<Float>, outStride: Int) {
        guard queries > 0, keys > 0 else { return }
        #if canImport(CKernels)
        if Linear.effectivePrefillPrecision != .f32 && BF16Dot.available {
            denseBF16(q: q, qStride: qStride, k: k, v: v, kvStride: kvStride, queries: queries, keys: keys, heads: heads,
                      headDim: headDim, scale: scale, visibleKeys: visibleKeys, into: out, outStride: outStride)
            return
        }
        #endif
        BLAS.singleThreaded()
        // Query blocks bound the score matrix (block × keys) and give the threads work when heads are few;
        // with a mask, smaller blocks also skip the keys no query of the block sees (block-causal chunks).
        let block = min(queries, visibleKeys == nil ? max(16, (1 << 20) / keys) : 128)
        let blocks = (queries + block - 1) / block
        parallelFor(heads * blocks) { item in
            let h = item / blocks, q0 = (item % blocks) * block
            let nq = min(block, queries - q0)
            let visible = (0..<nq).map { min(keys, max(0, visibleKeys?(q0 + $0) ?? keys)) }
            let span = max(visible.max() ?? 0, 1)  // keys any query of this block sees
            let scores = FloatBuffer(count: nq * span)
            defer { withExtendedLifetime(scores) {} }
            let s = scores.pointer
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasInt(nq), blasInt(span), blasInt(headDim),
                        scale, q + q0 * qStride + h * headDim, blasInt(qStride), k + h * headDim, blasInt(kvStride),
                        0, s, blasInt(span))
            for i in 0..<nq {
                let row = s + i * span
                Activation.softmax(row, count: visible[i])
                if visible[i] < span { (row + visible[i]).update(repeating: 0, count: span - visible[i]) }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasInt(nq), blasInt(headDim), blasInt(span),
                        1, s, blasInt(span), v + h * headDim, blasInt(kvStride),
                        0, out + q0 * outStride + h * headDim, blasInt(outStride))
        }
    }

    #if canImport(CKernels)
    /// `dense` with bf16 products (AVX512_BF16, float32 accumulation), for `--prefill-precision bf16/int8`:
    /// Q (scaled) and K, then the probabilities and V, are rounded to bf16; the softmax stays float32.
    /// Each head's keys and transposed values are packed once (ck_bf16_pack32's layout: 32 keys, or 32
    /// dimensions of V, interleaved by pairs), then every block of queries runs S = Q·Kᵀ and O = P·V as
    /// packed GEMMs, a block small enough that its scores stay in L2.
    static func denseBF16(q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                          kvStride: Int, queries: Int, keys: Int, heads: Int, headDim hd: Int, scale: Float,
                          visibleKeys: ((Int) -> Int)?, into out: UnsafeMutablePointer<Float>, outStride: Int) {
        let kp = (hd + 1) & ~1, keyChunks = (keys + 31) / 32, dimChunks = (hd + 31) / 32
        let kPack = (kp / 2) * 64, vPack = ((keys + 1) / 2) * 64
        let packedK = UnsafeMutablePointer<UInt16>.allocate(capacity: heads * keyChunks * kPack)
        let packedV = UnsafeMutablePointer<UInt16>.allocate(capacity: heads * dimChunks * vPack)
        defer { packedK.deallocate(); packedV.deallocate() }
        parallelFor(heads) { h in
            let rows = UnsafeMutablePointer<UInt16>.allocate(capacity: keys * kp)
            defer { rows.deallocate() }
            func toBF16(_ src: UnsafePointer<Float>) {
                for j in 0..<keys {
                    ck_f32_to_bf16(src + j * kvStride + h * hd, hd, 1, rows + j * kp)
                    if kp > hd { rows[j * kp + hd] = 0 }
                }
            }
            toBF16(k)
            for c in 0..<keyChunks {
                ck_bf16_pack32(rows + c * 32 * kp, Int32(min(32, keys - 32 * c)), Int32(kp), packedK + (h * keyChunks + c) * kPack)
            }
            toBF16(v)
            for d in 0..<dimChunks {
                ck_bf16_pack32_transposed(rows, Int32(kp), Int32(keys), Int32(32 * d), Int32(min(32, hd - 32 * d)),
                                          packedV + (h * dimChunks + d) * vPack)
            }
        }
        let block = min(queries, visibleKeys == nil ? max(16, (1 << 18) / keys) : 128)
        let blocks = (queries + block - 1) / block
        parallelFor(heads * blocks) { item in
            let h = item / blocks, q0 = (item % blocks) * block
            let nq = min(block, queries - q0)
            let visible = (0..<nq).map { min(keys, max(0, visibleKeys?(q0 + $0) ?? keys)) }
            let span = max(visible.max() ?? 0, 1), sp = (span + 1) & ~1
            let qb = UnsafeMutablePointer<UInt16>.allocate(capacity: nq * kp)
            let pb = UnsafeMutablePointer<UInt16>.allocate(capacity: nq * sp)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: nq * span)
            defer { qb.deallocate(); pb.deallocate(); scores.deallocate() }
            for i in 0..<nq {
                ck_f32_to_bf16(q + (q0 + i) * qStride + h * hd, hd, scale, qb + i * kp)
                if kp > hd { qb[i * kp + hd] = 0 }
            }
            for c in 0..<((span + 31) / 32) {
                ck_bf16_gemm_packed(qb, Int32(nq), Int32(kp), packedK + (h * keyChunks + c) * kPack, Int32(kp),
                                    Int32(min(32, span - 32 * c)), scores + 32 * c, Int32(span))
            }
            for i in 0..<nq { ck_softmax_bf16(scores + i * span, Int32(visible[i]), Int32(sp), pb + i * sp) }
            for d in 0..<dimChunks {
                ck_bf16_gemm_packed(pb, Int32(nq), Int32(sp), packedV + (h * dimChunks + d) * vPack, Int32(span),
                                    Int32(min(32, hd - 32 * d)), out + q0 * outStride + h * hd + 32 * d, Int32(outStride))
            }
        }
    }
    #endif
}
