import Foundation
import Kernels
import Weights

/// The perceiver resampler (`resampler.*`, spec §3.4): 64 learned queries attend once to the
/// encoder's patches, whose keys carry a 2-D sin-cos position:
///   kv = LN_kv(x·W_kvᵀ);  q = LN_q(query)
///   out = MHA(q, kv + pos2d(rows, cols), kv)      (packed in_proj: q | k | v rows)
///   y = LN_post(out) · proj                        (proj multiplies from the right)
public final class Resampler: @unchecked Sendable {
    public let queries: Int
    public let dim: Int
    public let heads: Int
    private(set) var kvProj, inK, inV: WeightMatrix
    let inQ, outProj: WeightMatrix
    let inBias, outBias: [Float]
    let lnQ, lnKV, lnPost: (weight: [Float], bias: [Float])
    /// projᵀ, so that y = x·proj is an ordinary linear map.
    let projT: WeightMatrix
    /// LN_q(query)·W_qᵀ + b_q does not depend on the image: computed once.
    let projectedQueries: FloatBuffer
    static let eps: Float = 1e-6

    public init(config: VisionConfig, reader r: WeightReader) {
        let d = config.embedDim, kv = config.siglip.hiddenSize
        queries = config.queryNum
        dim = d
        heads = config.resamplerHeads
        let query = r.matrix("query", rows: queries, cols: d)
        kvProj = r.matrix("kv_proj.weight", rows: d, cols: kv)
        let packed = r.matrix("attn.in_proj_weight", rows: 3 * d, cols: d)
        let complete = packed.rows == 3 * d  // else validate() reports it
        inQ = complete ? packed.rowSlice(0..<d) : packed
        inK = complete ? packed.rowSlice(d..<(2 * d)) : packed
        inV = complete ? packed.rowSlice((2 * d)..<(3 * d)) : packed
        inBias = r.vector("attn.in_proj_bias", count: 3 * d)
        outProj = r.matrix("attn.out_proj.weight", rows: d, cols: d)
        outBias = r.vector("attn.out_proj.bias", count: d)
        lnQ = (r.vector("ln_q.weight", count: d), r.vector("ln_q.bias", count: d))
        lnKV = (r.vector("ln_kv.weight", count: d), r.vector("ln_kv.bias", count: d))
        lnPost = (r.vector("ln_post.weight", count: d), r.vector("ln_post.bias", count: d))
        projT = r.matrix("proj", rows: d, cols: d).transposed()

        projectedQueries = FloatBuffer(count: queries * d)
        if query.rows == queries && complete {
            let q = FloatBuffer(count: queries * d)
            query.readRows(0..<queries, into: q.pointer)
            layerNorm(q.pointer, queries, d, lnQ, Self.eps, into: q.pointer)
            inBias.withUnsafeBufferPointer {
                Linear.forward(q.pointer, tokens: queries, weight: inQ, bias: $0.baseAddress!, into: projectedQueries.pointer)
            }
        }
    }

    /// The products over every patch (kv_proj, the key and value projections) block-quantized for the
    /// int8 GEMM; those of the 64 queries are a small part and stay as stored.
    func quantize(_ format: WeightFormat) {
        kvProj = kvProj.forDecode(quantizing: format)
        inK = inK.forDecode(quantizing: format)
        inV = inV.forDecode(quantizing: format)
    }

