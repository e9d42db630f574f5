import Foundation
import Media
import Testing
import TestSupport
@testable import MiniCPMO

/// Live mode against the reference's streaming_prefill / streaming_generate (tools/reference/live.py) on
/// the tiny MiniCPM-o checkpoint, float32: a voice call with a cloned voice, video frames on some units,
/// an answer, an interrupted answer and one more; and a 31-unit turn whose Whisper state is dropped at
/// the 30th unit.
@Suite struct LiveReferenceTests {
    struct Unit: Decodable { var samples: Int; var image: String?; var ids: [Int]; var audio_offset: Int }
    struct Turn: Decodable {
        var units: [Unit]; var max_new: Int; var interrupt_after: Int?
        var generated_ids: [Int]; var codes: [[Int]]?
    }
    struct Call: Decodable { var system: String; var ref_audio_samples: Int?; var system_ids: [Int]; var turns: [Turn]; var cache_ids: [Int] }

    struct Normalization: Decodable { var chunks: [String]; var texts: [String] }
    struct Fixture: Decodable { var call: Call; var long: Call; var normalization: [Normalization] }
    static let file = try! JSONDecoder().decode(
        Fixture.self, from: Data(contentsOf: fixturesDirectory.appendingPathComponent("reference/live-tiny-minicpmo.json")))
    static let fixture: [String: Call] = ["call": file.call, "long": file.long]
    static let tensors = try! SafetensorsFile(path: fixturesDirectory.appendingPathComponent("reference/live-tiny-minicpmo.safetensors").path)
    static let speech = try! WAVDecoder().load16k(contentsOf: fixturesDirectory.appendingPathComponent("audio/speech-16k-s16.wav"))

    static func units(_ wave: [Float]) -> [[Float]] {
        stride(from: 0, to: wave.count, by: 16000).map { Array(wave[$0..<min($0 + 16000, wave.count)]) }
    }

    /// The audio of each turn, as live.py cuts it.
    static func turnAudio(_ call: String) -> [[[Float]]] {
        let s = speech
        if call == "long" {
            let looped = Array(Array(repeating: s, count: 8).joined().prefix(31 * 16000))
            return [units(looped)]
        }
        return [units(s), Array(units(Array(s.reversed())).prefix(3)), units(Array(s[8000..<40000]))]
    }

