import Foundation
import Kernels
import Weights

/// The 1-D ConvNeXt block of ChatTTS's DVAE and of Vocos, over time-major frames [T, C]:
///   y = x + scale ⊙ W₂·gelu(W₁·LN(dwconv(x)))
/// (depthwise kernel k with dilation d and "same" padding; exact-erf GELU; LayerNorm eps 1e-6).
struct ConvNeXtBlock: @unchecked Sendable {
    let dwWeight: [Float]   // [C, k]
    let dwBias: [Float]
    let norm: (weight: [Float], bias: [Float])
    let pw1, pw2: WeightMatrix
    let pw1Bias, pw2Bias: [Float]
    let scale: [Float]
    let kernel, dilation: Int

    /// `scaleName` is "coef" in the DVAE and "gamma" in Vocos. Shapes come from the tensors; a missing
    /// or misshapen one is recorded in the reader.
    init(reader r: WeightReader, channels c: Int, scaleName: String, dilation: Int) {
        let dw = r.checkpoint.tensor(r.full("dwconv.weight"))
        kernel = dw?.shape.last ?? 7
        self.dilation = dilation
        dwWeight = r.matrix("dwconv.weight", shape: [c, 1, kernel]).toFloats()
        dwBias = r.vector("dwconv.bias", count: c)
        norm = (r.vector("norm.weight", count: c), r.vector("norm.bias", count: c))
        let inner = r.checkpoint.tensor(r.full("pwconv1.weight"))?.shape.first ?? 4 * c
        pw1 = r.matrix("pwconv1.weight", rows: inner, cols: c)
        pw1Bias = r.vector("pwconv1.bias", count: inner)
        pw2 = r.matrix("pwconv2.weight", rows: c, cols: inner)
        pw2Bias = r.vector("pwconv2.bias", count: c)
        scale = r.vector(scaleName, count: c)
    }

    /// x [t, C] is updated in place.
    func forward(_ x: UnsafeMutablePointer<Float>, frames t: Int) {
        let c = dwBias.count, inner = pw1.rows
        let y = FloatBuffer(count: t * c)
        dwWeight.withUnsafeBufferPointer { w in
            dwBias.withUnsafeBufferPointer { b in
                Conv1d.depthwise(x, frames: t, channels: c, weight: w.baseAddress!, bias: b.baseAddress!, kernel: kernel,
                                 padding: dilation * (kernel / 2), dilation: dilation, into: y.pointer)
            }
        }
        layerNorm(y.pointer, t, c, norm, 1e-6, into: y.pointer)
        let h = FloatBuffer(count: t * inner)
        linear(y.pointer, t, pw1, pw1Bias, into: h.pointer)
        Activation.geluErf(h.pointer, count: t * inner)
        linear(h.pointer, t, pw2, pw2Bias, into: y.pointer)
        for i in 0..<t {
            let row = y.pointer + i * c, out = x + i * c
            for ch in 0..<c { out[ch] += scale[ch] * row[ch] }
        }
    }
}

/// Number of `prefix.N.` blocks present in the checkpoint (N = 0, 1, … while `prefix.N.probe` exists).
func countBlocks(_ r: WeightReader, _ prefix: String, probe: String) -> Int {
    var n = 0
    while r.checkpoint.tensor(r.full("\(prefix).\(n).\(probe)")) != nil { n += 1 }
    return n
}
