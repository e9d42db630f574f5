import Foundation
import Testing
@testable import MiniCPMO

@Suite struct TTFTBenchmarkTests {
    /// Every case the tiny omni checkpoint can run, each split into its parts: the first token comes
    /// after the encoder and the prefill, and the prompts hold what the request sent.
    @Test func splitsEachCaseIntoItsParts() throws {
        let model = Loaded.minicpmo
        let r = try Benchmark.ttft(model, repeats: 2, textTokens: 24, photo: (672, 448))
        #expect(r.cases.map(\.name) == ["photo", "audio", "text"])
        for c in r.cases {
            #expect(c.ttftSamples.count == 2)
            #expect(abs(c.timeToFirstTokenSeconds - Benchmark.median(c.ttftSamples)) < 1e-12)
            #expect(c.prefillSeconds > 0 && c.firstDecodeStepSeconds > 0, "\(c.name)")
        }
        let photo = r.cases[0], audio = r.cases[1], text = r.cases[2]
        #expect(photo.encodeSeconds > 0 && audio.encodeSeconds > 0)
        // 672x448 slices into a source image and two slices of 64 queries each
        #expect(photo.input.hasPrefix("672x448 photo (3 model images"), "\(photo.input)")
        #expect(photo.promptTokens > 3 * (try model.vision().config.queryNum))
        // 30 s pooled by 2 from 50 frames/s, in 1 s chunks: about 750 audio positions
        #expect(audio.promptTokens > 740)
        #expect(text.promptTokens == 24 && text.encodeSeconds < 0.01)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(r)) as? [String: Any]
        let first = (json?["cases"] as? [[String: Any]])?.first
        #expect(first?["time_to_first_token_seconds"] != nil && first?["first_decode_step_seconds"] != nil)
        #expect(json?["prefill_precision"] as? String == "f32")
    }

    /// A plain language model has only the text case.
    @Test func textOnlyForALanguageModel() throws {
        let model = try MiniCPMOModel(directory: modelDir("tiny-qwen2"))
        let r = try Benchmark.ttft(model, repeats: 1, textTokens: 8)
        #expect(r.cases.map(\.name) == ["text"])
        #expect(r.cases[0].promptTokens == 8)
    }
}
