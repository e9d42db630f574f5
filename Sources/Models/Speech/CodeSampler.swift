import Foundation
import Kernels

/// How the TTS picks each frame's four codes (spec §5.4): logits / temperature[q]; after the BOS step a
/// repetition penalty (off at 1.0), top-p then top-k (each keeping at least 3 classes); EOS forbidden
/// for the first steps of a call; then a draw — or the argmax in greedy mode (tests, reproducibility).
public struct CodeSampler: Sendable {
    public var temperatures: [Float] = [0.1, 0.3, 0.1, 0.3]
    public var greedy = false
    public var topP: Float?
    public var topK: Int?
    public var repetitionPenalty: Float?
    var state: UInt64

    public init(seed: UInt64 = 0, greedy: Bool = false) {
        state = seed &+ 0x9E37_79B9_7F4A_7C15
        self.greedy = greedy
    }

    mutating func uniform() -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }

    /// logits [numVQ × numAudioTokens] → one code per codebook.
    public mutating func sample(_ logits: [Float], config: TTSConfig, bos: Bool, suppressEOS: Bool, history: [[Int]]) -> [Int] {
        let v = config.numAudioTokens
        return (0..<config.numVQ).map { q in
            var l = Array(logits[(q * v)..<((q + 1) * v)])
            let t = temperatures[q % temperatures.count]
            for i in 0..<v { l[i] /= t }
            if !bos {
                let penalty = repetitionPenalty ?? config.repetitionPenalty
                if penalty != 1 {
                    // ChatTTS style: over the last 16 frames, each repeat scales the logit again
                    var counts = [Int: Int]()
                    for frame in history.suffix(16) where q < frame.count { counts[frame[q], default: 0] += 1 }
                    for (code, n) in counts where code < v {
                        let f = Foundation.pow(penalty, Float(n))
                        l[code] = l[code] < 0 ? l[code] * f : l[code] / f
                    }
                }
                Self.topP(&l, p: topP ?? config.topP, keep: 3)
                Self.topK(&l, k: topK ?? config.topK, keep: 3)
            }
            if suppressEOS { l[config.eosCode] = -.infinity }
            return greedy ? Self.argmax(l) : draw(l)
        }
    }

    static func argmax(_ l: [Float]) -> Int { l.withUnsafeBufferPointer(indexOfMax) }

    mutating func draw(_ l: [Float]) -> Int {
        let m = l.max() ?? 0
        let e = l.map { $0 == -.infinity ? 0 : Double(Foundation.exp($0 - m)) }
        var u = uniform() * e.reduce(0, +)
        for (i, w) in e.enumerated() where w > 0 {
            u -= w
            if u < 0 { return i }
        }
        return Self.argmax(l)
    }

    /// Hugging Face's TopPLogitsWarper: drop the smallest classes whose cumulative probability stays
    /// ≤ 1 − p, keeping at least `keep`.
    static func topP(_ l: inout [Float], p: Float, keep: Int) {
        guard p < 1 else { return }
        let order = l.indices.sorted { l[$0] < l[$1] }
        let m = l.max() ?? 0
        let e = order.map { Double(Foundation.exp(l[$0] - m)) }
        let z = e.reduce(0, +)
        var cum = 0.0
        for (rank, i) in order.enumerated() where rank < order.count - keep {
            cum += e[rank] / z
            if cum <= Double(1 - p) { l[i] = -.infinity } else { break }
        }
    }

    /// Hugging Face's TopKLogitsWarper: drop classes below the k-th largest (ties kept).
    static func topK(_ l: inout [Float], k: Int, keep: Int) {
        let k = min(max(k, keep), l.count)
        guard k < l.count else { return }
        let threshold = l.sorted(by: >)[k - 1]
        for i in l.indices where l[i] < threshold { l[i] = -.infinity }
    }
}
