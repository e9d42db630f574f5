import Foundation
import Testing
@testable import MiniCPMO

@Suite struct SamplerTests {
    let logits: [Float] = [2.0, 1.0, 0.5, 0.5, -1.0, 3.0, 0.0, -0.5, 1.5, 2.5]

    @Test func topKOneEqualsGreedy() {
        for seed in 0..<20 {
            var s = Sampler(SamplingParameters(temperature: 1.3, topK: 1, topP: 1, repetitionPenalty: 1, seed: UInt64(seed)))
            #expect(s.sample(logits, previous: []) == 5)
        }
        var g = Sampler(.greedy)
        #expect(g.sample(logits, previous: []) == 5)
    }

    @Test func repetitionPenaltyFollowsHuggingFace() {
        var l = logits
        Sampler.applyRepetitionPenalty(&l, previous: [5, 4, 5], penalty: 2)
        #expect(l[5] == 1.5 && l[4] == -2 && l[0] == 2)
        // greedy sees the penalty: 5 (3.0 → 1.5) falls below 9 (2.5)
        #expect(Sampler.distribution(logits, previous: [5], parameters: SamplingParameters(temperature: 0, repetitionPenalty: 2)).first?.0 == 9)
    }

    /// The filtered distribution computed by hand with Hugging Face's rules.
    @Test func filteredDistributionMatchesReference() {
        let p = SamplingParameters(temperature: 0.5, topK: 6, topP: 0.9, repetitionPenalty: 1)
        let dist = Sampler.distribution(logits, previous: [], parameters: p)
        // top-6 by logit: 5 (3.0), 9 (2.5), 0 (2.0), 8 (1.5), 1 (1.0), then 2/3 tie at 0.5 → both kept (7 tokens)
        let kept = [5, 9, 0, 8, 1, 2, 3]
        let scaled = kept.map { Double(logits[$0]) / 0.5 }
        let z = scaled.map { exp($0) }.reduce(0, +)
        let probs = scaled.map { exp($0) / z }
        // top-p: drop tail tokens while the ascending cumulative mass stays ≤ 0.1
        var cum = 0.0, drop = 0
        for q in probs.reversed() { cum += q; if cum <= 0.1 { drop += 1 } else { break } }
        let final = Array(kept.prefix(kept.count - drop))
        #expect(dist.map { $0.0 } == final)
        let z2 = probs.prefix(final.count).reduce(0, +)
        for (i, (_, q)) in dist.enumerated() { #expect(abs(Double(q) - probs[i] / z2) < 1e-5) }
    }

    /// Empirical frequencies over 40k draws fit the filtered distribution (chi-square, fixed seed).
    @Test func drawsMatchDistributionChiSquare() {
        let p = SamplingParameters(temperature: 0.8, topK: 8, topP: 0.95, repetitionPenalty: 1.1, seed: 1234)
        let previous = [0, 9]
        let dist = Sampler.distribution(logits, previous: previous, parameters: p)
        var sampler = Sampler(p)
        let n = 40_000
        var counts = [Int: Int]()
        for _ in 0..<n { counts[sampler.sample(logits, previous: previous), default: 0] += 1 }
        #expect(Set(counts.keys).isSubset(of: Set(dist.map { $0.0 })), "no draw outside the filtered set")
        var chi2 = 0.0
        for (id, q) in dist {
            let e = Double(q) * Double(n)
            let o = Double(counts[id] ?? 0)
            chi2 += (o - e) * (o - e) / e
        }
        // df = k − 1; the 0.999 quantile for df ≤ 9 is below 27.9
        #expect(dist.count >= 4)
        #expect(chi2 < 27.9, "chi-square \(chi2) over \(dist.count) categories")
    }

    @Test func seedsMakeDrawsReproducible() {
        let p = SamplingParameters(temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 99)
        var a = Sampler(p), b = Sampler(p)
        let da = (0..<50).map { _ in a.sample(logits, previous: []) }
        let db = (0..<50).map { _ in b.sample(logits, previous: []) }
        #expect(da == db && Set(da).count > 3)
    }
}
