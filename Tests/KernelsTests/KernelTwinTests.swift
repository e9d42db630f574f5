import Foundation
import Testing
@testable import Kernels

/// Every fast kernel against its naive twin on ≥ 20 random shapes, odd sizes included.
@Suite struct KernelTwinTests {
    static let shapes: [(tokens: Int, rows: Int, cols: Int)] = {
        var rng = SeededRNG(seed: 7)
        var s: [(Int, Int, Int)] = [(1, 1, 1), (1, 3, 7), (2, 5, 9), (1, 64, 64), (3, 65, 129), (1, 4, 16), (5, 67, 33),
                                    (1, 130, 300), (17, 64, 200), (1, 1000, 17)]
        while s.count < 24 { s.append((rng.int(1...40), rng.int(1...300), rng.int(1...300))) }
        return s
    }()

    @Test(arguments: [WeightFormat.f32, .f16, .bf16])
    func linearMatchesNaive(format: WeightFormat) {
        var rng = SeededRNG(seed: 11)
        for (t, r, c) in Self.shapes {
            let (w, exact) = weight(rng.floats(r * c), rows: r, cols: c, format: format)
            let x = rng.floats(t * c)
            let bias = rng.floats(r)
            let ref = Naive.linear(x, tokens: t, weight: WeightMatrix(rows: r, cols: c, values: exact), bias: bias)
            var y = [Float](repeating: .nan, count: t * r)
            Linear.forward(x, tokens: t, weight: w, bias: bias, into: &y)
            #expect(relErr(y, ref) < 1e-5, "linear \(format) \(t)x\(r)x\(c)")
            // The GEMV and GEMM paths must agree row by row as well.
            if t > 1 {
                var single = [Float](repeating: .nan, count: r)
                x.withUnsafeBufferPointer { xp in Linear.gemv(w, xp.baseAddress! + c, bias: bias, into: &single) }
                #expect(relErr(single, Array(ref[r..<(2 * r)])) < 1e-5)
            }
        }
    }

    /// Short rows go four at a time a quarter of the range apart, long ones (≥ 8192) as neighbours.
    @Test func largeGemvUsesThreadsAndMatches() {
        var rng = SeededRNG(seed: 12)
        for (r, c) in [(1031, 517), (37, 8200)] {
            let (w, exact) = weight(rng.floats(r * c), rows: r, cols: c, format: .bf16)
            let x = rng.floats(c)
            let ref = Naive.linear(x, tokens: 1, weight: WeightMatrix(rows: r, cols: c, values: exact), bias: nil)
            var y = [Float](repeating: 0, count: r)
            Linear.gemv(w, x, bias: nil, into: &y)
            #expect(relErr(y, ref) < 1e-5, "\(r)x\(c)")
        }
    }

    @Test func rmsNormMatchesNaive() {
        var rng = SeededRNG(seed: 13)
        for (t, _, c) in Self.shapes {
            let x = rng.floats(t * c, scale: 3), w = rng.floats(c)
            var y = [Float](repeating: 0, count: x.count)
            Norm.rms(x, rows: t, dim: c, weight: w, eps: 1e-6, into: &y)
            #expect(relErr(y, Naive.rmsNorm(x, dim: c, weight: w, eps: 1e-6)) < 1e-5, "rms \(t)x\(c)")
        }
    }

    @Test func layerNormMatchesNaive() {
        var rng = SeededRNG(seed: 14)
        for (t, _, c) in Self.shapes {
            let x = rng.floats(t * c, scale: 3).map { $0 + 2 }, w = rng.floats(c), b = rng.floats(c)
            var y = [Float](repeating: 0, count: x.count)
            Norm.layer(x, rows: t, dim: c, weight: w, bias: b, eps: 1e-5, into: &y)
            #expect(relErr(y, Naive.layerNorm(x, dim: c, weight: w, bias: b, eps: 1e-5)) < 1e-5, "layernorm \(t)x\(c)")
        }
    }

