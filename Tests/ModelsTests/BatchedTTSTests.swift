import Foundation
import Testing
@testable import MiniCPMO
@testable import Models

/// TTS steps of several utterances taken together (several answers spoken at once) against each
/// utterance stepped alone, on the tiny MiniCPM-o checkpoint.
@Suite struct BatchedTTSTests {
    /// One context per text, its first 12 text slots prefilled.
    static func primed(_ texts: [String], _ speech: SpeechModel, _ hidden: [Float]) -> [ConditionalChatTTS.Context] {
        texts.map { t in
            let c = speech.tts.makeContext(text: speech.tokenizer.encode(t), specials: speech.specials, speaker: speech.tts.projectSpeaker(hidden))
            speech.tts.prefillText(c, begin: 0, end: 12)
            return c
        }
    }

    /// Three utterances of different texts, at different positions (each has taken 3·i steps alone first),
    /// then 20 steps, each utterance sampling its own codes: batched, every step's logits are those it gets
    /// alone, bit for bit where the CPU has a GEMM with the GEMV's arithmetic for the TTS's weights.
    @Test func batchedStepsEqualEachUtterancesStepsAlone() throws {
        let speech = try MiniCPMOModel(directory: modelDir("tiny-minicpmo")).speech()
        let tts = speech.tts
        let hidden = try #require(try reference("speech-e2e-tiny-minicpmo").tensors["spk_hidden"]).floats()
        let texts = ["Hello there.", "A somewhat longer sentence to speak, with more words in it than the others.", "Yes."]

        func run(batched: Bool) -> [[[Float]]] {
            let contexts = Self.primed(texts, speech, hidden)
            var samplers = texts.indices.map { CodeSampler(seed: UInt64($0 + 1)) }
            var logits = [[[Float]]](repeating: [], count: contexts.count)
            func take(_ i: Int, _ l: [Float]) {
                logits[i].append(l)
                let codes = samplers[i].sample(l, config: tts.config, bos: logits[i].count == 1, suppressEOS: true, history: contexts[i].frames)
                contexts[i].appendFrame(codes, eos: tts.config.eosCode)
            }
            for i in contexts.indices { for _ in 0..<(3 * i) { take(i, tts.step(contexts[i])) } }
            for _ in 0..<20 {
                if batched {
                    for (i, l) in tts.step(contexts).enumerated() { take(i, l) }
                } else {
                    for i in contexts.indices { take(i, tts.step(contexts[i])) }
                }
            }
            #expect(contexts.map(\.length) == (0..<3).map { 302 + 3 * $0 + 20 })
            return logits
        }
        let alone = run(batched: false), together = run(batched: true)
        if tts.stepsExactlyInBatches {
            #expect(together == alone)
        } else {
            // the first batched step, before sampled codes can part on rounding
            for i in texts.indices {
                let a = alone[i][3 * i], b = together[i][3 * i]
                #expect(maxAbs(a, b) <= 1e-4 * max(1, a.map(abs).max()!), "utterance \(i): max-abs \(maxAbs(a, b))")
            }
        }
        #expect(alone[0][0] != alone[1][0], "the utterances differ")
    }

    /// The lockstep `generate` of several utterances (as `bench --encoders --parallel` runs it) makes each
    /// one's frames, EOS included, those `generate` makes alone.
    @Test func lockstepGenerateEqualsEachAlone() throws {
        let speech = try MiniCPMOModel(directory: modelDir("tiny-minicpmo")).speech()
        let tts = speech.tts
        try #require(tts.stepsExactlyInBatches, "needs a GEMM with the GEMV's arithmetic")
        let hidden = try #require(try reference("speech-e2e-tiny-minicpmo").tensors["spk_hidden"]).floats()
        let texts = ["Hello there.", "A longer sentence, with more words in it.", "Yes.", "One more."]
        func contexts() -> [ConditionalChatTTS.Context] { Self.primed(texts, speech, hidden) }
        let alone = contexts().enumerated().map { i, c -> [[Int]] in
            var sampler = CodeSampler(seed: UInt64(i + 1))
            tts.generate(c, maxNew: 60, sampler: &sampler)
            return c.frames + (c.finished ? [[-1]] : [])
        }
        let together = contexts()
        var samplers = texts.indices.map { CodeSampler(seed: UInt64($0 + 1)) }
        tts.generate(together, maxNew: 60, samplers: &samplers)
        #expect(together.map { $0.frames + ($0.finished ? [[-1]] : []) } == alone)
        #expect(Set(alone.map(\.count)).count > 1, "the utterances end at different frames")
    }
}
