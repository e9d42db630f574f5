import Foundation
import Testing
@testable import Kernels
#if canImport(CKernels)
import CKernels
#endif

@Suite struct QuantTests {
    static let shapes: [(rows: Int, cols: Int)] = {
        var rng = SeededRNG(seed: 21)
        // long rows (≥ 8192 columns) go eight at a time, short ones one or four at a time, with
        // leftover rows, blocks and groups of blocks in every kernel
        var s = [(1, 32), (3, 64), (8, 96), (13, 320), (64, 4096), (1, 1024), (37, 32 * 7), (200, 160), (7, 8224), (5, 8192),
                 (21, 8224), (16, 8192 + 32 * 3), (300, 32 * 45)]
        while s.count < 24 { s.append((rng.int(1...150), 32 * rng.int(1...40))) }
        return s
    }()

    /// Σ_b wd·xd·Σ wq·xq in Double, from the stored blocks: the integer kernels' naive twin.
    func naiveQuantGemv(_ w: WeightMatrix, _ x: [Float]) -> [Float] {
        let nb = w.cols / quantBlock
        var xq = [Int8](repeating: 0, count: w.cols), xd = [Float](repeating: 0, count: nb)
        Quant.quantizeActivations(x, w.cols, &xq, &xd)
        var row = [Float](repeating: 0, count: w.cols)
        return (0..<w.rows).map { r in
            Quant.dequantizeRow(w, r, into: &row)  // = q·d exactly
            var s = 0.0
            for b in 0..<nb {
                for i in 0..<quantBlock { s += Double(row[b * quantBlock + i]) * Double(xq[b * quantBlock + i]) * Double(xd[b]) }
            }
            return Float(s)
        }
    }

    @Test(arguments: [WeightFormat.q8_0, .q4_0])
    func quantizedGemvMatchesNaive(format: WeightFormat) {
        var rng = SeededRNG(seed: 22)
        for (r, c) in Self.shapes {
            let w = Quant.quantize(WeightMatrix(rows: r, cols: c, values: rng.floats(r * c)), to: format)
            let x = rng.floats(c, scale: 2)
            var y = [Float](repeating: .nan, count: r)
            Linear.forward(x, tokens: 1, weight: w, bias: nil, into: &y)
            let naive = naiveQuantGemv(w, x)
            #expect(relErr(y, naive) < 1e-5, "\(format) \(r)x\(c)")
            // the 256-bit kernels, which CPUs without AVX512-VNNI run
            var narrow = [Float](repeating: .nan, count: r)
            narrow.withUnsafeMutableBufferPointer { Quant.gemv([(w, nil, $0.baseAddress!)], x, vnni: false) }
            #expect(relErr(narrow, naive) < 1e-5, "\(format) \(r)x\(c) without VNNI")
        }
    }

    /// q/k/v-style fused products (one pass over several matrices reading the same x, biases
    /// included) equal the matrices multiplied one at a time, in every format.
    @Test(arguments: [WeightFormat.q8_0, .q4_0, .bf16, .f32])
    func fusedGemvEqualsSeparateProducts(format: WeightFormat) {
        var rng = SeededRNG(seed: 26)
        let cols = 32 * 45
        let shapes = [3584 / 8, 64, 97, 512]
        let matrices = shapes.map { weight(rng.floats($0 * cols), rows: $0, cols: cols, format: format).0 }
        let biases = shapes.map { FloatBuffer(rng.floats($0)) }
        let x = rng.floats(cols, scale: 2)
        let fused = shapes.map { FloatBuffer(count: $0) }
        Linear.gemv(matrices.indices.map { (matrices[$0], UnsafePointer(biases[$0].pointer), fused[$0].pointer) }, x)
        for i in shapes.indices {
            var alone = [Float](repeating: .nan, count: shapes[i])
            Linear.gemv(matrices[i], x, bias: biases[i].pointer, into: &alone)
            #expect(fused[i].array == alone, "\(format) matrix \(i)")
        }
    }