    @Test func softmaxAndActivationsMatchNaive() {
        var rng = SeededRNG(seed: 15)
        for (_, r, c) in Self.shapes {
            let n = r + c
            let x = rng.floats(n, scale: 8)
            var s = x
            Activation.softmax(&s, count: n)
            #expect(relErr(s, Naive.softmax(x)) < 1e-5)
            var a = x
            Activation.silu(&a, count: n)
            #expect(relErr(a, Naive.silu(x)) < 1e-5)
            var g = x
            Activation.geluErf(&g, count: n)
            #expect(relErr(g, Naive.geluErf(x)) < 1e-5)
            var gt = x
            Activation.geluTanh(&gt, count: n)
            #expect(relErr(gt, Naive.geluTanh(x)) < 1e-5)
            let up = rng.floats(n)
            var sw = [Float](repeating: 0, count: n)
            Activation.swiglu(gate: x, up: up, count: n, into: &sw)
            #expect(relErr(sw, zip(Naive.silu(x), up).map { $0 * $1 }) < 1e-5)
        }
        // gates past exp's range: silu saturates to 0 and to the gate itself
        let gates: [Float] = [-1000, -200, -89, -87.5, -20, -0.0, 0, 1e-30, 20, 87.5, 89, 200, 1000, 3]
        var sw = [Float](repeating: .nan, count: gates.count)
        Activation.swiglu(gate: gates, up: [Float](repeating: 2, count: gates.count), count: gates.count, into: &sw)
        for (g, v) in zip(gates, sw) {
            let want = 2 * g / (1 + Foundation.exp(-g))
            #expect(abs(v - want) <= 1e-6 * max(1, abs(want)), "swiglu(\(g)) = \(v), want \(want)")
        }
    }

    /// The greedy pick: the first of equal maxima, NaNs never chosen, any length (tails of the lanes).
    @Test func erf8MatchesLibm() {
        // every 1/1024 over [-6, 6], the tails (|erf| → 1) and a non-finite-free zero
        var worst: Float = 0
        for i in stride(from: -6 * 1024, to: 6 * 1024, by: 8) {
            let x = SIMD8<Float>((0..<8).map { Float(i + $0) / 1024 })
            let y = erf8(x)
            for l in 0..<8 { worst = max(worst, abs(y[l] - Foundation.erf(x[l]))) }
        }
        // the formula's 1.5e-7 plus float32 evaluation: exp8's 2e-7 relative and a few roundings near 1
        #expect(worst < 5e-7)
        #expect(erf8(SIMD8(repeating: 30)) == SIMD8(repeating: 1))
        #expect(erf8(SIMD8(repeating: -30)) == SIMD8(repeating: -1))
    }

    @Test func indexOfMaxMatchesScalarScan() {
        func scalar(_ l: [Float]) -> Int {
            var best = 0
            for i in 1..<max(l.count, 1) where l[i] > l[best] { best = i }
            return best
        }
        var rng = SeededRNG(seed: 21)
        var cases: [[Float]] = [[], [5], [.nan, 1, 2], [1, .nan, 3, .nan], [-.infinity, -.infinity],
                                [-0.0, 0, 0], [0, -0.0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 9]]
        for n in [7, 8, 9, 15, 16, 17, 100, 151_936] {
            var l = (0..<n).map { _ in Float(rng.int(0...50)) }  // many ties
            cases.append(l)
            l[rng.int(0...(n - 1))] = .nan
            cases.append(l)
            cases.append(rng.floats(n))
        }
        for l in cases {
            #expect(l.withUnsafeBufferPointer(indexOfMax) == scalar(l), "\(l.prefix(12))")
        }
    }

