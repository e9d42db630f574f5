import Foundation
import Kernels
import Weights

/// The Vocos vocoder (`assets/Vocos.pt`, spec §5.7): log-mel [100, F] → 24 kHz waveform [F·hop].
///   x = LN(embed(mel));  x = ConvNeXt⁸(x);  x = LN_final(x)
///   [log|S| ; ∠S] = head(x);  |S| = min(exp(log|S|), 100)
///   wave = ISTFT_same(|S|·e^{i∠S})   (periodic Hann, hop n_fft/4, trimmed by (n_fft − hop)/2 each side)
/// Sizes come from the tensors.
public final class Vocos: @unchecked Sendable {
    public let melBins, dim, nFFT, hop: Int
    let embed: WeightMatrix
    let embedBias: [Float]
    let kernel: Int
    let norm, finalNorm: (weight: [Float], bias: [Float])
    let blocks: [ConvNeXtBlock]
    let head: WeightMatrix
    let headBias: [Float]
    let window: [Float]
    /// Inverse real DFT as a matrix [n_fft, 2·(n_fft/2 + 1)]: frame = basis · [Re S ; Im S].
    let inverseDFT: WeightMatrix

    public init(reader r: WeightReader) {
        let e = r.checkpoint.tensor(r.full("backbone.embed.weight"))?.shape ?? [512, 100, 7]
        let dim = e.first ?? 512
        self.dim = dim
        melBins = e.count == 3 ? e[1] : 100
        kernel = e.last ?? 7
        embed = r.matrix("backbone.embed.weight", shape: [dim, melBins, kernel])
        embedBias = r.vector("backbone.embed.bias", count: dim)
        norm = (r.vector("backbone.norm.weight", count: dim), r.vector("backbone.norm.bias", count: dim))
        let n = countBlocks(r, "backbone.convnext", probe: "dwconv.weight")
        if n == 0 { r.record("no tensors '\(r.full("backbone.convnext.0.*"))'") }
        blocks = (0..<n).map { ConvNeXtBlock(reader: r.scoped("backbone.convnext.\($0)"), channels: dim, scaleName: "gamma", dilation: 1) }
        finalNorm = (r.vector("backbone.final_layer_norm.weight", count: dim), r.vector("backbone.final_layer_norm.bias", count: dim))
        let out = r.checkpoint.tensor(r.full("head.out.weight"))?.shape.first ?? 1026
        let nFFT = out - 2
        self.nFFT = nFFT
        hop = nFFT / 4
        head = r.matrix("head.out.weight", rows: out, cols: dim)
        headBias = r.vector("head.out.bias", count: out)
        window = r.vector("head.istft.window", count: nFFT)
        // irfft (norm "backward"): x[m] = (1/N)·[Re X₀ + (−1)^m Re X_{N/2} + 2·Σ_{0<k<N/2} (Re X_k cos θ − Im X_k sin θ)],
        // θ = 2πkm/N; the imaginary parts of the DC and Nyquist bins do not contribute
        let bins = nFFT / 2 + 1
        var basis = [Float](repeating: 0, count: max(nFFT, 0) * 2 * bins)
        for m in 0..<max(nFFT, 0) {
            for k in 0..<bins {
                let theta = 2 * Double.pi * Double((k * m) % nFFT) / Double(nFFT)
                let w = (k == 0 || k == nFFT / 2 ? 1.0 : 2.0) / Double(nFFT)
                basis[m * 2 * bins + k] = Float(w * cos(theta))
                basis[m * 2 * bins + bins + k] = (k == 0 || k == nFFT / 2) ? 0 : Float(-w * sin(theta))
            }
        }
        inverseDFT = WeightMatrix(rows: max(nFFT, 0), cols: 2 * bins, values: basis)
    }

    /// mel [melBins, F] (bins × frames) → waveform of F·hop samples.
    public func forward(mel: [Float], frames f: Int) -> [Float] {
        precondition(mel.count == melBins * f)
        guard f > 0 else { return [] }
        let x = FloatBuffer(count: f * melBins)
        for b in 0..<melBins { for i in 0..<f { x.pointer[i * melBins + b] = mel[b * f + i] } }
        let h = FloatBuffer(count: f * dim)
        embedBias.withUnsafeBufferPointer {
            Conv1d.forward(x.pointer, frames: f, channels: melBins, weight: embed, bias: $0.baseAddress!, kernel: kernel,
                           padding: kernel / 2, into: h.pointer)
        }
        layerNorm(h.pointer, f, dim, norm, 1e-6, into: h.pointer)
        for b in blocks { b.forward(h.pointer, frames: f) }
        layerNorm(h.pointer, f, dim, finalNorm, 1e-6, into: h.pointer)
        let out = head.rows, bins = nFFT / 2 + 1
        let y = FloatBuffer(count: f * out)
        linear(h.pointer, f, head, headBias, into: y.pointer)
        // spectrum [F, Re(bins) | Im(bins)]
        let spec = FloatBuffer(count: f * 2 * bins)
        for i in 0..<f {
            let yr = y.pointer + i * out, s = spec.pointer + i * 2 * bins
            for k in 0..<bins {
                let mag = min(Foundation.exp(yr[k]), 100), phase = yr[bins + k]
                s[k] = mag * Foundation.cos(phase)
                s[bins + k] = mag * Foundation.sin(phase)
            }
        }
        let frames = FloatBuffer(count: f * nFFT)
        Linear.forward(spec.pointer, tokens: f, weight: inverseDFT, bias: nil, into: frames.pointer)
        // windowed overlap-add, normalized by the overlap-added squared window, "same" trim
        let total = (f - 1) * hop + nFFT, pad = (nFFT - hop) / 2
        var signal = [Float](repeating: 0, count: total), envelope = [Float](repeating: 0, count: total)
        for i in 0..<f {
            let fr = frames.pointer + i * nFFT
            for m in 0..<nFFT {
                signal[i * hop + m] += fr[m] * window[m]
                envelope[i * hop + m] += window[m] * window[m]
            }
        }
        return (pad..<(total - pad)).map { signal[$0] / envelope[$0] }
    }
}
