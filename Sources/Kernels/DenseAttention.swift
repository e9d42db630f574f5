#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
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
}
