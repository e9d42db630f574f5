import Foundation
import Testing
@testable import Kernels
import CKernels

/// The encoder kernels (BLAS attention with key prefixes, vector exp) against naive twins.
@Suite struct EncoderKernelTests {
    @Test func denseAttentionMatchesNaive() {
        var rng = SeededRNG(seed: 31)
        var cases: [(q: Int, k: Int, heads: Int, hd: Int)] = [(1, 1, 1, 1), (64, 5, 1, 16), (7, 300, 3, 72), (50, 50, 2, 8)]
        while cases.count < 20 { cases.append((rng.int(1...80), rng.int(1...120), rng.int(1...4), rng.int(1...40))) }
        for (nq, nk, heads, hd) in cases {
            let width = heads * hd
            let q = rng.floats(nq * width), k = rng.floats(nk * width), v = rng.floats(nk * width)
            // every third case hides a per-query suffix of keys (key padding, block-causal chunks)
            let limit: ((Int) -> Int)? = nq % 3 == 0 ? nil : { i in 1 + (i * 7 + 3) % nk }
            var mask = [Float](repeating: 0, count: nq * nk)
            if let limit { for i in 0..<nq { for j in limit(i)..<nk { mask[i * nk + j] = -.infinity } } }
            let shape = AttentionShape(heads: heads, kvHeads: heads, headDim: hd)
            let ref = Naive.attention(q: q, k: k, v: v, tokens: nq, queryStart: 0, kvLength: nk, shape: shape,
                                      causal: false, mask: mask)
            var out = [Float](repeating: .nan, count: nq * width)
            q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                Attention.dense(q: qp.baseAddress!, qStride: width, k: kp.baseAddress!, v: vp.baseAddress!, kvStride: width,
                                queries: nq, keys: nk, heads: heads, headDim: hd, scale: shape.scale, visibleKeys: limit,
                                into: &out, outStride: width)
            } } }
            #expect(relErr(out, ref) < 1e-5, "dense attention \(nq)x\(nk) heads \(heads)x\(hd)")
        }
    }

    /// The bf16 path (`--prefill-precision bf16/int8` on AVX512_BF16) against a twin that rounds the same
    /// operands: bf16(q·scale)·bf16(k) in double, the softmax, then bf16(p)·bf16(v).
    @Test(.enabled(if: BF16Dot.available, "AVX512_BF16 CPUs only"))
    func bf16DenseAttentionMatchesItsTwin() {
        var rng = SeededRNG(seed: 37)
        var cases: [(q: Int, k: Int, heads: Int, hd: Int)] = [(1, 1, 1, 1), (64, 5, 1, 16), (7, 300, 3, 72), (50, 50, 2, 9), (300, 70, 2, 40)]
        while cases.count < 20 { cases.append((rng.int(1...80), rng.int(1...120), rng.int(1...4), rng.int(1...40))) }
        let round = { (x: Float) in bf16ToFloat(floatToBF16(x)) }
        for (nq, nk, heads, hd) in cases {
            let width = heads * hd, scale = 1 / Float(hd).squareRoot()
            let q = rng.floats(nq * width), k = rng.floats(nk * width), v = rng.floats(nk * width)
            let limit: ((Int) -> Int)? = nq % 3 == 0 ? nil : { i in 1 + (i * 7 + 3) % nk }
            var ref = [Float](repeating: 0, count: nq * width)
            for h in 0..<heads {
                for i in 0..<nq {
                    let visible = limit?(i) ?? nk
                    var s = (0..<visible).map { j in
                        Float((0..<hd).reduce(0.0) { $0 + Double(round(q[i * width + h * hd + $1] * scale)) * Double(round(k[j * width + h * hd + $1])) })
                    }
                    let m = s.max()!
                    s = s.map { Foundation.exp($0 - m) }
                    let sum = s.reduce(0, +)
                    let p = s.map { round($0 / sum) }
                    for d in 0..<hd {
                        ref[i * width + h * hd + d] = Float((0..<visible).reduce(0.0) { $0 + Double(p[$1]) * Double(round(v[$1 * width + h * hd + d])) })
                    }
                }
            }
            var out = [Float](repeating: .nan, count: nq * width)
            Linear.$prefillPrecisionOverride.withValue(.bf16) {
                q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                    Attention.dense(q: qp.baseAddress!, qStride: width, k: kp.baseAddress!, v: vp.baseAddress!, kvStride: width,
                                    queries: nq, keys: nk, heads: heads, headDim: hd, scale: scale, visibleKeys: limit,
                                    into: &out, outStride: width)
                } } }
            }
            // a probability at a rounding boundary may round the other way after a different summation order
            #expect(relErr(out, ref) < 1e-3, "bf16 dense attention \(nq)x\(nk) heads \(heads)x\(hd): \(relErr(out, ref))")
        }
    }

    /// The vector conversion rounds exactly as the scalar one, NaN and infinities included.
    @Test func vectorBF16ConversionMatchesScalar() {
        var rng = SeededRNG(seed: 38)
        var x = rng.floats(1000).map { $0 * 1e3 }
        x += [.nan, .infinity, -.infinity, 0, -0, Float.leastNonzeroMagnitude, 1.00390625, 1.01171875, 3.4e38]
        for n in [0, 1, 15, 16, 17, x.count] {
            var out = [UInt16](repeating: 0xFFFF, count: n)
            x.withUnsafeBufferPointer { ck_f32_to_bf16($0.baseAddress!, n, 1, &out) }
            #expect(out == x.prefix(n).map(floatToBF16), "n \(n)")
        }
    }

    @Test func vectorExpMatchesLibm() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let lanes = SIMD8<Float>((0..<8).map { x + Float($0) * 0.0137 })
            let e = exp8(lanes)
            for i in 0..<8 {
                let ref = Foundation.exp(Double(lanes[i]))
                worst = max(worst, abs(Double(e[i]) - ref) / ref)
            }
            x += 0.1
        }
        #expect(worst < 5e-7, "relative error \(worst)")
        let edges = exp8(SIMD8<Float>(-1000, -88, 0, 1, 89, 1000, -.infinity, 0.5))
        #expect(edges[0] == 0 && edges[2] == 1 && edges[4] == .infinity && edges[5] == .infinity && edges[6] == 0)
        #expect(abs(edges[3] - Float(M_E)) < 1e-6)
    }
}

