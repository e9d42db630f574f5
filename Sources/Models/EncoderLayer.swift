import Foundation
import Kernels
import Weights

/// The pre-LN transformer block of the encoders (SigLIP's and Whisper's):
///   x += out(MHA(LN₁(x)));  x += fc2(act(fc1(LN₂(x))))
/// Their checkpoints differ only in tensor names, the k bias (Whisper has none), the GELU flavour and
/// the LayerNorm eps.
public struct EncoderLayer: @unchecked Sendable {
    /// Tensor names under the layer's scope.
    struct Names {
        var norm1, norm2, q, k, v, out, fc1, fc2: String
        var keyBias = true

        static let siglip = Names(norm1: "layer_norm1", norm2: "layer_norm2", q: "self_attn.q_proj", k: "self_attn.k_proj",
                                  v: "self_attn.v_proj", out: "self_attn.out_proj", fc1: "mlp.fc1", fc2: "mlp.fc2")
        static let whisper = Names(norm1: "self_attn_layer_norm", norm2: "final_layer_norm", q: "self_attn.q_proj",
                                   k: "self_attn.k_proj", v: "self_attn.v_proj", out: "self_attn.out_proj", fc1: "fc1", fc2: "fc2",
                                   keyBias: false)
    }

    enum GELU { case tanh, erf }

    let norm1, norm2: (weight: [Float], bias: [Float])
    var q, k, v, out, fc1, fc2: WeightMatrix
    let qBias, vBias, outBias, fc2Bias: [Float]
    var fc1Bias: [Float]
    let kBias: [Float]?
    let heads: Int
    let eps: Float
    let gelu: GELU

    init(reader r: WeightReader, names n: Names, width c: Int, inner f: Int, heads: Int, eps: Float, gelu: GELU) {
        func ln(_ name: String) -> (weight: [Float], bias: [Float]) {
            (r.vector(name + ".weight", count: c), r.vector(name + ".bias", count: c))
        }
        norm1 = ln(n.norm1)
        norm2 = ln(n.norm2)
        q = r.matrix(n.q + ".weight", rows: c, cols: c)
        k = r.matrix(n.k + ".weight", rows: c, cols: c)
        v = r.matrix(n.v + ".weight", rows: c, cols: c)
        out = r.matrix(n.out + ".weight", rows: c, cols: c)
        qBias = r.vector(n.q + ".bias", count: c)
        kBias = n.keyBias ? r.vector(n.k + ".bias", count: c) : nil
        vBias = r.vector(n.v + ".bias", count: c)
        outBias = r.vector(n.out + ".bias", count: c)
        fc1 = r.matrix(n.fc1 + ".weight", rows: f, cols: c)
        fc1Bias = r.vector(n.fc1 + ".bias", count: f)
        fc2 = r.matrix(n.fc2 + ".weight", rows: c, cols: f)
        fc2Bias = r.vector(n.fc2 + ".bias", count: c)
        self.heads = heads
        self.eps = eps
        self.gelu = gelu
    }

    /// q, k, v, out, fc1, fc2.
    public var linearWeights: [WeightMatrix] { [q, k, v, out, fc1, fc2] }

    func mapWeights(_ f: (WeightMatrix) -> WeightMatrix) -> EncoderLayer {
        var l = self
        l.q = f(q); l.k = f(k); l.v = f(v); l.out = f(out); l.fc1 = f(fc1); l.fc2 = f(fc2)
        return l
    }

    /// The weights as the int8 GEMM takes them: block-quantized at load, the MLP's inner width first
    /// padded with zeros to whole blocks (SigLIP's 4304 → 4320: fc1 gains zero rows with zero bias, whose
    /// GELU is 0, and fc2 zero columns), which leaves the output as it was while fc2 runs in int8 too.
    func quantized(_ format: WeightFormat) -> EncoderLayer {
        var l = paddingInner(to: quantBlock)
        l = l.mapWeights { $0.forDecode(quantizing: format) }
        return l
    }

    func paddingInner(to multiple: Int) -> EncoderLayer {
        let f = fc1.rows, c = fc1.cols, padded = (f + multiple - 1) / multiple * multiple
        guard padded != f, fc2.cols == f else { return self }
        var up = [Float](repeating: 0, count: padded * c), down = [Float](repeating: 0, count: c * padded)
        up.withUnsafeMutableBufferPointer { fc1.readRows(0..<f, into: $0.baseAddress!) }
        let row = FloatBuffer(count: f)
        down.withUnsafeMutableBufferPointer { d in
            for r in 0..<fc2.rows {
                fc2.readRow(r, into: row.pointer)
                (d.baseAddress! + r * padded).update(from: row.pointer, count: f)
            }
        }
        var l = self
        l.fc1 = WeightMatrix(rows: padded, cols: c, values: up)
        l.fc1Bias = fc1Bias + [Float](repeating: 0, count: padded - f)
        l.fc2 = WeightMatrix(rows: fc2.rows, cols: padded, values: down)
        return l
    }

