import Foundation
import Testing
@testable import MiniCPMO
import Kernels

/// Several sequences decoded in one batched step give each the logits it gets alone: bit for bit with
/// quantized weights (the int8 GEMM's rows are the one-token GEMV's), to rounding with float weights.
@Suite struct BatchedDecodeTests {
    let dir = modelDir("tiny-qwen2-quant")

    /// Prompts of mixed lengths (one token, a page boundary, longer).
    let prompts: [[Int]] = [[5], Array(0..<31).map { ($0 * 7 + 1) % 640 }, Array(0..<33).map { ($0 * 13 + 2) % 640 },
                            Array(0..<70).map { ($0 * 29 + 3) % 640 }, [9, 8, 7, 6]]

    func greedy(_ logits: [Float]) -> Int { logits.indices.max { logits[$0] < logits[$1] }! }

    /// Each prompt alone: prefill, then `steps` greedy tokens; the logits of every step.
    func alone(_ m: MiniCPMOModel, _ prompt: [Int], steps: Int) throws -> [[Float]] {
        let s = LanguageSession(model: m.llm)
        var logits = try s.prefill(prompt, chunk: 512).logits, out: [[Float]] = []
        for _ in 0..<steps {
            logits = try s.step(greedy(logits))
            out.append(logits)
        }
        return out
    }

    /// All prompts prefilled one by one, then decoded together; a sequence joins late and one leaves early.
    func batched(_ m: MiniCPMOModel, steps: Int) throws -> [[[Float]]] {
        let pool = m.llm.makeCachePool()
        let sessions = prompts.map { _ in LanguageSession(model: m.llm, pool: pool) }
        var last = try zip(sessions, prompts).map { try $0.prefill($1, chunk: 512).logits }
        var out = Array(repeating: [[Float]](), count: prompts.count)
        for step in 0..<(steps + 2) {
            // sequence 4 starts two steps late, sequence 0 stops two steps early
            let active = prompts.indices.filter { i in
                let done = out[i].count >= steps
                return !done && (i != 4 || step >= 2) && !(i == 0 && out[0].count >= steps - 2)
            }
            guard !active.isEmpty else { break }
            let next = try LanguageSession.step(active.map { greedy(last[$0]) }, sessions: active.map { sessions[$0] })
            for (i, l) in zip(active, next) { last[i] = l; out[i].append(l) }
        }
        return out
    }

    @Test(arguments: [WeightFormat.q8_0, .q4_0])
    func quantizedBatchEqualsAloneBitForBit(format: WeightFormat) throws {
        let m = try MiniCPMOModel(directory: dir, quantize: format)
        let together = try batched(m, steps: 8)
        for (i, p) in prompts.enumerated() {
            let solo = try alone(m, p, steps: together[i].count)
            #expect(together[i].count >= 6)
            #expect(together[i] == solo, "\(format) sequence \(i)")
        }
    }

    @Test func floatBatchTracksAlone() throws {
        let m = try MiniCPMOModel(directory: dir)
        // bf16 weights as stored: bit for bit where the batched step has the GEMV's arithmetic (AVX-512)
        let exact = m.llm.layers.allSatisfy { $0.linearWeights.allSatisfy(Linear.hasGemvArithmeticGEMM) }
        let together = try batched(m, steps: 6)
        for (i, p) in prompts.enumerated() {
            let solo = try alone(m, p, steps: together[i].count)
            #expect(pcc(together[i].flatMap { $0 }, solo.flatMap { $0 }) >= 0.99999, "sequence \(i)")
            if exact { #expect(together[i] == solo, "sequence \(i)") }
        }
    }

    /// A step that cannot get a page for every sequence leaves all of them as they were.
    @Test func aFullPoolLeavesEverySequenceUnchanged() throws {
        let m = try MiniCPMOModel(directory: dir, quantize: .q8_0)
        let pool = m.llm.makeCachePool(pageSize: 32, maxPages: 3)
        let a = LanguageSession(model: m.llm, pool: pool), b = LanguageSession(model: m.llm, pool: pool)
        _ = try a.prefill(Array(0..<64).map { $0 % 640 }, chunk: 512)  // two pages, full
        _ = try b.prefill(Array(0..<32).map { $0 % 640 }, chunk: 512)  // the third page, full
        #expect(throws: (any Error).self) { _ = try LanguageSession.step([1, 2], sessions: [a, b]) }
        #expect(a.cache.length == 64 && b.cache.length == 32)
    }
}