@Suite struct ConvolutionTwinTests {
    /// [C, T] channels-first ↔ [T, C] time-major.
    func transpose(_ x: [Float], _ rows: Int, _ cols: Int) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        for r in 0..<rows { for c in 0..<cols { y[c * rows + r] = x[r * cols + c] } }
        return y
    }

    @Test func denseConvolutionMatchesNaive() {
        var rng = SeededRNG(seed: 41)
        var cases: [(t: Int, cin: Int, cout: Int, k: Int, p: Int, d: Int, s: Int)] =
            [(1, 1, 1, 1, 0, 1, 1), (10, 80, 32, 3, 1, 1, 1), (11, 32, 32, 3, 1, 1, 2), (9, 5, 7, 7, 6, 2, 1), (4, 3, 2, 3, 0, 1, 1)]
        while cases.count < 20 {
            let k = rng.int(1...7), d = rng.int(1...3)
            cases.append((rng.int(k * d...40), rng.int(1...20), rng.int(1...20), k, rng.int(0...4), d, rng.int(1...3)))
        }
        for (t, cin, cout, k, p, d, s) in cases {
            let x = rng.floats(cin * t), w = rng.floats(cout * cin * k), b = rng.floats(cout)
            let ref = Naive.conv1d(x, channels: cin, frames: t, weight: w, outChannels: cout, bias: b, kernel: k, padding: p,
                                   dilation: d, stride: s, groups: 1)
            let n = Conv1d.outputFrames(t, kernel: k, padding: p, dilation: d, stride: s)
            var y = [Float](repeating: .nan, count: n * cout)
            transpose(x, cin, t).withUnsafeBufferPointer { xp in
                Conv1d.forward(xp.baseAddress!, frames: t, channels: cin, weight: WeightMatrix(rows: cout, cols: cin * k, values: w),
                               bias: b, kernel: k, padding: p, dilation: d, stride: s, into: &y)
            }
            #expect(relErr(transpose(y, n, cout), ref) < 1e-5, "conv t\(t) \(cin)→\(cout) k\(k) p\(p) d\(d) s\(s)")
        }
    }

    @Test func depthwiseConvolutionMatchesNaive() {
        var rng = SeededRNG(seed: 42)
        var cases: [(t: Int, c: Int, k: Int, d: Int)] = [(1, 1, 1, 1), (20, 256, 7, 2), (9, 512, 7, 1), (3, 5, 7, 2)]
        while cases.count < 20 { cases.append((rng.int(1...40), rng.int(1...70), 2 * rng.int(0...3) + 1, rng.int(1...3))) }
        for (t, c, k, d) in cases {
            let p = d * (k / 2)  // "same" length
            let x = rng.floats(c * t), w = rng.floats(c * k), b = rng.floats(c)
            let ref = Naive.conv1d(x, channels: c, frames: t, weight: w, outChannels: c, bias: b, kernel: k, padding: p,
                                   dilation: d, stride: 1, groups: c)
            var y = [Float](repeating: .nan, count: t * c)
            transpose(x, c, t).withUnsafeBufferPointer { xp in
                Conv1d.depthwise(xp.baseAddress!, frames: t, channels: c, weight: w, bias: b, kernel: k, padding: p, dilation: d, into: &y)
            }
            #expect(relErr(transpose(y, t, c), ref) < 1e-5, "depthwise t\(t) c\(c) k\(k) d\(d)")
        }
    }
}
