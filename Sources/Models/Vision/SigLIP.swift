import Foundation
import Kernels
import Weights

/// The NaViT SigLIP encoder (`vpm.*`, spec §3.3), one image (or slice) at a time:
///   x = patches · W_patchᵀ + b + pos[bucket(row)·70 + bucket(col)]
///   per layer:  x += out(MHA(LN₁(x)));  x += fc2(gelu_tanh(fc1(LN₂(x))))
///   x = LN_post(x)
/// Images of a batch never see each other, so running them one by one equals the reference's padded
/// batch with its key padding mask.
public final class SiglipEncoder: @unchecked Sendable {
    public let config: SiglipConfig
    let patchEmbedding: WeightMatrix   // [C, 3·14·14]
    let patchBias: [Float]
    let positionEmbedding: WeightMatrix  // [70·70, C]
    public internal(set) var layers: [EncoderLayer]
    let postNorm: (weight: [Float], bias: [Float])

    public init(config: SiglipConfig, layers count: Int, reader r: WeightReader) {
        self.config = config
        let c = config.hiddenSize, p = config.patchSize
        patchEmbedding = r.matrix("embeddings.patch_embedding.weight", shape: [c, config.numChannels, p, p])
        patchBias = r.vector("embeddings.patch_embedding.bias", count: c)
        let side = config.positionsPerSide
        positionEmbedding = r.matrix("embeddings.position_embedding.weight", rows: side * side, cols: c)
        layers = (0..<count).map {
            EncoderLayer(reader: r.scoped("encoder.layers.\($0)"), names: .siglip, width: c, inner: config.intermediateSize,
                         heads: config.numAttentionHeads, eps: config.layerNormEps, gelu: .tanh)
        }
        postNorm = (r.vector("post_layernorm.weight", count: c), r.vector("post_layernorm.bias", count: c))
    }

    /// NaViT position buckets of `n` patch coordinates on a side of `side` table slots, computed the
    /// way the reference does: `bucketize(arange(0, 1 − 1e-6, 1/n), arange(1/side, 1, 1/side), right)`
    /// over float32 values. Integer floor(side·i/n) differs at some sizes, and so does a plain
    /// `Float(i·step)`: PyTorch's CPU arange rounds some elements twice (see `torchArange`).
    public static func positionBuckets(count n: Int, side: Int) -> [Int] {
        let boundaries = torchArange(start: 1 / Double(side), step: 1 / Double(side), count: side - 1)
        let step = Double(Float(1) / Float(n))  // 1/nb is a float32 tensor in the reference
        return torchArange(start: 0, step: step, count: n).map { coord in
            var b = 0
            while b < boundaries.count && boundaries[b] <= coord { b += 1 }
            return b
        }
    }

    /// Float32 `torch.arange(start, …, step)` as PyTorch's CPU kernel computes it: elements in whole
    /// blocks of 16 come from 8-lane vectors built as float(float(start + step·i₀) + j·step), i₀ the
    /// vector's first index; the tail is float(start + step·i), all in double. Verified against
    /// torch 2.13 for 1…600 elements.
    static func torchArange(start: Double, step: Double, count n: Int) -> [Float] {
        let vectorized = n / 16 * 16
        return (0..<n).map { i in
            guard i < vectorized else { return Float(start + step * Double(i)) }
            let j = i % 8
            let base = Float(start + step * Double(i - j))
            return Float(Double(base) + Double(j) * step)
        }
    }

    /// Patch features [rows·cols, C] after post_layernorm for one image in the patch-strip layout
    /// [3, patch, rows·cols·patch] (spec §3.1 step 6).
    public func forward(strip: UnsafePointer<Float>, rows: Int, cols: Int) -> FloatBuffer {
        let c = config.hiddenSize, p = config.patchSize, n = rows * cols
        let values = config.patchValues, stripWidth = n * p
        // patches [n, 3·p·p] in the kernel's (channel, y, x) order
        let patches = FloatBuffer(count: n * values)
        for l in 0..<n {
            let dst = patches.pointer + l * values
            for ch in 0..<config.numChannels {
                for ky in 0..<p {
                    let src = strip + (ch * p + ky) * stripWidth + l * p
                    (dst + (ch * p + ky) * p).update(from: src, count: p)
                }
            }
        }
        let x = FloatBuffer(count: n * c)
        patchBias.withUnsafeBufferPointer {
            Linear.forward(patches.pointer, tokens: n, weight: patchEmbedding, bias: $0.baseAddress!, into: x.pointer)
        }
        let side = config.positionsPerSide
        let bh = Self.positionBuckets(count: rows, side: side), bw = Self.positionBuckets(count: cols, side: side)
        let row = FloatBuffer(count: c)
        for i in 0..<rows {
            for j in 0..<cols {
                positionEmbedding.readRow(bh[i] * side + bw[j], into: row.pointer)
                axpy(1, row.pointer, x.pointer + (i * cols + j) * c, c)
            }
        }
        let scratch = EncoderLayer.Scratch(width: c, inner: layers.first?.fc1.rows ?? config.intermediateSize, tokens: n)
        for layer in layers { layer.forward(x.pointer, tokens: n, scratch: scratch) }
        layerNorm(x.pointer, n, c, postNorm, config.layerNormEps, into: x.pointer)
        return x
    }
}