    /// `merged`: each turn's last unit goes in with the answer's header, in one pass.
    func run(_ name: String, merged: Bool = false) throws {
        let ref = try #require(Self.fixture[name])
        let model = Loaded.minicpmo
        let session = try OmniSession(model: model, tokenizer: try model.tokenizer())
        let voice = ref.ref_audio_samples.map { Array(Self.speech.prefix($0)) }
        let system = try session.start(system: ref.system, voice: voice)
        #expect(system.tokens == ref.system_ids, "\(name): system prompt")
        if voice != nil {
            let rows = try #require(Self.tensors.tensors["\(name).system.audio_rows"]).floats()
            #expect(rows.count == system.audioRows.count && pcc(system.audioRows, rows) >= 0.9999, "\(name): voice embeddings")
        }
        let speech = try model.speech()
        for (t, (turn, audio)) in zip(ref.turns, Self.turnAudio(name)).enumerated() {
            #expect(turn.units.count == audio.count)
            var last: OmniSession.Unit?
            for (u, (unit, samples)) in zip(turn.units, audio).enumerated() {
                #expect(unit.samples == samples.count)
                let frame = try unit.image.map { try ImageDecoder.decode(contentsOf: fixturesDirectory.appendingPathComponent("images/\($0)")) }
                if merged && u == turn.units.count - 1 {
                    last = .init(audio: samples, frame: frame)
                    continue
                }
                let got = try session.listen(.init(audio: samples, frame: frame))
                #expect(got.tokens == unit.ids, "\(name) turn \(t) unit \(u): prompt")
                #expect(got.audioOffset == unit.audio_offset, "\(name) turn \(t) unit \(u): encoder position")
                let rows = try #require(Self.tensors.tensors["\(name).turn\(t).unit\(u).audio_rows"]).floats()
                let p = pcc(got.audioRows, rows)
                #expect(got.audioRows.count == rows.count && p >= 0.9999, "\(name) turn \(t) unit \(u): pcc \(p)")
            }
            var options = GenerationOptions(sampling: .greedy, maxTokens: turn.max_new)
            if let k = turn.interrupt_after {
                let seen = Counter()
                options.shouldStop = { seen.next() >= k }
            }
            let answer = try session.answer(after: last, options: options, speech: turn.codes == nil ? nil : speech,
                                            sampler: CodeSampler(greedy: true))
            #expect(answer.tokenIds == turn.generated_ids, "\(name) turn \(t): greedy tokens")
            #expect(answer.interrupted == (turn.interrupt_after != nil))
            if let codes = turn.codes { #expect(answer.codes == codes, "\(name) turn \(t): speech codes") }
            let hidden = try #require(Self.tensors.tensors["\(name).turn\(t).speaker_hidden"]).floats()
            #expect(pcc(answer.speakerHidden, hidden) >= 0.9999)
        }
        #expect(session.conversation == ref.cache_ids, "\(name): the whole conversation")
    }

    @Test func voiceCallWithFramesAndAnInterruptionMatchesTheReference() throws { try run("call") }

    @Test func longTurnDropsTheWhisperStateAsTheReferenceDoes() throws { try run("long") }

    @Test func theLastUnitHeardWithTheAnswerHeaderGivesTheSameCall() throws { try run("call", merged: true) }

    /// Interrupting on the first audio chunk: no chunk follows, the held tail is not played.
    @Test func interruptionStopsTheSpeechAtOnce() throws {
        let model = Loaded.minicpmo
        let session = try OmniSession(model: model, tokenizer: try model.tokenizer())
        for unit in Self.units(Self.speech) { try session.listen(.init(audio: unit)) }
        var chunks = 0, afterInterrupt = 0
        let answer = try session.answer(options: GenerationOptions(sampling: .greedy, maxTokens: 24),
                                        speech: try model.speech(), sampler: CodeSampler(greedy: true)) { event in
            guard case .audio = event else { return }
            if chunks > 0 { afterInterrupt += 1 }
            chunks += 1
            session.interrupt()
        }
        #expect(chunks == 1 && afterInterrupt == 0)
        #expect(answer.interrupted)
        let next = try session.listen(.init(audio: Array(Self.speech.prefix(16000))))
        let tok = try model.tokenizer()
        #expect(tok.decode(Array(next.tokens.prefix(6))).hasPrefix("<|im_end|>\n<|im_start|>user\n") || tok.decode(Array(next.tokens.prefix(8))).hasPrefix("<|tts_eos|><|im_end|>\n<|im_start|>user\n"))
    }

    @Test func spokenTextIsNormalizedAsTheReferenceStreamsIt() {
        #expect(Self.file.normalization.count >= 5)
        for c in Self.file.normalization {
            var read = SpokenText()
            for (chunk, expected) in zip(c.chunks, c.texts) {
                read.append(chunk)
                #expect(read.text == expected, "after \(chunk.debugDescription)")
            }
        }
        // a new segment detects its language again, over its opening text and its next two calls
        var read = SpokenText()
        for chunk in ["Say", " 1", " then 2"] { read.append(chunk) }
        read.startSegment(opening: "然后是")
        read.append("3")
        #expect(read.text == "Say one then two三")
    }

    @Test func badUnitsAreRefused() throws {
        let model = Loaded.minicpmo
        let session = try OmniSession(model: model, tokenizer: try model.tokenizer())
        #expect(throws: OmniError.self) { try session.listen(.init(audio: [])) }
        #expect(throws: OmniError.self) { try session.listen(.init(audio: [Float](repeating: 0, count: 30 * 16000 + 1))) }
        try session.start()
        #expect(throws: OmniError.self) { try session.start() }
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func next() -> Int { lock.withLock { n += 1; return n } }
}
