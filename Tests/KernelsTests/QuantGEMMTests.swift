import Foundation
import Testing
@testable import Kernels
import CKernels

/// The int8 prefill GEMM (`--prefill-precision int8`) against its naive twin, and against one-token
/// products: the same arithmetic as decode, so prompt tokens get the values decode would give them.
@Suite struct QuantGEMMTests {
    /// (rows, cols, tokens): rows past the last group of sixteen, an odd block count (a pair's last
    /// block alone), token counts around the kernel's tile of eight, long rows, tokens in more than one of the
    /// kernel's L2-sized stretches (200 tokens at K = 4096, 40 at 18944), the last one short.
    static let shapes: [(Int, Int, Int)] = {
        var s = [(16, 32, 1), (16, 64, 8), (32, 96, 9), (48, 320, 17), (37, 224, 5), (64, 4096, 3), (128, 1024, 64),
                 (20, 8224, 2), (208, 896, 12), (16, 18944, 7), (512, 3584, 16), (100, 160, 33), (17, 32, 4),
                 (32, 4096, 203), (16, 18944, 50)]
        var rng = SeededRNG(seed: 61)
        while s.count < 26 { s.append((rng.int(16...160), 32 * rng.int(1...48), rng.int(1...40))) }
        return s
    }()

    @Test(.enabled(if: Quant.vnni, "the int8 GEMM reads the interleaved layout, made only where VNNI runs"),
          arguments: [WeightFormat.q8_0, .q4_0])
    func int8GemmMatchesNaiveTwin(format: WeightFormat) {
        var rng = SeededRNG(seed: 62)
        for (r, c, t) in Self.shapes {
            let w = Quant.quantize(WeightMatrix(rows: r, cols: c, values: rng.floats(r * c)), to: format, interleaved: true)
            #expect(Quant.hasInt8GEMM(w))
            let x = rng.floats(t * c, scale: 2), bias = rng.floats(r)
            var y = [Float](repeating: .nan, count: t * r), naive = y
            Quant.gemm(x, tokens: t, weight: w, bias: bias, into: &y)
            Quant.gemmNaive(x, tokens: t, weight: w, bias: bias, into: &naive)
            #expect(relErr(y, naive) < 1e-5, "\(format) \(r)x\(c), \(t) tokens")
            // each token's row is exactly the one-token product decode computes
            for token in [0, t - 1] {
                var single = [Float](repeating: .nan, count: r)
                x.withUnsafeBufferPointer { Quant.gemv(w, $0.baseAddress! + token * c, bias: bias, into: &single) }
                #expect(Array(y[(token * r)..<(token * r + r)]) == single, "\(format) \(r)x\(c) token \(token)")
            }
        }
    }

    /// The AVX2 kernels on plain rows (the prefill of CPUs without VNNI, whose weights keep that layout):
    /// close to the naive twin, and each token's row is bit for bit the one-token AVX2 GEMV's.
    @Test(.enabled(if: ck_gemm_plain_vectorized() != 0, "a build without AVX2 loops over the one-token kernels"),
          arguments: [WeightFormat.q8_0, .q4_0])
    func plainRowsGemmIsDecodeArithmetic(format: WeightFormat) {
        var rng = SeededRNG(seed: 64)
        for (r, c, t) in Self.shapes {
            let w = Quant.quantize(WeightMatrix(rows: r, cols: c, values: rng.floats(r * c)), to: format)
            #expect(!w.interleaved)
            let x = rng.floats(t * c, scale: 2), bias = rng.floats(r)
            var y = [Float](repeating: .nan, count: t * r), naive = y, single = [Float](repeating: .nan, count: r)
            x.withUnsafeBufferPointer { xb in
                bias.withUnsafeBufferPointer { bb in
                    y.withUnsafeMutableBufferPointer { Quant.gemmPlain(xb.baseAddress!, tokens: t, weight: w, bias: bb.baseAddress!, into: $0.baseAddress!) }
                    for token in 0..<t {
                        single.withUnsafeMutableBufferPointer {
                            Quant.gemv([(w, bb.baseAddress!, $0.baseAddress!)], xb.baseAddress! + token * c, vnni: false)
                        }
                        #expect(Array(y[(token * r)..<(token * r + r)]) == single, "\(format) \(r)x\(c) token \(token) of \(t)")
                    }
                }
            }
            Quant.gemmNaive(x, tokens: t, weight: w, bias: bias, into: &naive)
            #expect(relErr(y, naive) < 1e-5, "\(format) \(r)x\(c), \(t) tokens")
        }
    }

    /// Through `Linear.forward` with the int8 precision: quantized weights take the int8 GEMM, others
    /// still run (bf16 or f32) and close to float32.
    @Test func int8PrecisionRoutesByFormat() {
        var rng = SeededRNG(seed: 63)
        let (r, c, t) = (48, 256, 6)
        let values = rng.floats(r * c), x = rng.floats(t * c)
        let exact = WeightMatrix(rows: r, cols: c, values: values)
        var reference = [Float](repeating: .nan, count: t * r)
        Linear.forward(x, tokens: t, weight: exact, bias: nil, into: &reference)
        for format in [WeightFormat.q8_0, .bf16, .f32] {
            let w = format.isQuantized ? Quant.quantize(exact, to: format, interleaved: true) : weight(values, rows: r, cols: c, format: format).0
            var y = [Float](repeating: .nan, count: t * r)
            Linear.$prefillPrecisionOverride.withValue(.int8) { Linear.forward(x, tokens: t, weight: w, bias: nil, into: &y) }
            #expect(relErr(y, reference) < 2e-2, "\(format)")
            if Quant.hasInt8GEMM(w) {
                var direct = [Float](repeating: .nan, count: t * r)
                Quant.gemm(x, tokens: t, weight: w, bias: nil, into: &direct)
                #expect(y == direct)
            }
        }
    }
}
