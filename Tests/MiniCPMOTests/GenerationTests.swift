import Foundation
import Testing
@testable import MiniCPMO

@Suite struct GenerationTests {
    /// Prefill in chunks of 1, 7 and 64 tokens equals one unchunked pass.
    @Test func chunkedPrefillEqualsUnchunked() throws {
        let llm = Loaded.minicpmo.llm
        let ids = (0..<90).map { ($0 * 7919) % llm.config.vocabSize }
        let pool = llm.makeCachePool(pageSize: 16)
        let whole = LanguageSession(model: llm, pool: pool)
        let ref = try whole.prefill(ids, chunk: 10_000).logits
        for chunk in [1, 7, 64] {
            let s = LanguageSession(model: llm, pool: pool)
            let got = try s.prefill(ids, chunk: chunk).logits
            let p = pcc(got, ref)
            #expect(p >= 0.99999, "chunk \(chunk): PCC \(p)")
            #expect(s.cache.length == ids.count)
            // and the caches continue identically
            #expect(pcc(try s.step(5), try LanguageSession(model: llm, pool: pool).prefill(ids + [5], chunk: 4096).logits) >= 0.99999)
        }
    }

    /// A second turn that reuses the first turn's cache yields the same tokens as a fresh prefill.
    @Test func secondTurnWithPrefixReuseMatchesFreshPrefill() throws {
        let model = Loaded.minicpmo
        let gen = try model.textGenerator()
        let options = GenerationOptions(sampling: .greedy, maxTokens: 12)
        var messages: [ChatMessage] = [.user("Hello there")]
        let session = LanguageSession(model: model.llm)
        let first = try gen.generate(prompt: gen.tokenizer.encode(ChatTemplate.render(messages)), session: session, options: options)
        messages.append(.assistant(first.text))
        messages.append(.user("And a second question?"))
        let prompt = gen.tokenizer.encode(ChatTemplate.render(messages))
        let reused = try gen.generate(prompt: prompt, session: session, options: options)
        #expect(reused.timings.cachedTokens > 10, "cached \(reused.timings.cachedTokens)")
        let fresh = try gen.generate(prompt: prompt, session: LanguageSession(model: model.llm), options: options)
        #expect(fresh.timings.cachedTokens == 0)
        #expect(reused.tokenIds == fresh.tokenIds)
        #expect(reused.text == fresh.text)
    }

    /// Conversations forked from one cached prompt share its pages (copy-on-write): each continues exactly
    /// as a fresh prefill of its whole prompt does, the source is left as it was, and the shared pages are
    /// held once.
    @Test func forkedSessionsShareThePromptPagesAndMatchFreshOnes() throws {
        let llm = Loaded.minicpmo.llm
        let pool = llm.makeCachePool(pageSize: 16)
        let system = (0..<53).map { ($0 * 7919 + 3) % llm.config.vocabSize }  // three whole pages and a part
        let source = LanguageSession(model: llm, pool: pool)
        _ = try source.prefill(system, chunk: 512)
        let before = pool.pagesInUse
        let questions = [[11, 12, 13, 14, 15], Array(repeating: 7, count: 40), [99]]
        var forks: [LanguageSession] = []
        for q in questions {
            let fork = LanguageSession(sharing: source, length: system.count)
            let got = try fork.prefill(system + q, chunk: 512)
            #expect(got.reused == system.count)
            let fresh = try LanguageSession(model: llm, pool: pool).prefill(system + q, chunk: 512).logits
            #expect(pcc(got.logits, fresh) >= 0.99999, "question of \(q.count) tokens")
            forks.append(fork)
        }
        // each fork wrote its question into a copy of the partial page: had they shared it, the later
        // forks' questions would stand in the earlier ones' positions
        for (fork, q) in zip(forks, questions) {
            let fresh = try LanguageSession(model: llm, pool: pool).prefill(system + q + [5], chunk: 512).logits
            #expect(pcc(try fork.step(5), fresh) >= 0.99999, "question of \(q.count) tokens, one step on")
        }
        // the three whole pages are shared; each fork copied the partial one and added its own
        #expect(forks.allSatisfy { Array($0.cache.blockTable.prefix(3)) == Array(source.cache.blockTable.prefix(3)) })
        #expect(forks.allSatisfy { $0.cache.blockTable[3] != source.cache.blockTable[3] })
        #expect(pool.holders(of: source.cache.blockTable[0]) == 4 && pool.holders(of: source.cache.blockTable[3]) == 1)
        let pagesOfForks = forks.map { $0.cache.blockTable.count - 3 }.reduce(0, +)
        #expect(pool.pagesInUse == before + pagesOfForks)
        // the source still answers as before, and the shared pages outlive it
        let again = try source.prefill(system + [42], chunk: 512).logits
        #expect(pcc(again, try LanguageSession(model: llm, pool: pool).prefill(system + [42], chunk: 512).logits) >= 0.99999)
        source.reset()
        #expect(pool.holders(of: forks[0].cache.blockTable[0]) == 3)
        let fresh = try LanguageSession(model: llm, pool: pool).prefill(system + questions[0] + [5, 6], chunk: 512).logits
        #expect(pcc(try forks[0].step(6), fresh) >= 0.99999)
    }

