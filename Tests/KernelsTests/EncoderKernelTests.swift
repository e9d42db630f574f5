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