    /// [queries, dim] for the patch features x [rows·cols, kvDim] of one image.
    public func forward(_ x: UnsafePointer<Float>, rows: Int, cols: Int) -> FloatBuffer {
        let d = dim, n = rows * cols
        let kv = FloatBuffer(count: n * d)
        Linear.forward(x, tokens: n, weight: kvProj, bias: nil, into: kv.pointer)
        layerNorm(kv.pointer, n, d, lnKV, Self.eps, into: kv.pointer)
        let keysIn = Self.positions(rows: rows, cols: cols, dim: d)
        axpy(1, kv.pointer, keysIn.pointer, n * d)
        let k = FloatBuffer(count: n * d), v = FloatBuffer(count: n * d)
        inBias.withUnsafeBufferPointer { b in
            Linear.forward(keysIn.pointer, tokens: n, weight: inK, bias: b.baseAddress! + d, into: k.pointer)
            Linear.forward(kv.pointer, tokens: n, weight: inV, bias: b.baseAddress! + 2 * d, into: v.pointer)
        }
        let attn = FloatBuffer(count: queries * d)
        let hd = d / heads
        Attention.dense(q: projectedQueries.pointer, qStride: d, k: k.pointer, v: v.pointer, kvStride: d,
                        queries: queries, keys: n, heads: heads, headDim: hd, scale: 1 / Float(hd).squareRoot(),
                        into: attn.pointer, outStride: d)
        let out = FloatBuffer(count: queries * d)
        linear(attn.pointer, queries, outProj, outBias, into: out.pointer)
        layerNorm(out.pointer, queries, d, lnPost, Self.eps, into: out.pointer)
        let y = FloatBuffer(count: queries * d)
        Linear.forward(out.pointer, tokens: queries, weight: projT, bias: nil, into: y.pointer)
        return y
    }

    /// The 2-D sin-cos key positions [rows·cols, dim], row-major over (row, col): for a patch at
    /// (r, c) the first half is E(c), the second E(r), with E(p) = [sin(p·ωₖ), cos(p·ωₖ)],
    /// ωₖ = 1/10000^(k/(dim/4)) — all in float32 like the reference's numpy code.
    public static func positions(rows: Int, cols: Int, dim: Int) -> FloatBuffer {
        let quarter = dim / 4, half = dim / 2
        let omega = (0..<quarter).map { k in Float(1) / Foundation.pow(Float(10000), Float(k) / Float(quarter)) }
        func table(_ n: Int) -> [Float] {
            var t = [Float](repeating: 0, count: n * half)
            for p in 0..<n {
                for k in 0..<quarter {
                    let a = Float(p) * omega[k]
                    t[p * half + k] = Foundation.sin(a)
                    t[p * half + quarter + k] = Foundation.cos(a)
                }
            }
            return t
        }
        let byCol = table(cols), byRow = table(rows)
        let out = FloatBuffer(count: rows * cols * dim)
        for r in 0..<rows {
            for c in 0..<cols {
                let o = out.pointer + (r * cols + c) * dim
                byCol.withUnsafeBufferPointer { o.update(from: $0.baseAddress! + c * half, count: half) }
                byRow.withUnsafeBufferPointer { (o + half).update(from: $0.baseAddress! + r * half, count: half) }
            }
        }
        return out
    }
}

/// SigLIP + resampler: an image (or slice) in the patch-strip layout → `queryNum` LLM embeddings.
public final class VisionModel: @unchecked Sendable {
    public let config: VisionConfig
    public let encoder: SiglipEncoder
    public let resampler: Resampler

    public init(config: VisionConfig, reader: WeightReader) {
        self.config = config
        encoder = SiglipEncoder(config: config.siglip, layers: config.encoderLayers, reader: reader.scoped("vpm"))
        resampler = Resampler(config: config, reader: reader.scoped("resampler"))
    }

    /// Binds and validates the `vpm.*` and `resampler.*` tensors of a MiniCPM-o checkpoint.
    /// `quantize`: SigLIP's linear weights and the resampler's per-patch ones block-quantized at load
    /// (for the int8 GEMM).
    public static func load(_ checkpoint: Checkpoint, config: VisionConfig, quantize: WeightFormat? = nil) throws -> VisionModel {
        let reader = checkpoint.reader(prefix: "")
        let model = VisionModel(config: config, reader: reader)
        try reader.validate()
        if let quantize {
            model.encoder.layers = model.encoder.layers.map { $0.quantized(quantize) }
            model.resampler.quantize(quantize)
        }
        return model
    }

    /// Encoder output [rows·cols, C] and resampler output [queryNum, embedDim].
    public func forward(strip: UnsafePointer<Float>, rows: Int, cols: Int) -> (hidden: FloatBuffer, embeddings: FloatBuffer) {
        let hidden = encoder.forward(strip: strip, rows: rows, cols: cols)
        return (hidden, resampler.forward(hidden.pointer, rows: rows, cols: cols))
    }
}