    @Test func stopStringsCutAndHoldBack() {
        var m = StopStringMatcher(["STOP", "\n\n"])
        var out = ""
        var stopped = false
        for piece in ["Hel", "lo S", "T", "O", "P after"] {
            let (ready, s) = m.push(piece)
            out += ready
            if s { stopped = true; break }
        }
        #expect(stopped && out == "Hello ")
        var n = StopStringMatcher(["abc"])
        #expect(n.push("xa").0 == "x")
        #expect(n.push("bd").0 == "abd")
        #expect(n.push("ab").0 == "")
        #expect(n.finish() == "ab")
    }

    @Test func maxTokensAndStopStringThroughGenerator() throws {
        let gen = try Loaded.minicpmo.textGenerator()
        let prompt = gen.tokenizer.encode(ChatTemplate.render([.user("Count")]))
        let r = try gen.generate(prompt: prompt, session: LanguageSession(model: gen.model),
                                 options: GenerationOptions(sampling: .greedy, maxTokens: 5))
        #expect(r.tokenIds.count == 5 && r.finishReason == .length)
        // stop at the text of the third generated token
        let third = gen.tokenizer.decode(Array(r.tokenIds.prefix(3)))
        let stopAt = String(gen.tokenizer.decode([r.tokenIds[2]]))
        if !stopAt.isEmpty, !gen.tokenizer.decode(Array(r.tokenIds.prefix(2))).contains(stopAt) {
            let s = try gen.generate(prompt: prompt, session: LanguageSession(model: gen.model),
                                     options: GenerationOptions(sampling: .greedy, maxTokens: 5, stopStrings: [stopAt]))
            #expect(s.finishReason == .stop)
            #expect(s.text == String(third.dropLast(stopAt.count)))
        }
    }

    @Test func errorsForEmptyAndOverlongPrompts() throws {
        let gen = try Loaded.minicpmo.textGenerator()
        let s = LanguageSession(model: gen.model)
        #expect(throws: GenerationError.self) { try gen.generate(prompt: [], session: s, options: GenerationOptions()) }
        let long = [Int](repeating: 100, count: gen.model.config.maxPositionEmbeddings)
        #expect { try gen.generate(prompt: long, session: s, options: GenerationOptions()) } throws: {
            "\($0)".contains("context")
        }
        var bad = GenerationOptions()
        bad.sampling.topP = 0
        #expect(throws: GenerationError.self) { try gen.generate(prompt: [1], session: s, options: bad) }
    }

    @Test func streamYieldsTextThenResult() async throws {
        let gen = try Loaded.minicpmo.textGenerator()
        let prompt = gen.tokenizer.encode(ChatTemplate.render([.user("Hi")]))
        var text = ""
        var result: GenerationResult?
        for try await event in gen.stream(prompt: prompt, session: LanguageSession(model: gen.model),
                                          options: GenerationOptions(sampling: .greedy, maxTokens: 8)) {
            switch event {
            case let .text(t): text += t
            case let .finished(r): result = r
            }
        }
        #expect(result?.text == text && result?.tokenIds.count == 8)
    }
}
