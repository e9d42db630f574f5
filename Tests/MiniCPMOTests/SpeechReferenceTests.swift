import Foundation
import Testing
import TestSupport
@testable import MiniCPMO

/// Speech output against the PyTorch references (transformers' LlamaModel under MiniCPM-o's masks,
/// ChatTTS's DVAE with vector-quantize-pytorch 1.18.5, the vocos package) on the tiny MiniCPM-o
/// checkpoint, float32.
@Suite struct SpeechReferenceTests {
    static let reference = fixturesDirectory.appendingPathComponent("reference/speech-tiny-minicpmo.safetensors").path

    static func model() throws -> MiniCPMOModel { try MiniCPMOModel(directory: fixtureModel("tiny-minicpmo")) }

    @Test(arguments: [("tts", ["spk_hidden", "text_ids"], ["spk_emb_projected", "hidden", "code_logits"]),
                      ("dvae", ["codes"], ["mel"]), ("vocos", ["mel"], ["wave"])])
    func probeMatchesReference(_ component: String, _ inputs: [String], _ outputs: [String]) throws {
        let ref = try SafetensorsFile(path: Self.reference)
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("speech-in-\(component)-\(getpid()).safetensors").path
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("speech-out-\(component)-\(getpid()).safetensors").path
        defer { for f in [input, output] { try? FileManager.default.removeItem(atPath: f) } }
        let entries = try inputs.map { name -> SafetensorsWriter.Entry in
            let t = try #require(ref.tensors["\(component).\(name)"])
            return t.dtype == .f32 ? .f32(name, shape: t.shape, t.floats()) : .i64(name, shape: t.shape, t.integers())
        }
        try SafetensorsWriter.write(entries, to: input)
        try Probe.run(component: component, model: try Self.model(), input: input, output: output)
        let got = try SafetensorsFile(path: output)
        for name in outputs {
            let a = try #require(got.tensors[name]), b = try #require(ref.tensors["\(component).\(name)"])
            #expect(a.shape == b.shape, "\(component) \(name)")
            let (x, y) = (a.floats(), b.floats())
            #expect(pcc(x, y) >= 0.9999, "\(component) \(name): pcc \(pcc(x, y)) max-abs \(maxAbs(x, y))")
        }
    }

    /// The reference's greedy codes rendered by DVAE + Vocos: mel and waveform against the reference.
    @Test func waveformOfTheReferenceCodesMatches() throws {
        struct Case: Decodable { var codes: [[Int]] }
        let c = try JSONDecoder().decode(Case.self, from: Data(contentsOf: fixturesDirectory.appendingPathComponent("reference/speech-e2e-tiny-minicpmo.json")))
        let ref = try SafetensorsFile(path: fixturesDirectory.appendingPathComponent("reference/speech-e2e-tiny-minicpmo.safetensors").path)
        let out = try Self.model().speech().render(c.codes)
        let mel = try #require(ref.tensors["mel"]).floats(), wave = try #require(ref.tensors["wave"]).floats()
        #expect(out.mel.count == mel.count && out.wave.count == wave.count)
        #expect(pcc(out.mel, mel) >= 0.9999, "mel pcc \(pcc(out.mel, mel))")
        #expect(pcc(out.wave, wave) >= 0.999, "wave pcc \(pcc(out.wave, wave)) max-abs \(maxAbs(out.wave, wave))")
    }

    /// Speaking a whole text at once and streaming it word by word choose the same greedy codes.
    @Test func streamingAndNonStreamingAgree() throws {
        let speech = try Self.model().speech()
        let ref = try SafetensorsFile(path: fixturesDirectory.appendingPathComponent("reference/speech-e2e-tiny-minicpmo.safetensors").path)
        let hidden = try #require(ref.tensors["spk_hidden"]).floats()
        let text = "Hello everyone, this is a longer answer that is spoken while it is still being written down."
        var sampler = CodeSampler(greedy: true)
        let whole = speech.codes(text: text, speakerHidden: hidden, sampler: &sampler)
        var chunks = 0
        let streamer = SpeechStreamer(speech: speech, speakerHidden: hidden, sampler: CodeSampler(greedy: true)) { _ in chunks += 1 }
        var sofar = ""
        for word in text.split(separator: " ") {
            sofar += (sofar.isEmpty ? "" : " ") + word
            streamer.update(text: sofar)
        }
        streamer.finish()
        #expect(!whole.isEmpty)
        #expect(streamer.codes == whole)
        #expect(chunks >= 1)
    }

    /// A long streamed answer is cut into segments at sentence ends and still plays as one stream.
    @Test func longAnswersContinueInNewSegments() throws {
        let speech = try Self.model().speech()
        let ref = try SafetensorsFile(path: fixturesDirectory.appendingPathComponent("reference/speech-e2e-tiny-minicpmo.safetensors").path)
        let hidden = try #require(ref.tensors["spk_hidden"]).floats()
        let sentence = "This sentence is one of many that make a long spoken answer about the weather today. "
        var samples = 0, lastSeen = false
        let streamer = SpeechStreamer(speech: speech, speakerHidden: hidden, sampler: CodeSampler(greedy: true), maxFrames: 4000) {
            samples += $0.samples.count
            lastSeen = lastSeen || $0.isLast
        }
        var text = ""
        for _ in 0..<12 {
            for word in sentence.split(separator: " ") { text += word + " "; streamer.update(text: text) }
        }
        streamer.finish()
        #expect(streamer.segments >= 2, "segments \(streamer.segments) for \(speech.tokenizer.encode(text).count) tokens")
        #expect(lastSeen)
        // every frame is heard once: 2 mel frames × hop samples each
        #expect(samples == streamer.codes.count * 2 * speech.vocos.hop, "\(samples) samples for \(streamer.codes.count) frames")
        #expect(SpeechStreamer.sentenceEnd("pi is 3.14 today.") == ".")
        #expect(SpeechStreamer.sentenceEnd("3.14") == nil)
        #expect(SpeechStreamer.sentenceEnd("你好。再见") == "。")
    }

    /// The linear overlap-add against the spec's formula, written out directly.
    @Test func crossFadeFollowsTheFormula() {
        var rng = SystemRandomNumberGenerator()
        for (la, lb) in [(6000, 7000), (4096, 2048), (2048, 9000)] {
            let a = (0..<la).map { _ in Float.random(in: -1...1, using: &rng) }
            let b = (0..<lb).map { _ in Float.random(in: -1...1, using: &rng) }
            let o = 2048, w = max(la, lb) + o
            let t = (0..<w).map { Double($0 + 1) / Double(w + 1) }
            let wt = t.map { 0.5 - abs($0 - 0.5) }
            var out = [Double](repeating: 0, count: la + lb - o), sum = out
            for i in 0..<la { out[i] += Double(a[i]) * wt[w - la + i]; sum[i] += wt[w - la + i] }
            for i in 0..<lb { out[la - o + i] += Double(b[i]) * wt[i]; sum[la - o + i] += wt[i] }
            let expected = zip(out, sum).map { Float($0 / $1) }
            let (emit, keep) = CrossFade.join(a, b)
            #expect(emit.count == la && keep.count == lb - o)
            #expect(maxAbs(emit + keep, expected) < 1e-5)
        }
    }
}
