import Foundation
import Testing
import Text

@Suite struct PerformanceTests {
    /// About 1 MB of the mixed corpus, shuffled deterministically so that the per-call cache sees
    /// the usual mix of repeated and new pieces.
    static func megabyte() -> String {
        var lines = Fixtures.corpusLines
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var text = ""
        while text.utf8.count < 1_000_000 {
            for i in stride(from: lines.count - 1, to: 0, by: -1) {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                lines.swapAt(i, Int(state >> 33) % (i + 1))
            }
            text += lines.joined(separator: "\n")
        }
        return text
    }

    /// Reports how long parsing the full Qwen2 tokenizer.json takes (151,643 tokens and merges).
    @Test func loadTokenizerJSON() throws {
        let data = try Fixtures.data("qwen2/tokenizer.json.gz")
        let clock = ContinuousClock()
        var tokenizer: Qwen2Tokenizer?
        let elapsed = clock.measure { tokenizer = try? Qwen2Tokenizer(tokenizerJSONData: data) }
        print("loaded tokenizer.json (\(data.count) bytes) in \(elapsed)")
        #expect(tokenizer?.vocabularySize == 151665)
    }

    @Test func tokenizeOneMegabyte() {
        let tokenizer = Fixtures.qwen2
        let text = Self.megabyte()
        let clock = ContinuousClock()
        var ids = [Int]()
        let elapsed = clock.measure { ids = tokenizer.encode(text) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        print("tokenized \(text.utf8.count) bytes into \(ids.count) tokens in \(String(format: "%.3f", seconds)) s")
        #expect(tokenizer.decode(ids) == text.precomposedStringWithCanonicalMapping)
        #if !DEBUG
        // Generous: the point is to catch an accidental quadratic path, not to benchmark.
        #expect(seconds < 5)
        #endif
    }
}