    /// The sixteen-row interleaved decode layout (made at load) holds the same blocks as plain rows,
    /// rows past the last whole group stay plain, and every path over it (VNNI GEMV, the portable twin,
    /// dequantization for prefill) agrees.
    @Test(.enabled(if: Quant.vnni, "the interleaved layout is made only where its VNNI kernels run"),
          arguments: [WeightFormat.q8_0, .q4_0])
    func interleavedMatchesPlainRows(format: WeightFormat) {
        var rng = SeededRNG(seed: 28)
        for (r, c) in [(16, 32), (24, 384), (64, 4096), (40, 8192 + 128), (208, 896), (37, 96), (12, 128)] {
            let src = WeightMatrix(rows: r, cols: c, values: rng.floats(r * c))
            let plain = Quant.quantize(src, to: format), mixed = Quant.quantize(src, to: format, interleaved: true)
            let group = WeightMatrix.interleaveGroup
            #expect(mixed.interleaved == (r >= group) && !plain.interleaved, "\(r)x\(c)")
            #expect(mixed.interleavedRows == (r >= group ? r - r % group : 0))
            #expect(mixed.toFloats() == plain.toFloats(), "\(r)x\(c)")
            for row in [0, r / 2, r - 1] {
                var a = [Float](repeating: .nan, count: c), b = a
                Quant.dequantizeRow(plain, row, into: &a)
                Quant.dequantizeRow(mixed, row, into: &b)
                #expect(a == b, "\(r)x\(c) row \(row) naive")
            }
            let x = rng.floats(c, scale: 2)
            let naive = naiveQuantGemv(plain, x)
            var fast = [Float](repeating: .nan, count: r), portable = fast, shift = fast
            Linear.forward(x, tokens: 1, weight: mixed, bias: nil, into: &fast)
            portable.withUnsafeMutableBufferPointer { Quant.gemv([(mixed, nil, $0.baseAddress!)], x, vnni: false) }
            shift.withUnsafeMutableBufferPointer { Quant.gemv([(mixed, nil, $0.baseAddress!)], x, vnni: true, gfni: false) }
            #expect(relErr(fast, naive) < 1e-5, "\(r)x\(c)")
            #expect(relErr(shift, naive) < 1e-5, "\(r)x\(c) without GFNI")
            #expect(relErr(portable, naive) < 1e-5, "\(r)x\(c) portable")
            let t = 3, xs = rng.floats(t * c)
            var yPlain = [Float](repeating: 0, count: t * r), yMixed = yPlain
            Linear.forward(xs, tokens: t, weight: plain, bias: nil, into: &yPlain)
            Linear.forward(xs, tokens: t, weight: mixed, bias: nil, into: &yMixed)
            #expect(yMixed == yPlain, "\(r)x\(c) prefill")
        }
    }

    /// Activations are quantized per block exactly as the naive twin does (SIMD lanes, same arithmetic),
    /// and the block sums the sixteen-row kernels start from are the sums of those values.
    @Test func activationQuantizationEqualsNaive() {
        var rng = SeededRNG(seed: 29)
        for n in [32, 96, 3584, 18944] {
            var x = rng.floats(n, scale: 3)
            x[n / 2] = 0.5 * (x[1] < 0 ? -1 : 1)  // a tie after scaling is likely somewhere; zero block below
            if n >= 64 { for i in 32..<64 { x[i] = 0 } }
            var q = [Int8](repeating: 0, count: n), qn = q, d = [Float](repeating: .nan, count: n / 32), dn = d
            Quant.quantizeActivations(x, n, &q, &d)
            Quant.quantizeActivationsNaive(x, n, &qn, &dn)
            #expect(q == qn, "n \(n)")
            #expect(d == dn, "n \(n)")
            #if canImport(CKernels)
            var sums = [Int32](repeating: 0, count: n / 32)
            ck_block_sums(q, Int32(n), &sums)
            #expect(sums == (0..<(n / 32)).map { b in q[(32 * b)..<(32 * b + 32)].reduce(Int32(0)) { $0 + Int32($1) } })
            #endif
        }
    }

