import Foundation
import Testing
@testable import Kernels
@testable import MiniCPMO
@testable import Models
@testable import Weights

/// The encoder block's int8 form: an inner width that is no whole number of quantization blocks (the
/// real SigLIP's 4304) is padded with zeros, which changes nothing, so every linear map runs in int8.
@Suite struct EncoderLayerTests {
    static let width = 64, inner = 72, tokens = 40

    /// A SigLIP-named layer with random weights, written to a temporary checkpoint.
    static func layer() throws -> EncoderLayer {
        var rng = Xoshiro256(seed: 21)
        func values(_ n: Int, _ scale: Float) -> [Float] { (0..<n).map { _ in scale * (Float(rng.next() % 2001) / 1000 - 1) } }
        let c = width, f = inner
        var entries: [SafetensorsWriter.Entry] = []
        for n in ["layer_norm1", "layer_norm2"] {
            entries += [.f32(n + ".weight", shape: [c], values(c, 0.2).map { 1 + $0 }), .f32(n + ".bias", shape: [c], values(c, 0.1))]
        }
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            entries += [.f32("self_attn.\(n).weight", shape: [c, c], values(c * c, 0.15)), .f32("self_attn.\(n).bias", shape: [c], values(c, 0.1))]
        }
        entries += [.f32("mlp.fc1.weight", shape: [f, c], values(f * c, 0.15)), .f32("mlp.fc1.bias", shape: [f], values(f, 0.1)),
                    .f32("mlp.fc2.weight", shape: [c, f], values(c * f, 0.15)), .f32("mlp.fc2.bias", shape: [c], values(c, 0.1))]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("encoder-layer-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try SafetensorsWriter.write(entries, to: dir.appendingPathComponent("model.safetensors").path)
        let reader = try Checkpoint(directory: dir.path).reader()
        let l = EncoderLayer(reader: reader, names: .siglip, width: c, inner: f, heads: 4, eps: 1e-6, gelu: .tanh)
        try reader.validate()
        return l
    }

    static func run(_ l: EncoderLayer, precision: Linear.PrefillPrecision = .f32) -> [Float] {
        var rng = Xoshiro256(seed: 22)
        var x = (0..<(tokens * width)).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
        Linear.$prefillPrecisionOverride.withValue(precision) {
            x.withUnsafeMutableBufferPointer {
                l.forward($0.baseAddress!, tokens: tokens, scratch: .init(width: width, inner: l.fc1.rows, tokens: tokens))
            }
        }
        return x
    }

    @Test func zeroPaddingTheInnerWidthChangesNothing() throws {
        let l = try Self.layer()
        let padded = l.paddingInner(to: 32)
        #expect(padded.fc1.rows == 96 && padded.fc2.cols == 96 && padded.fc1Bias.count == 96)
        let a = Self.run(l), b = Self.run(padded)
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? 1
        #expect(diff < 1e-5, "max |Δ| \(diff)")
        #expect(l.paddingInner(to: 8).fc1.rows == 72, "already whole blocks of 8")
    }

    @Test(.enabled(if: Quant.int8GEMMAvailable, "the int8 GEMM runs where VNNI does"))
    func quantizedLayerRunsEveryMapInInt8() throws {
        let l = try Self.layer()
        let q = l.quantized(.q8_0)
        #expect(q.linearWeights.allSatisfy { Quant.hasInt8GEMM($0) })
        let exact = Self.run(l), int8 = Self.run(q, precision: .int8)
        #expect(exact != int8)
        #expect(pcc(exact, int8) >= 0.999, "pcc \(pcc(exact, int8))")
    }
}
