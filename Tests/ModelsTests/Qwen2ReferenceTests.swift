import Foundation
import Testing
@testable import MiniCPMO

/// The Qwen2 forward pass against transformers' float32 outputs on the bf16 fixtures.
@Suite struct Qwen2ReferenceTests {
    static let models = ["tiny-qwen2", "tiny-minicpmo", "tiny-qwen2-gqa", "tiny-qwen2-quant"]

    @Test(arguments: models)
    func logitsAndHiddenMatchTransformers(name: String) throws {
        let model = try MiniCPMOModel(directory: modelDir(name))
        let ref = try reference("llm-\(name)")
        let llm = model.llm
        let (h, v) = (llm.config.hiddenSize, llm.config.vocabSize)
        for tag in ["long", "short"] {
            let ids = try ref.tensor("\(tag).input_ids")
            let (n, t) = (ids.shape[0], ids.shape[1])
            let all = ids.integers().map { Int($0) }
            var hidden: [Float] = [], logits: [Float] = [], argmax: [Int64] = []
            let pool = llm.makeCachePool(pageSize: 16)
            for row in 0..<n {
                let x = try llm.forward(try llm.embed(Array(all[(row * t)..<((row + 1) * t)])), tokens: t, cache: KVSequence(pool: pool))
                hidden += x.array
                let l = llm.logits(x, rows: 0..<t).array
                for r in 0..<t {
                    let rowLogits = l[(r * v)..<((r + 1) * v)]
                    argmax.append(Int64(rowLogits.indices.max { rowLogits[$0] < rowLogits[$1] }! - r * v))
                }
                logits += l
            }
            let refHidden = try ref.tensor("\(tag).last_hidden_state").floats()
            let hp = pcc(hidden, refHidden)
            #expect(hp >= 0.9999, "\(name) \(tag) hidden PCC \(hp)")
            #expect(maxAbs(hidden, refHidden) < 1e-4, "\(name) \(tag) hidden max-abs \(maxAbs(hidden, refHidden))")
            // Compare the logits the fixture kept (all, or a fixed subset of vocabulary columns).
            let ours: [Float], theirs: [Float]
            if let full = ref.tensors["\(tag).logits"] {
                ours = logits
                theirs = full.floats()
            } else {
                let cols = try ref.tensor("\(tag).logits_cols").integers().map { Int($0) }
                ours = (0..<(n * t)).flatMap { row in cols.map { logits[row * v + $0] } }
                theirs = try ref.tensor("\(tag).logits_sub").floats()
            }
            let lp = pcc(ours, theirs)
            #expect(lp >= 0.9999, "\(name) \(tag) logits PCC \(lp)")
            #expect(maxAbs(ours, theirs) < 1e-4, "\(name) \(tag) logits max-abs \(maxAbs(ours, theirs))")
            #expect(argmax == (try ref.tensor("\(tag).argmax").integers()), "\(name) \(tag) greedy tokens")
        }
    }

    /// Prefill then token-by-token decode through the paged cache equals one full forward.
    @Test(arguments: models)
    func prefillThenDecodeEqualsFullForward(name: String) throws {
        let llm = try MiniCPMOModel(directory: modelDir(name)).llm
        let ids = try reference("llm-\(name)").tensor("long.input_ids").integers().prefix(70).map { Int($0) }
        let v = llm.config.vocabSize
        let pool = llm.makeCachePool(pageSize: 8)
        let full = llm.logits(try llm.forward(try llm.embed(ids), tokens: ids.count, cache: KVSequence(pool: pool)),
                              rows: 0..<ids.count).array
        let cache = KVSequence(pool: pool)
        let prefill = 40
        var stepwise = llm.logits(try llm.forward(try llm.embed(Array(ids[..<prefill])), tokens: prefill, cache: cache),
                                  rows: 0..<prefill).array
        for i in prefill..<ids.count {
            let x = try llm.forward(try llm.embed([ids[i]]), tokens: 1, cache: cache)
            stepwise += llm.logits(x, rows: 0..<1).array
        }
        #expect(cache.length == ids.count)
        let p = pcc(Array(full[(prefill * v)...]), Array(stepwise[(prefill * v)...]))
        #expect(p >= 0.99999, "\(name) decode PCC \(p)")
        #expect(maxAbs(full, stepwise) < 1e-4)
    }

    @Test func truncatedCacheReplaysIdentically() throws {
        let llm = try MiniCPMOModel(directory: modelDir("tiny-qwen2-gqa")).llm
        let ids = Array(0..<50).map { ($0 * 37) % llm.config.vocabSize }
        let pool = llm.makeCachePool(pageSize: 4)
        let cache = KVSequence(pool: pool)
        let first = llm.logits(try llm.forward(try llm.embed(ids), tokens: 50, cache: cache), rows: 0..<50).array
        cache.truncate(to: 21)
        #expect(cache.length == 21 && cache.blockTable.count == 6)
        let again = llm.logits(try llm.forward(try llm.embed(Array(ids[21...])), tokens: 29, cache: cache), rows: 0..<29).array
        #expect(maxAbs(Array(first[(21 * llm.config.vocabSize)...]), again) < 1e-5)
    }

    @Test func tokenOutOfRangeIsAnError() throws {
        let llm = try MiniCPMOModel(directory: modelDir("tiny-qwen2-gqa")).llm
        #expect(throws: ModelError.self) { try llm.embed([512]) }
        #expect(throws: ModelError.self) { try llm.embed([-1]) }
    }
}