    /// The SIMD block dequantizer against its scalar twin.
    @Test(arguments: [WeightFormat.q8_0, .q4_0])
    func dequantizeRowsMatchesNaive(format: WeightFormat) {
        var rng = SeededRNG(seed: 25)
        for (r, c) in Self.shapes {
            let w = Quant.quantize(WeightMatrix(rows: r, cols: c, values: rng.floats(r * c)), to: format)
            let lo = r / 3
            var fast = [Float](repeating: .nan, count: (r - lo) * c)
            Quant.dequantizeRows(w, lo..<r, into: &fast)
            var naive = [Float](repeating: .nan, count: c)
            for row in lo..<r {
                Quant.dequantizeRow(w, row, into: &naive)
                #expect(Array(fast[((row - lo) * c)..<((row - lo + 1) * c)]) == naive, "\(format) row \(row) of \(r)x\(c)")
            }
        }
    }

    /// Load-time quantization (C) equals its Swift twin bit for bit, ties and zero blocks included.
    @Test(arguments: [WeightFormat.q8_0, .q4_0])
    func quantizeEqualsNaiveRow(format: WeightFormat) {
        var rng = SeededRNG(seed: 27)
        let cols = 32 * 9, rows = 40
        var values = rng.floats(rows * cols, scale: 3)
        for i in 0..<32 { values[i] = 0 }                                     // an all-zero block
        for i in 32..<64 { values[i] = Float(i - 48) / 2 }                    // halves: rounding ties
        for i in 64..<96 { values[i] = Float(i % 17) * 1e-30 }                // scales below f16's range
        for i in 96..<128 { values[i] = Float(i % 5 - 2) * 70000 }            // scales above it
        let w = Quant.quantize(WeightMatrix(rows: rows, cols: cols, values: values), to: format)
        let rowBytes = format.rowBytes(cols), scaleBytes = format.scaleRowBytes(cols)
        var q = [UInt8](repeating: 0, count: rowBytes), d = [UInt16](repeating: 0, count: scaleBytes / 2)
        for r in 0..<rows {
            values.withUnsafeBufferPointer { x in
                q.withUnsafeMutableBytes { qb in
                    Quant.quantizeRow(x.baseAddress! + r * cols, cols: cols, format: format, values: qb.baseAddress!, scales: &d)
                }
            }
            #expect(Array(UnsafeRawBufferPointer(start: w.row(r), count: rowBytes)) == q, "\(format) row \(r)")
            #expect(Array(UnsafeBufferPointer(start: (w.scales! + r * scaleBytes).assumingMemoryBound(to: UInt16.self), count: d.count)) == d)
        }
    }

    @Test(arguments: [WeightFormat.q8_0, .q4_0])
    func roundTripErrorIsWithinHalfAStep(format: WeightFormat) {
        var rng = SeededRNG(seed: 23)
        for (r, c) in Self.shapes.prefix(10) {
            let values = rng.floats(r * c, scale: 3)
            let w = Quant.quantize(WeightMatrix(rows: r, cols: c, values: values), to: format)
            let back = w.toFloats()
            for row in 0..<r {
                for b in 0..<(c / quantBlock) {
                    let block = (0..<quantBlock).map { values[row * c + b * quantBlock + $0] }
                    let amax = block.map(abs).max()!
                    let step = format == .q8_0 ? amax / 127 : amax / 8
                    for i in 0..<quantBlock {
                        let e = abs(back[row * c + b * quantBlock + i] - block[i])
                        // Q4_0's grid is (−8…7)·d with d = −m/8: the side opposite m ends at 7/8 of amax
                        let bound = format == .q4_0 && abs(block[i]) > 7 * step ? step : step * 0.5
                        #expect(e <= bound + amax * 2e-3 + 1e-6, "\(format) error \(e) step \(step)")
                    }
                }
            }
        }
    }

