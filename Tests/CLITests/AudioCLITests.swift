import Foundation
import Testing
import Weights

struct AudioCase: Decodable {
    var audio: String
    var images: [String]
    var prompt: String
    var prompt_ids: [Int]
    var generated_ids: [Int]
}

/// Audio through the whole pipeline: WAV decode, log-mel, Whisper encoder, projector, pooling,
/// placeholders, the speech template and greedy generation, against the PyTorch reference pipeline.
@Suite struct AudioCLITests {
    static let model = fixtures.appendingPathComponent("models/tiny-minicpmo").path
    static func audio(_ name: String) -> String { fixtures.appendingPathComponent("audio/\(name)").path }

    @Test func greedyAnswersWithSpeechMatchTheReference() throws {
        let all = try JSONDecoder().decode([AudioCase].self, from: Data(contentsOf:
            fixtures.appendingPathComponent("reference/generate-audio-tiny-minicpmo.json")))
        #expect(all.contains { $0.images.isEmpty } && all.contains { !$0.images.isEmpty })
        for c in all {
            var args = ["generate", "--model", Self.model, "--max-tokens", "\(c.generated_ids.count)", "--temperature", "0",
                        "--repetition-penalty", "1", "--json", "--audio", Self.audio(c.audio)]
            if c.images.isEmpty {
                #expect(c.prompt.contains("Please listen to the audio snippet carefully and transcribe the content."))
                args += ["--task", "transcribe"]
            } else {
                args += ["--prompt", "What do you see and hear?"]
                for image in c.images { args += ["--image", fixtures.appendingPathComponent("images/\(image)").path] }
            }
            let r = try run(args)
            #expect(r.status == 0, "\(r.stderr)")
            let out = try JSONDecoder().decode(GenerateOutput.self, from: Data(r.stdout.utf8))
            #expect(out.prompt_tokens == c.prompt_ids.count, "\(c.images) \(c.audio)")
            var expected = c.generated_ids
            if let last = expected.last, [151643, 151645].contains(last) { expected.removeLast() }
            #expect(out.token_ids == expected, "\(c.images) \(c.audio)")
        }
    }

    @Test func badRecordingsFailWithOneClearLine() throws {
        for name in ["bad-empty.wav", "bad-garbage.wav", "bad-truncated-header.wav", "bad-rate-10mhz.wav", "bad-data-size-0.wav"] {
            let r = try run(["generate", "--model", Self.model, "--prompt", "hi", "--audio", Self.audio(name), "--max-tokens", "2"])
            #expect(r.status == 1, "\(name)")
            #expect(r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.count == 1, "\(name): \(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
        let r = try run(["generate", "--model", Self.model, "--task", "transcribe"])
        #expect(r.status != 0 && r.stderr.contains("--audio"))
    }

    /// probe mel: the real frames of each 30-second piece, against WhisperFeatureExtractor.
    @Test func probeMelMatchesTheFeatureExtractor() throws {
        let ref = try SafetensorsFile(path: fixtures.appendingPathComponent("reference/audio-mel.safetensors").path)
        let input = temp("probe-mel-in.safetensors"), output = temp("probe-mel-out.safetensors")
        defer { for f in [input, output] { try? FileManager.default.removeItem(atPath: f) } }
        // the 16 kHz speech clip, decoded from its 16-bit PCM samples
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.audio("speech-16k-s16.wav")))
        let wave = Self.pcm16Samples(data)
        try SafetensorsWriter.write([.f32("waveform", shape: [wave.count], wave)], to: input)
        let r = try run(["probe", "mel", "--model", Self.model, "--input", input, "--output", output])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try #require(try SafetensorsFile(path: output).tensors["input_features"])
        let expected = try #require(ref.tensors["speech-16k-s16.wav#piece0"])
        #expect(got.shape == [1] + expected.shape)
        let diff = zip(got.floats(), expected.floats()).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(diff <= 1e-4, "max-abs \(diff)")
    }

    /// Samples of a canonical 44-byte-header 16-bit mono WAV, scaled like soundfile.
    static func pcm16Samples(_ data: Data) -> [Float] {
        let bytes = [UInt8](data)
        var i = 12, out: [Float] = []
        while i + 8 <= bytes.count {
            let id = String(decoding: bytes[i..<(i + 4)], as: UTF8.self)
            let size = Int(bytes[i + 4]) | Int(bytes[i + 5]) << 8 | Int(bytes[i + 6]) << 16 | Int(bytes[i + 7]) << 24
            if id == "data" {
                var j = i + 8
                while j + 1 < min(bytes.count, i + 8 + size) {
                    out.append(Float(Int16(bitPattern: UInt16(bytes[j]) | UInt16(bytes[j + 1]) << 8)) / 32768)
                    j += 2
                }
                break
            }
            i += 8 + size + (size & 1)
        }
        return out
    }
}
