import Foundation
import Kernels

/// Decoding parameters. Defaults are MiniCPM-o's `chat()` sampling defaults (spec §6.4).
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// 0 means greedy (argmax after the repetition penalty).
    public var temperature: Float = 0.7
    /// 0 disables top-k.
    public var topK: Int = 100
    /// 1 disables top-p.
    public var topP: Float = 0.8
    /// 1 disables the penalty. Applied to tokens generated so far (MiniCPM-o's chat feeds the prompt as
    /// embeddings, so Hugging Face's processor never sees the prompt ids).
    public var repetitionPenalty: Float = 1.05
    public var seed: UInt64? = nil

    public init(temperature: Float = 0.7, topK: Int = 100, topP: Float = 0.8, repetitionPenalty: Float = 1.05,
                seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    public static let greedy = SamplingParameters(temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1)

    public func validate() throws {
        var p: [String] = []
        if !(temperature >= 0) || !temperature.isFinite { p.append("temperature must be ≥ 0") }
        if topK < 0 { p.append("top-k must be ≥ 0") }
        if !(topP > 0 && topP <= 1) { p.append("top-p must be in (0, 1]") }
        if !(repetitionPenalty > 0) || !repetitionPenalty.isFinite { p.append("repetition penalty must be > 0") }
        if !p.isEmpty { throw GenerationError.invalidParameters(p.joined(separator: "; ")) }
    }
}

/// Turns logits into a token with Hugging Face's processing order:
/// repetition penalty → temperature → top-k → top-p → softmax → multinomial draw.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    var rng: Xoshiro256

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = Xoshiro256(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
    }

    /// Penalises `previous` tokens in place: positive logits are divided by the penalty, negative ones
    /// multiplied (each distinct token once).
    public static func applyRepetitionPenalty(_ logits: inout [Float], previous: [Int], penalty: Float) {
        guard penalty != 1 else { return }
        for id in Set(previous) where id >= 0 && id < logits.count {
            let l = logits[id]
            logits[id] = l < 0 ? l * penalty : l / penalty
        }
    }

    /// The distribution a draw is made from, over (token, probability) pairs after all filters.
    public static func distribution(_ logits: [Float], previous: [Int], parameters p: SamplingParameters) -> [(Int, Float)] {
        var l = logits
        applyRepetitionPenalty(&l, previous: previous, penalty: p.repetitionPenalty)
        if p.temperature == 0 {
            return [(argmax(l), 1)]
        }
        // top-k before anything is materialised: temperature (> 0) keeps the order, and a decode step
        // should not build tuples for all 150k vocabulary entries. HF keeps ties with the k-th value.
        let kth = p.topK > 0 && p.topK < l.count ? kthLargest(l, p.topK) : -Float.infinity
        var cand: [(Int, Float)] = []
        cand.reserveCapacity(p.topK > 0 ? p.topK + 8 : l.count)
        for (i, v) in l.enumerated() where v >= kth { cand.append((i, v / p.temperature)) }
        cand.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        var probs = softmax(cand.map { $0.1 })
        if p.topP < 1 {
            // HF: ascending cumulative mass; drop tokens whose cumulative mass ≤ 1 − top_p, keep ≥ 1.
            var cum: Float = 0
            var removed = 0
            for i in stride(from: cand.count - 1, through: 1, by: -1) {  // the top token always stays
                cum += probs[i]
                if cum <= 1 - p.topP { removed += 1 } else { break }
            }
            cand.removeLast(removed)
            probs = softmax(cand.map { $0.1 })
        }
        return zip(cand.map { $0.0 }, probs).map { ($0, $1) }
    }

    public mutating func sample(_ logits: [Float], previous: [Int]) -> Int {
        let dist = Self.distribution(logits, previous: previous, parameters: parameters)
        if dist.count == 1 { return dist[0].0 }
        let u = Float(Double(rng.next() >> 11) * 0x1.0p-53)
        var acc: Float = 0
        for (id, prob) in dist {
            acc += prob
            if u < acc { return id }
        }
        return dist[dist.count - 1].0
    }

    public static func argmax(_ l: [Float]) -> Int { l.withUnsafeBufferPointer(indexOfMax) }

    static func softmax(_ x: [Float]) -> [Float] {
        guard let m = x.max() else { return [] }
        let e = x.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// The k-th largest value through a size-k min-heap: O(n log k) over a 150k vocabulary.
    static func kthLargest(_ values: [Float], _ k: Int) -> Float {
        var heap = [Float]()
        heap.reserveCapacity(k)
        func siftDown(_ i0: Int) {
            var i = i0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l] < heap[m] { m = l }
                if r < heap.count && heap[r] < heap[m] { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for v in values {
            if heap.count < k {
                heap.append(v)
                var i = heap.count - 1
                while i > 0 && heap[(i - 1) / 2] > heap[i] { heap.swapAt(i, (i - 1) / 2); i = (i - 1) / 2 }
            } else if v > heap[0] {
                heap[0] = v
                siftDown(0)
            }
        }
        return heap[0]
    }
}

/// xoshiro256** — small, fast, seedable.
struct Xoshiro256: RandomNumberGenerator, Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)

    init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
}