    @Test func ropeMatchesNaive() {
        var rng = SeededRNG(seed: 16)
        for (i, (t, _, _)) in Self.shapes.enumerated() {
            let dim = 2 * rng.int(1...40), heads = rng.int(1...5)
            let theta: Float = i % 2 == 0 ? 10000 : 1_000_000
            let start = rng.int(0...3000)
            let positions = Array(start..<(start + t))
            let x = rng.floats(t * heads * dim)
            let rope = RoPE(dim: dim, theta: theta)
            let (c, s) = rope.table(positions: positions)
            var y = x
            rope.apply(&y, tokens: t, heads: heads, cos: c, sin: s)
            // float32 angles at positions in the thousands carry ~1e-4 absolute error, as in the reference
            #expect(maxAbs(y, Naive.rope(x, positions: positions, heads: heads, dim: dim, theta: Double(theta))) < 2e-3,
                    "rope dim \(dim) heads \(heads) start \(start)")
        }
    }

    @Test func attentionMatchesNaive() {
        var rng = SeededRNG(seed: 17)
        for i in 0..<30 {
            // the last cases take the SIMD paths: head dims of 64 and 128, GQA groups of up to 7, blocks of rows
            let wide = i >= 24
            let kvHeads = rng.int(1...3), group = wide ? rng.int(1...7) : rng.int(1...4)
            let hd = wide ? 64 * rng.int(1...2) : rng.int(1...40)
            let shape = AttentionShape(heads: kvHeads * group, kvHeads: kvHeads, headDim: hd)
            let past = wide ? rng.int(0...90) : rng.int(0...50), tokens = wide && i % 2 == 0 ? 1 : rng.int(1...20)
            let kvLen = past + tokens
            let causal = i % 3 != 2
            let q = rng.floats(tokens * shape.heads * hd, scale: 2)
            let k = rng.floats(kvLen * kvHeads * hd, scale: 2), v = rng.floats(kvLen * kvHeads * hd)
            var mask: [Float]? = nil
            if i % 2 == 1 {  // key padding: hide a random set of keys (never all)
                mask = (0..<(tokens * kvLen)).map { j in j % kvLen != 0 && rng.int(0...3) == 0 ? -Float.infinity : 0 }
            }
            let ref = Naive.attention(q: q, k: k, v: v, tokens: tokens, queryStart: past, kvLength: kvLen, shape: shape,
                                      causal: causal, mask: mask)
            // Head-major pages of odd sizes must give the same result as contiguous position-major rows.
            let stride = kvHeads * hd
            let kc = UnsafeMutablePointer<Float>.allocate(capacity: kvLen * stride), vc = UnsafeMutablePointer<Float>.allocate(capacity: kvLen * stride)
            defer { kc.deallocate(); vc.deallocate() }
            for pageSize in [0, kvLen, 3, 7] {  // 0: contiguous rows
                let count = pageSize == 0 ? 0 : (kvLen + pageSize - 1) / pageSize
                let pages = (0..<count).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: pageSize * stride) }
                let vpages = pages.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: pageSize * stride) }
                defer { (pages + vpages).forEach { $0.deallocate() } }
                let keys = pageSize == 0 ? KVRows(contiguous: kc, heads: kvHeads, headDim: hd)
                    : KVRows(headMajorPages: pages, pageSize: pageSize, headDim: hd)
                let values = pageSize == 0 ? KVRows(contiguous: vc, heads: kvHeads, headDim: hd)
                    : KVRows(headMajorPages: vpages, pageSize: pageSize, headDim: hd)
                for j in 0..<kvLen {
                    k.withUnsafeBufferPointer { keys.store(j, row: $0.baseAddress! + j * stride, heads: kvHeads, headDim: hd) }
                    v.withUnsafeBufferPointer { values.store(j, row: $0.baseAddress! + j * stride, heads: kvHeads, headDim: hd) }
                }
                if pageSize > 1 && kvHeads > 1 && kvLen > 1 {  // the layout is head-major: head 1 follows head 0's positions
                    #expect(keys.vector(0, head: 1) == pages[0] + pageSize * hd)
                }
                var out = [Float](repeating: .nan, count: q.count)
                if let mask {
                    Attention.forward(q: q, tokens: tokens, queryStart: past, shape: shape, keys: keys, values: values,
                                      kvLength: kvLen, causal: causal, mask: mask, into: &out)
                } else {
                    Attention.forward(q: q, tokens: tokens, queryStart: past, shape: shape, keys: keys, values: values,
                                      kvLength: kvLen, causal: causal, into: &out)
                }
                #expect(relErr(out, ref) < 1e-5, "attention case \(i) page \(pageSize)")
            }
        }
    }

    @Test func bf16RoundTrip() {
        for x: Float in [0, 1, -1, 3.14159, 1e-30, 65504, -2.5e38] {
            let r = bf16ToFloat(floatToBF16(x))
            #expect(abs(r - x) <= abs(x) / 128)
        }
        #expect(floatToBF16(1.00390625) == 0x3F80)  // ties to even
        #expect(bf16ToFloat(floatToBF16(.nan)).isNaN)
    }

    @Test func splitRangeCoversEverything() {
        for total in [0, 1, 5, 64, 65, 1000] {
            for parts in 1...5 {
                let r = splitRange(total, parts: parts, align: 4)
                #expect(r.reduce(0) { $0 + $1.count } == total)
                #expect(zip(r, r.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            }
        }
    }

    @Test func guidedPartsCoverEveryRowOnceAndShrink() {
        for rows in [[0], [1], [37], [4864, 896, 896], [18944, 18944], [152_064], [16, 0, 33], [448, 64, 97, 512], [97, 97, 5, 33]] {
            for threads in 1...3 {
                let parts = guidedParts(rows, threads: threads, align: 16, minimum: 80)
                // every item's rows, in order, once
                for (i, n) in rows.enumerated() {
                    let mine = parts.filter { $0.item == i }.map(\.rows)
                    #expect(mine.reduce(0) { $0 + $1.count } == n)
                    #expect(mine.first?.lowerBound ?? 0 == 0)
                    #expect(zip(mine, mine.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                    // bounds stay on groups of 16 except at the item's end
                    #expect(mine.allSatisfy { $0.lowerBound % 16 == 0 && ($0.upperBound % 16 == 0 || $0.upperBound == n) })
                }
                #expect(parts.map(\.item) == parts.map(\.item).sorted())
                #expect(parts.allSatisfy { !$0.rows.isEmpty })
                if threads > 1 && rows == [18944, 18944] {
                    // shares shrink toward the end, down to the minimum
                    let sizes = parts.map(\.rows.count)
                    #expect(sizes.first! == (37888 / (2 * threads) + 15) / 16 * 16)
                    #expect(sizes.last! <= 96)
                    #expect(sizes.count < 40)
                }
            }
        }
    }
}

@Suite struct ThreadPoolTests {
    @Test func everyItemRunsOnceAcrossManyJobs() {
        for n in [2, 3, 5, 17, 64] {
            for _ in 0..<200 {
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: n)
                hits.initialize(repeating: 0, count: n)
                parallelFor(n) { hits[$0] += 1 }
                #expect((0..<n).allSatisfy { hits[$0] == 1 })
                hits.deallocate()
            }
        }
    }

    @Test func nestedAndConcurrentCallsComplete() async {
        // a job submitted while the pool is busy (nested, or from another thread) still runs every item
        await withTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let out = UnsafeMutablePointer<Int>.allocate(capacity: 8 * 8)
                    out.initialize(repeating: 0, count: 64)
                    parallelFor(8) { i in parallelFor(8) { j in out[i * 8 + j] = 1 } }
                    let s = (0..<64).reduce(0) { $0 + out[$1] }
                    out.deallocate()
                    return s
                }
            }
            for await s in group { #expect(s == 64) }
        }
    }
}
