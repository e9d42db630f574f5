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
        // Query blocks bound the score matrix (block × keys) and give the threads work when heads are few.
        let block = min(queries, max(16, (1 << 20) / keys))
        let blocks = (queries + block - 1) / block
        parallelFor(heads * blocks) { item in
            let h = item / blocks, q0 = (item % blocks) * block
            let nq = min(block, queries - q0)
            let scores = FloatBuffer(count: nq * keys)
            defer { withExtendedLifetime(scores) {} }
            let s = scores.pointer
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasInt(nq), blasInt(keys), blasInt(headDim),
                        scale, q + q0 * qStride + h * headDim, blasInt(qStride), k + h * headDim, blasInt(kvStride),
                        0, s, blasInt(keys))
            for i in 0..<nq {
                let row = s + i * keys
                let n = min(keys, max(0, visibleKeys?(q0 + i) ?? keys))
                Activation.softmax(row, count: n)
                if n < keys { (row + n).update(repeating: 0, count: keys - n) }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasInt(nq), blasInt(headDim), blasInt(keys),
                        1, s, blasInt(keys), v + h * headDim, blasInt(kvStride),
                        0, out + q0 * outStride + h * headDim, blasInt(outStride))
        }
    }
}
