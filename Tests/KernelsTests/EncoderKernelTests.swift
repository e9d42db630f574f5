import Foundation
import Testing
@testable import Kernels

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