    /// Prefill through dequantized tiles + BLAS agrees with the quantized GEMV up to activation rounding.
    @Test(arguments: [WeightFormat.q8_0, .q4_0])
    func gemmAndGemvAgree(format: WeightFormat) {
        var rng = SeededRNG(seed: 24)
        let (t, r, c) = (5, 130, 256)
        let w = Quant.quantize(WeightMatrix(rows: r, cols: c, values: rng.floats(r * c)), to: format)
        let x = rng.floats(t * c)
        var y = [Float](repeating: 0, count: t * r)
        Linear.forward(x, tokens: t, weight: w, bias: nil, into: &y)
        let exact = Naive.linear(x, tokens: t, weight: WeightMatrix(rows: r, cols: c, values: w.toFloats()), bias: nil)
        #expect(relErr(y, exact) < 1e-5)
        var one = [Float](repeating: 0, count: r)
        Linear.forward(Array(x[c..<(2 * c)]), tokens: 1, weight: w, bias: nil, into: &one)
        #expect(relErr(one, Array(exact[r..<(2 * r)])) < 0.02)
    }
}

/// The bfloat16-dot prefill path against a naive product of the same bf16-rounded operands.
@Suite struct BF16PrefillTests {
    @Test(arguments: [WeightFormat.bf16, .f32, .q8_0])
    func matchesNaiveOnRoundedOperands(format: WeightFormat) throws {
        try #require(BF16Dot.available, "this CPU has no AVX512_BF16; the f32 path is used instead")
        var rng = SeededRNG(seed: 31)
        let shapes = [(1, 1, 32), (3, 7, 33), (4, 6, 64), (5, 13, 100), (9, 30, 96), (64, 64, 128), (70, 37, 320), (2, 600, 64)]
            + (0..<16).map { _ in (rng.int(1...80), rng.int(1...90), 32 * rng.int(1...12)) }
        for (t, r, c) in shapes where !format.isQuantized || c % quantBlock == 0 {
            let (w, exact) = weight(rng.floats(r * c), rows: r, cols: c, format: format)
            let x = rng.floats(t * c, scale: 2)
            var y = [Float](repeating: .nan, count: t * r)
            let bias = rng.floats(r)
            BF16Dot.gemm(x, tokens: t, weight: w, bias: bias, into: &y)
            let xr = x.map { bf16ToFloat(floatToBF16($0)) }, wr = exact.map { bf16ToFloat(floatToBF16($0)) }
            let ref = Naive.linear(xr, tokens: t, weight: WeightMatrix(rows: r, cols: c, values: wr), bias: bias)
            #expect(relErr(y, ref) < 1e-5, "\(format) \(t)x\(r)x\(c)")
        }
    }
}

/// A batched decode step on bf16 weights: each token's row bit for bit the one-token GEMV's.
@Suite struct GemvArithmeticGEMMTests {
    @Test(.enabled(if: Linear.hasGemvArithmeticGEMM(weight([0], rows: 1, cols: 1, format: .bf16).0), "the AVX-512 bf16 GEMV only"))
    func eachTokenEqualsTheGemv() {
        var rng = SeededRNG(seed: 33)
        // rows not a multiple of three, columns with a tail past the last 16, token counts around the tile of eight
        let shapes = [(1, 1, 16), (2, 4, 17), (8, 3, 64), (9, 100, 3584), (16, 37, 100), (3, 600, 48), (20, 7, 1)]
            + (0..<12).map { _ in (rng.int(2...24), rng.int(1...90), rng.int(1...400)) }
        for (t, r, c) in shapes {
            let (w, _) = weight(rng.floats(r * c), rows: r, cols: c, format: .bf16)
            let x = rng.floats(t * c, scale: 2), bias = rng.floats(r)
            var y = [Float](repeating: .nan, count: t * r), one = [Float](repeating: .nan, count: r)
            x.withUnsafeBufferPointer { xb in
                bias.withUnsafeBufferPointer { bb in
                    y.withUnsafeMutableBufferPointer {
                        Linear.gemmWithGemvArithmetic(xb.baseAddress!, tokens: t, weight: w, bias: bb.baseAddress!, into: $0.baseAddress!)
                    }
                    for token in 0..<t {
                        one.withUnsafeMutableBufferPointer { Linear.gemv(w, xb.baseAddress! + token * c, bias: bb.baseAddress!, into: $0.baseAddress!) }
                        #expect(Array(y[(token * r)..<(token * r + r)]) == one, "\(t)x\(r)x\(c) token \(token)")
                    }
                }
            }
        }
    }
}
