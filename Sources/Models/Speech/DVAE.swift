import Foundation
import Kernels
import Weights

/// ChatTTS's DVAE decoder (`tts.dvae.*`, spec §5.6): audio codes [T, 4] → log-mel [100, 2T].
///   z_g = project_out_g(fsq(c_{2g}) + fsq(c_{2g+1}) / 4)      two groups, two residual levels
///   x = interleave-upsample(z₀ | z₁)  [2T, 512]
///   x = conv_out(ConvNeXt¹²(conv(gelu(conv(x)))));  mel = out_conv(x) ⊙ coef
/// Sizes come from the tensors (the reference code hard-codes them).
public final class DVAEDecoder: @unchecked Sendable {
    /// FSQ levels per dimension and the residual scale of the second quantizer: (L − 1)^(−1) = 0.25, as
    /// the checkpoint was trained (vector-quantize-pytorch ≥ Nov 2025 uses L^(−1) = 0.2 instead).
    public static let levels = 5, residualScale: Float = 0.25
    public let melBins: Int
    let projectOut: [(weight: WeightMatrix, bias: [Float])]  // per group: [half, 4]
    let convIn1, convIn2, convOut, outConv: WeightMatrix
    let convIn1Bias, convIn2Bias: [Float]
    let blocks: [ConvNeXtBlock]
    let coef: [Float]
    let half, bottleneck, hidden, latent: Int

    public init(reader r: WeightReader) {
        let pin = r.checkpoint.tensor(r.full("vq_layer.quantizer.rvqs.0.project_out.weight"))?.shape ?? [512, 4]
        let half = pin.first ?? 512, latent = pin.last ?? 4
        self.half = half
        self.latent = latent
        projectOut = (0..<2).map { g in
            let p = r.scoped("vq_layer.quantizer.rvqs.\(g).project_out")
            return (p.matrix("weight", rows: half, cols: latent), p.vector("bias", count: half))
        }
        let c1 = r.checkpoint.tensor(r.full("decoder.conv_in.0.weight"))?.shape ?? [128, half, 3]
        bottleneck = c1[0]
        convIn1 = r.matrix("decoder.conv_in.0.weight", shape: [bottleneck, half, 3])
        convIn1Bias = r.vector("decoder.conv_in.0.bias", count: bottleneck)
        let hidden = r.checkpoint.tensor(r.full("decoder.conv_in.2.weight"))?.shape.first ?? 256
        self.hidden = hidden
        convIn2 = r.matrix("decoder.conv_in.2.weight", shape: [hidden, bottleneck, 3])
        convIn2Bias = r.vector("decoder.conv_in.2.bias", count: hidden)
        let n = countBlocks(r, "decoder.decoder_block", probe: "dwconv.weight")
        if n == 0 { r.record("no tensors '\(r.full("decoder.decoder_block.0.*"))'") }
        blocks = (0..<n).map { ConvNeXtBlock(reader: r.scoped("decoder.decoder_block.\($0)"), channels: hidden, scaleName: "coef", dilation: 2) }
        let outChannels = r.checkpoint.tensor(r.full("decoder.conv_out.weight"))?.shape.first ?? 2 * half
        convOut = r.matrix("decoder.conv_out.weight", shape: [outChannels, hidden, 1])
        melBins = r.checkpoint.tensor(r.full("out_conv.weight"))?.shape.first ?? 100
        outConv = r.matrix("out_conv.weight", shape: [melBins, outChannels, 3])
        coef = r.matrix("coef", shape: [1, melBins, 1]).toFloats()
    }

    /// The FSQ value of one code: digits in base 5, each mapped to (digit − 2) / 2.
    @inline(__always)
    static func fsq(_ code: Int, into v: UnsafeMutablePointer<Float>, dims: Int) {
        var i = code
        for k in 0..<dims { v[k] = Float(i % levels - 2) / 2; i /= levels }
    }

    /// codes [T, 4] (each 0 ..< 625) → mel [melBins, 2T] (bins × frames, like the reference's output).
    public func forward(codes: [Int], frames t: Int) -> [Float] {
        precondition(codes.count == t * 4)
        // de-quantize and project: features [T, 2·half] = [group 0 | group 1]
        let feat = FloatBuffer(count: t * 2 * half)
        let z = FloatBuffer(count: t * latent), tmp = FloatBuffer(count: latent), proj = FloatBuffer(count: t * half)
        for g in 0..<2 {
            for i in 0..<t {
                let zi = z.pointer + i * latent
                Self.fsq(codes[i * 4 + 2 * g], into: zi, dims: latent)
                Self.fsq(codes[i * 4 + 2 * g + 1], into: tmp.pointer, dims: latent)
                for k in 0..<latent { zi[k] += Self.residualScale * tmp.pointer[k] }
            }
            linear(z.pointer, t, projectOut[g].weight, projectOut[g].bias, into: proj.pointer)
            for i in 0..<t { (feat.pointer + i * 2 * half + g * half).update(from: proj.pointer + i * half, count: half) }
        }
        // ×2 upsampling: frame 2i + j takes channels j·half ..< (j + 1)·half of frame i
        let x = FloatBuffer(count: 2 * t * half)
        for i in 0..<t { for j in 0..<2 { (x.pointer + (2 * i + j) * half).update(from: feat.pointer + i * 2 * half + j * half, count: half) } }
        let n = 2 * t
        let a = FloatBuffer(count: n * bottleneck)
        convIn1Bias.withUnsafeBufferPointer {
            Conv1d.forward(x.pointer, frames: n, channels: half, weight: convIn1, bias: $0.baseAddress!, kernel: 3, padding: 1, into: a.pointer)
        }
        Activation.geluErf(a.pointer, count: n * bottleneck)
        let h = FloatBuffer(count: n * hidden)
        convIn2Bias.withUnsafeBufferPointer {
            Conv1d.forward(a.pointer, frames: n, channels: bottleneck, weight: convIn2, bias: $0.baseAddress!, kernel: 3, padding: 1, into: h.pointer)
        }
        for b in blocks { b.forward(h.pointer, frames: n) }
        let o = FloatBuffer(count: n * convOut.rows)
        Linear.forward(h.pointer, tokens: n, weight: convOut, bias: nil, into: o.pointer)
        let mel = FloatBuffer(count: n * melBins)
        Conv1d.forward(o.pointer, frames: n, channels: convOut.rows, weight: outConv, bias: nil, kernel: 3, padding: 1, into: mel.pointer)
        var out = [Float](repeating: 0, count: melBins * n)
        for i in 0..<n { for b in 0..<melBins { out[b * n + i] = mel.pointer[i * melBins + b] * coef[b] } }
        return out
    }
}
