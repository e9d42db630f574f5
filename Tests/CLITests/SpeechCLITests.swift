import Foundation
import Testing
import Weights

struct SpeechCase: Decodable {
    var prompt: String
    var prompt_ids: [Int]
    var generated_ids: [Int]
    var spoken_text: String
    var tts_text_ids: [Int]
    var codes: [[Int]]
}

struct SpeechOutputJSON: Decodable {
    var token_ids: [Int]
    var prompt_tokens: Int
    var speech: Speech
    struct Speech: Decodable { var file: String; var seconds: Double; var frames: Int; var codes: [[Int]] }
}

/// Spoken answers end to end: LLM with the speech template, the speaker vector at <|spk|>, ChatTTS
/// codes (greedy), DVAE, Vocos, WAV — against the PyTorch reference pipeline; `sox` reads the file.
@Suite struct SpeechCLITests {
    static let model = fixtures.appendingPathComponent("models/tiny-minicpmo").path

    static func reference() throws -> SpeechCase {
        try JSONDecoder().decode(SpeechCase.self, from: Data(contentsOf: fixtures.appendingPathComponent("reference/speech-e2e-tiny-minicpmo.json")))
    }

    func generate(_ extra: [String], user: String) throws -> (RunResult, SpeechOutputJSON?) {
        let r = try run(["generate", "--model", Self.model, "--prompt", user, "--max-tokens", "16", "--temperature", "0",
                         "--repetition-penalty", "1", "--speech-greedy", "--json"] + extra)
        return (r, try? JSONDecoder().decode(SpeechOutputJSON.self, from: Data(r.stdout.utf8)))
    }

    @Test func greedySpeechMatchesTheReferenceAndSoxReadsIt() throws {
        let c = try Self.reference()
        let wav = temp("speech.wav")
        defer { try? FileManager.default.removeItem(atPath: wav) }
        try? FileManager.default.removeItem(atPath: wav)
        let (r, out) = try generate(["--speech-out", wav], user: "Say hello to everyone.")
        #expect(r.status == 0, "\(r.stderr)")
        let o = try #require(out, "\(r.stdout)")
        #expect(o.prompt_tokens == c.prompt_ids.count)
        var expected = c.generated_ids
        if let last = expected.last, [151643, 151645].contains(last) { expected.removeLast() }
        #expect(o.token_ids == expected)
        #expect(o.speech.codes == c.codes, "frames \(o.speech.frames) vs \(c.codes.count)")
        // a valid 24 kHz mono WAV, as sox reads it
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["sox", "--info", wav]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let info = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "sox --info failed (is sox installed?): \(info)")
        #expect(info.contains("Sample Rate    : 24000") && info.contains("Channels       : 1"), "\(info)")
        // the file is not replaced without --overwrite
        let again = try run(["generate", "--model", Self.model, "--prompt", "hi", "--max-tokens", "2", "--speech-out", wav])
        #expect(again.status != 0 && again.stderr.contains("exists"))
    }

    /// The voice-cloning and role-play prompts put the reference recording before the question.
    @Test func voicePromptsCarryTheRecording() throws {
        let wav = temp("voice.wav")
        defer { try? FileManager.default.removeItem(atPath: wav) }
        let voice = fixtures.appendingPathComponent("audio/speech-16k-s16.wav").path
        let (plain, p) = try generate(["--speech-out", wav, "--overwrite", "--max-speech-frames", "20"], user: "Hi")
        let (cloned, c) = try generate(["--speech-out", wav, "--overwrite", "--max-speech-frames", "20", "--voice", voice], user: "Hi")
        let (played, r) = try generate(["--speech-out", wav, "--overwrite", "--max-speech-frames", "20", "--voice", voice,
                                        "--voice-mode", "roleplay"], user: "Hi")
        #expect(plain.status == 0 && cloned.status == 0 && played.status == 0, "\(cloned.stderr)\(played.stderr)")
        let base = try #require(p).prompt_tokens
        // 4.12 s of speech = 103 audio tokens in 5 chunks, plus the prompt's sentences
        #expect(try #require(c).prompt_tokens > base + 103)
        #expect(try #require(r).prompt_tokens > base + 103 && r?.prompt_tokens != c?.prompt_tokens)
        let bad = try run(["generate", "--model", Self.model, "--prompt", "Hi", "--speech-out", wav, "--voice-mode", "roleplay"])
        #expect(bad.status != 0 && bad.stderr.contains("--voice"))
    }

    @Test func streamedSpeechHasTheSameCodes() throws {
        let c = try Self.reference()
        let dir = temp("speech-stream")
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (r, out) = try generate(["--stream-speech", dir], user: "Say hello to everyone.")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try #require(out).speech.codes == c.codes)
        let chunks = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("chunk-") }
        #expect(!chunks.isEmpty)
        #expect(r.stderr.contains("ready after"))
    }
}

/// Every probe component refuses a missing or misshapen input with exit code 2 and one line.
@Suite struct ProbeBadInputCLITests {
    @Test(arguments: [
        ("mel", [SafetensorsWriter.Entry.f32("wave", shape: [4], [0, 0, 0, 0])]),
        ("mel", [.f32("waveform", shape: [2, 2], [0, 0, 0, 0])]),
        ("audio", [.f32("input_features", shape: [1, 7, 4], [Float](repeating: 0, count: 28))]),
        ("tts", [.f32("spk_hidden", shape: [1, 8], [Float](repeating: 0, count: 8)), .i64("text_ids", shape: [1, 11], [Int64](repeating: 5, count: 11))]),
        ("tts", [.f32("spk_hidden", shape: [1, 3], [0, 0, 0]), .i64("text_ids", shape: [1, 2], [5, 6])]),
        ("dvae", [.i64("codes", shape: [1, 4, 2], [0, 1, 2, 3, 4, 5, 6, 625])]),
        ("vocos", [.f32("mel", shape: [1, 99, 2], [Float](repeating: 0, count: 198))]),
    ])
    func refused(_ component: String, _ entries: [SafetensorsWriter.Entry]) throws {
        let input = temp("bad-\(component).safetensors"), output = temp("bad-\(component)-out.safetensors")
        defer { for f in [input, output] { try? FileManager.default.removeItem(atPath: f) } }
        try SafetensorsWriter.write(entries, to: input)
        let r = try run(["probe", component, "--model", fixtures.appendingPathComponent("models/tiny-minicpmo").path,
                         "--input", input, "--output", output])
        #expect(r.status == 2, "\(component): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.count == 1)
    }
}
