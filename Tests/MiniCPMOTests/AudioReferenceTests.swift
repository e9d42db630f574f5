import Foundation
import Testing
import TestSupport
@testable import MiniCPMO

/// Whisper encoder (chunk mask), projector and pooling against the PyTorch reference (transformers'
/// WhisperEncoderLayer under MiniCPM-o's mask) on the tiny MiniCPM-o checkpoint, float32; and the
/// audio placeholder arithmetic against MiniCPM-o's processor.
@Suite struct AudioReferenceTests {
    static let reference = fixturesDirectory.appendingPathComponent("reference/audio-tiny-minicpmo.safetensors").path

    static func model() throws -> MiniCPMOModel { try MiniCPMOModel(directory: fixtureModel("tiny-minicpmo")) }

    @Test(arguments: ["single", "batch"])
    func probeMatchesReference(_ tag: String) throws {
        let ref = try SafetensorsFile(path: Self.reference)
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("audio-probe-in-\(tag)-\(getpid()).safetensors").path
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("audio-probe-out-\(tag)-\(getpid()).safetensors").path
        defer { for f in [input, output] { try? FileManager.default.removeItem(atPath: f) } }
        let features = try #require(ref.tensors["\(tag).input_features"])
        try SafetensorsWriter.write([.f32("input_features", shape: features.shape, features.floats())], to: input)
        try Probe.run(component: "audio", model: try Self.model(), input: input, output: output)
        let got = try SafetensorsFile(path: output)
        for name in ["last_hidden_state", "projected", "pooled"] {
            let a = try #require(got.tensors[name]), b = try #require(ref.tensors["\(tag).\(name)"])
            #expect(a.shape == b.shape, "\(tag) \(name)")
            let (x, y) = (a.floats(), b.floats())
            #expect(pcc(x, y) >= 0.9999 && maxAbs(x, y) < 1e-3, "\(tag) \(name): pcc \(pcc(x, y)) max-abs \(maxAbs(x, y))")
        }
    }

    struct PlaceholderCase: Decodable { var samples: Int; var tokens: Int; var placeholder: String; var piece_tokens: [Int] }

    @Test func placeholdersMatchTheProcessor() throws {
        let cases = try JSONDecoder().decode([PlaceholderCase].self, from: Data(contentsOf:
            fixturesDirectory.appendingPathComponent("reference/audio-placeholders.json")))
        #expect(cases.count >= 10)
        for c in cases {
            #expect(AudioPlaceholder.tokens(samples: c.samples) == c.tokens, "\(c.samples) samples")
            #expect(AudioPlaceholder.text(samples: c.samples) == c.placeholder, "\(c.samples) samples")
            // the per-piece counts of a split clip add up to the whole clip's
            let pieces = stride(from: 0, to: c.samples, by: 480_000).map { min(480_000, c.samples - $0) }
            #expect(pieces.map { AudioPlaceholder.tokens(samples: $0) } == c.piece_tokens, "\(c.samples) samples")
        }
    }

    @Test func shortClipPoursItsEmbeddingsIntoTheBounds() throws {
        let m = try Self.model()
        let tokenizer = try m.tokenizer()
        var rng = SystemRandomNumberGenerator()
        let wave = (0..<24_000).map { _ in Float.random(in: -0.3...0.3, using: &rng) }
        let clip = try m.encodeAudio(samples16k: wave)
        #expect(clip.tokens == AudioPlaceholder.tokens(samples: 24_000))
        let prompt = try m.prompt([.user([.text("hi"), .audio(clip)])], tokenizer: tokenizer)
        let covered = prompt.spans.reduce(0) { $0 + $1.count }
        #expect(covered == clip.tokens)
        // the speech template follows the user turn whenever audio is present
        let tail = tokenizer.decode(Array(prompt.tokens.suffix(4)))
        #expect(tail == "<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>")
    }
}