    /// Activations shared by the layers of one forward pass.
    final class Scratch {
        let normed, q, k, v, attn, mlp: FloatBuffer
        init(width c: Int, inner f: Int, tokens t: Int) {
            normed = FloatBuffer(count: t * c)
            q = FloatBuffer(count: t * c)
            k = FloatBuffer(count: t * c)
            v = FloatBuffer(count: t * c)
            attn = FloatBuffer(count: t * c)
            mlp = FloatBuffer(count: t * f)
        }
    }

    /// Keys and values of earlier frames (streaming: the pieces before this one), [frames, width] each.
    final class History {
        var keys: [Float] = [], values: [Float] = []
    }

    /// x [n, width] in place; query i sees keys 0 ..< visibleKeys(i) (all when nil). With a history the
    /// new frames also see every frame before them, and join the history.
    func forward(_ x: UnsafeMutablePointer<Float>, tokens n: Int, visibleKeys: ((Int) -> Int)? = nil, history: History? = nil,
                 scratch s: Scratch) {
        let c = q.rows, hd = c / heads
        layerNorm(x, n, c, norm1, eps, into: s.normed.pointer)
        linear(s.normed.pointer, n, q, qBias, into: s.q.pointer)
        linear(s.normed.pointer, n, k, kBias, into: s.k.pointer)
        linear(s.normed.pointer, n, v, vBias, into: s.v.pointer)
        let scale = 1 / Float(hd).squareRoot()
        if let history {
            history.keys += UnsafeBufferPointer(start: s.k.pointer, count: n * c)
            history.values += UnsafeBufferPointer(start: s.v.pointer, count: n * c)
            history.keys.withUnsafeBufferPointer { k in
                history.values.withUnsafeBufferPointer { v in
                    Attention.dense(q: s.q.pointer, qStride: c, k: k.baseAddress!, v: v.baseAddress!, kvStride: c, queries: n,
                                    keys: history.keys.count / c, heads: heads, headDim: hd, scale: scale, into: s.attn.pointer, outStride: c)
                }
            }
        } else {
            Attention.dense(q: s.q.pointer, qStride: c, k: s.k.pointer, v: s.v.pointer, kvStride: c, queries: n, keys: n,
                            heads: heads, headDim: hd, scale: scale, visibleKeys: visibleKeys, into: s.attn.pointer, outStride: c)
        }
        linear(s.attn.pointer, n, out, outBias, into: s.normed.pointer)
        axpy(1, s.normed.pointer, x, n * c)
        layerNorm(x, n, c, norm2, eps, into: s.normed.pointer)
        linear(s.normed.pointer, n, fc1, fc1Bias, into: s.mlp.pointer)
        switch gelu {
        case .tanh: Activation.geluTanh(s.mlp.pointer, count: n * fc1.rows)
        case .erf: Activation.geluErf(s.mlp.pointer, count: n * fc1.rows)
        }
        linear(s.mlp.pointer, n, fc2, fc2Bias, into: s.normed.pointer)
        axpy(1, s.normed.pointer, x, n * c)
    }
}

/// y = x·Wᵀ + b over `tokens` rows.
@inline(__always)
func linear(_ x: UnsafePointer<Float>, _ tokens: Int, _ w: WeightMatrix, _ bias: [Float]?,
            into y: UnsafeMutablePointer<Float>) {
    if let bias {
        bias.withUnsafeBufferPointer { Linear.forward(x, tokens: tokens, weight: w, bias: $0.baseAddress!, into: y) }
    } else {
        Linear.forward(x, tokens: tokens, weight: w, bias: nil, into: y)
    }
}

/// LayerNorm of [rows, dim] with a (weight, bias) pair.
@inline(__always)
func layerNorm(_ x: UnsafePointer<Float>, _ rows: Int, _ dim: Int, _ p: (weight: [Float], bias: [Float]), _ eps: Float,
               into y: UnsafeMutablePointer<Float>) {
    p.weight.withUnsafeBufferPointer { w in
        p.bias.withUnsafeBufferPointer { b in
            Norm.layer(x, rows: rows, dim: dim, weight: w.baseAddress!, bias: b.baseAddress!, eps: eps, into: y)
        }
    }
}
