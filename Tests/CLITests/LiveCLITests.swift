import Foundation
import Media
import Testing

/// `minicpmo live`: a recording of two utterances replayed as a call, with video frames.
@Suite struct LiveCLITests {
    static let model = fixtures.appendingPathComponent("models/tiny-minicpmo").path

    /// Two utterances of the fixture speech with a second of silence between them.
    static func recording() throws -> String {
        let speech = try WAVDecoder().load16k(contentsOf: fixtures.appendingPathComponent("audio/speech-16k-s16.wav"))
        let path = temp("live-in.wav")
        try WAVWriter.write(speech + [Float](repeating: 0, count: 16000) + speech, sampleRate: 16000, to: URL(fileURLWithPath: path),
                            overwrite: true)
        return path
    }

    @Test func twoTurnsWithFramesGiveTwoSpokenAnswersAndTheirLatencies() throws {
        let input = try Self.recording()
        let frames = temp("live-frames"), out = temp("live-out")
        let fm = FileManager.default
        for d in [frames, out] { try? fm.removeItem(atPath: d) }
        defer { for p in [frames, out, input] { try? fm.removeItem(atPath: p) } }
        try fm.createDirectory(atPath: frames, withIntermediateDirectories: true)
        for (i, name) in ["chelsea-small.png", "coffee.png"].enumerated() {
            try fm.copyItem(atPath: fixtures.appendingPathComponent("images/\(name)").path, toPath: frames + "/frame-\(i).png")
        }
        let args = ["live", "--model", Self.model, "--input", input, "--video", frames, "--output", out, "--fast",
                    "--max-tokens", "10", "--temperature", "0", "--speech-greedy", "--silence", "0.4"]
        let r = try run(args)
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/live.json"))) as? [String: Any])
        let turns = try #require(summary["turns"] as? [[String: Any]])
        #expect(turns.count == 2)
        for (k, t) in turns.enumerated() {
            #expect(t["tokens"] as? Int == 10)
            #expect((t["text"] as? String)?.isEmpty == false)
            #expect(t["first_text_after_speech_end_seconds"] is Double)
            let file = try #require(t["file"] as? String)
            #expect(file == "answer-\(k + 1).wav")
            let clip = try WAVDecoder().decode(contentsOf: URL(fileURLWithPath: out + "/" + file))
            #expect(clip.sampleRate == 24000 && !clip.samples.isEmpty)
        }
        let units = try #require(summary["units"] as? [[String: Double]])
        #expect(units.count >= 8 && units.allSatisfy { ($0["prefill_seconds"] ?? -1) >= 0 })
        #expect((summary["listening_real_time_factor_max"] as? Double ?? 0) > 0)
        // the answers' text went to stdout
        #expect(r.stdout.split(separator: "\n").count >= 2)
        // live.json is not replaced without --overwrite
        let again = try run(args)
        #expect(again.status == 1 && again.stderr.contains("--overwrite"))
    }

    @Test func aBadRecordingIsAClearError() throws {
        let out = temp("live-bad-out")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try run(["live", "--model", Self.model, "--input", fixtures.appendingPathComponent("audio/bad-garbage.wav").path,
                         "--output", out, "--fast"])
        #expect(r.status == 1 && r.stderr.hasPrefix("error: "))
        let s = try run(["live", "--model", Self.model, "--input", "x.wav", "--output", out, "--silence", "0"])
        #expect(s.status != 0 && s.stderr.contains("--silence"))
    }
}
