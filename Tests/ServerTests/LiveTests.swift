import Foundation
import Logging
import Media
import Synchronization
import Testing
import TestSupport
import WSClient

/// `/v1/live` driven by a WebSocket client over real sockets: whole calls, an interruption, bad events.
@Suite struct LiveTests {
    static let speech = try! WAVDecoder().load16k(contentsOf: fixturesDirectory.appendingPathComponent("audio/speech-16k-s16.wav"))

    static func json(_ o: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: o), as: UTF8.self)
    }

    static func pcm16(_ samples: ArraySlice<Float>) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(samples.count * 2)
        for s in samples {
            let v = UInt16(bitPattern: Int16((max(-1, min(1, s)) * 32767).rounded()))
            bytes += [UInt8(v & 0xFF), UInt8(v >> 8)]
        }
        return Data(bytes).base64EncodedString()
    }

    /// 100 ms appends of `samples`, then `silence` seconds of zeros.
    static func appends(_ samples: [Float], silence: Double) -> [String] {
        let all = samples + [Float](repeating: 0, count: Int(silence * 16000))
        return stride(from: 0, to: all.count, by: 1600).map {
            json(["type": "input_audio_buffer.append", "audio": pcm16(all[$0..<min($0 + 1600, all.count)])])
        }
    }

    /// Events of one connection: sends `script`'s messages, then each time `until` sees an event it may send more.
    static func call(port: Int, query: String = "", open: [String],
                     react: @escaping @Sendable ([String: Any], (String) async throws -> Void) async throws -> Bool) async throws -> [String] {
        let events = Mutex<[String]>([])
        let logger = Logger(label: "live-test")
        _ = try await WebSocketClient.connect(url: "ws://127.0.0.1:\(port)/v1/live\(query)",
                                              configuration: .init(maxFrameSize: 32 << 20), logger: logger) { inbound, outbound, _ in
            for m in open { try await outbound.write(.text(m)) }
            for try await message in inbound.messages(maxSize: 32 << 20) {
                guard case let .text(t) = message,
                      let o = (try? JSONSerialization.jsonObject(with: Data(t.utf8))) as? [String: Any] else { continue }
                events.withLock { $0.append(t) }
                if try await react(o, { try await outbound.write(.text($0)) }) { break }
            }
        }
        return events.withLock { $0 }
    }

    static func types(_ events: [[String: Any]]) -> [String] { events.compactMap { $0["type"] as? String } }

    static func parse(_ raw: [String]) -> [[String: Any]] {
        raw.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    @Test func aWholeCallOfTwoTurns() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let update = Self.json(["type": "session.update", "session": [
            "temperature": 0, "max_response_output_tokens": 12, "turn_detection": ["silence_duration_ms": 400]]])
        let first = Self.appends(Self.speech, silence: 0.6)
        let second = Self.appends(Array(Self.speech.prefix(24000)), silence: 0.6)
        let done = Mutex(0)
        let events = Self.parse(try await withTimeout(seconds: 120) {
            try await Self.call(port: s.port, open: [update] + first) { event, send in
                guard event["type"] as? String == "response.done" else { return false }
                let n = done.withLock { $0 += 1; return $0 }
                if n == 1 { for m in second { try await send(m) } }
                return n == 2
            }
        })
        let t = Self.types(events)
        #expect(t.first == "session.created")
        #expect(t.contains("session.updated"))
        #expect(t.filter { $0 == "input_audio_buffer.speech_started" }.count == 2)
        #expect(t.filter { $0 == "input_audio_buffer.speech_stopped" }.count == 2)
        #expect(t.filter { $0 == "response.created" }.count == 2)
        #expect(t.contains("response.audio_transcript.delta"))
        // 4.1 s and 1.5 s of speech: the 4.1 s turn alone is more than 4 whole units
        let heard = events.filter { $0["type"] as? String == "input_audio_buffer.unit" }.compactMap { $0["audio_ms"] as? Int }
        #expect(heard.count >= 6 && heard.reduce(0, +) >= 4500, "\(heard)")
        let audio = events.filter { $0["type"] as? String == "response.audio.delta" }.compactMap { $0["delta"] as? String }
        #expect(!audio.isEmpty && audio.allSatisfy { (Data(base64Encoded: $0)?.count ?? 0) > 0 })
        let dones = events.filter { $0["type"] as? String == "response.done" }.compactMap { $0["response"] as? [String: Any] }
        #expect(dones.map { $0["status"] as? String } == ["completed", "completed"])
        // the transcript deltas of each answer add up to its final text
        let deltas = events.filter { $0["type"] as? String == "response.audio_transcript.delta" }
        let firstID = (dones.first?["id"] as? String) ?? ""
        let text = deltas.filter { $0["response_id"] as? String == firstID }.compactMap { $0["delta"] as? String }.joined()
        let output = ((dones.first?["output"] as? [[String: Any]])?.first?["content"] as? [[String: Any]])?.first?["transcript"] as? String
        #expect(!text.isEmpty && text == output)
    }

    @Test func speakingOverAnAnswerInterruptsIt() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let update = Self.json(["type": "session.update", "session": [
            "temperature": 0, "max_response_output_tokens": 2000, "turn_detection": ["silence_duration_ms": 300]]])
        let interruption = Self.appends(Array(Self.speech.prefix(16000)), silence: 0.5)
        let events = Self.parse(try await withTimeout(seconds: 120) {
            try await Self.call(port: s.port, open: [update] + Self.appends(Array(Self.speech.prefix(32000)), silence: 0.5)) { event, send in
                switch event["type"] as? String {
                case "response.created"?:
                    // the first answer has begun: speak over it
                    let id = (event["response"] as? [String: Any])?["id"] as? String ?? ""
                    if id.hasSuffix("_1") { for m in interruption { try await send(m) } }
                    // the second answer would run on: the client calls it off
                    if id.hasSuffix("_2") { try await send(Self.json(["type": "response.cancel"])) }
                    return false
                case "response.done"?:
                    return ((event["response"] as? [String: Any])?["id"] as? String)?.hasSuffix("_2") == true
                default: return false
                }
            }
        })
        let t = Self.types(events)
        #expect(t.contains("response.interrupted"))
        let dones = events.filter { $0["type"] as? String == "response.done" }.compactMap { $0["response"] as? [String: Any] }
        #expect(dones.map { $0["status"] as? String } == ["cancelled", "cancelled"])
        // nothing of the first answer's audio arrives after it was interrupted
        if let cut = t.firstIndex(of: "response.interrupted") {
            let later = events[(cut + 1)...].filter { $0["type"] as? String == "response.audio.delta" }
            let firstID = (dones.first?["id"] as? String) ?? ""
            #expect(later.allSatisfy { $0["response_id"] as? String != firstID })
        }
    }

    @Test func badEventsGetErrorsAndTheCallGoesOn() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let bad = ["not json", Self.json(["type": "no.such.event"]), Self.json(["type": "input_audio_buffer.append", "audio": "%%%"]),
                   Self.json(["type": "input_audio_buffer.append", "audio": Data([1, 2, 3]).base64EncodedString()]),
                   Self.json(["type": "input_image_buffer.append", "image": Data("not an image".utf8).base64EncodedString()]),
                   Self.json(["type": "session.update", "session": ["temperature": -1]])]
        let events = Self.parse(try await withTimeout(seconds: 60) {
            try await Self.call(port: s.port, open: bad + [Self.json(["type": "session.update", "session": ["temperature": 0.5]])]) { event, _ in
                event["type"] as? String == "session.updated"
            }
        })
        let errors = events.filter { $0["type"] as? String == "error" }
        #expect(errors.count == bad.count)
        #expect(errors.allSatisfy { (($0["error"] as? [String: Any])?["message"] as? String)?.isEmpty == false })
    }

    @Test func aRegisteredVoiceIsClonedByItsID() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let wav = try Data(contentsOf: fixturesDirectory.appendingPathComponent("audio/speech-16k-s16.wav"))
        let added = try await s.send(.POST, "/v1/voices", body: wav, headers: [("Content-Type", "audio/wav")])
        let id = try #require(try added.json()["id"] as? String)
        let speech = Self.appends(Array(Self.speech.prefix(24000)), silence: 0.6)
        func transcript(voice: String?) async throws -> (String?, [String]) {
            var session: [String: Any] = ["temperature": 0, "max_response_output_tokens": 8, "modalities": ["text"],
                                          "turn_detection": ["silence_duration_ms": 400]]
            session["voice"] = voice
            let update = Self.json(["type": "session.update", "session": session])
            let events = Self.parse(try await withTimeout(seconds: 120) {
                try await Self.call(port: s.port, open: [update] + speech) { event, _ in
                    ["response.done", "error"].contains(event["type"] as? String)
                }
            })
            let done = events.first { $0["type"] as? String == "response.done" }?["response"] as? [String: Any]
            let content = ((done?["output"] as? [[String: Any]])?.first?["content"] as? [[String: Any]])?.first
            return (content?["text"] as? String ?? content?["transcript"] as? String, Self.types(events))
        }
        let (byID, _) = try await transcript(voice: id)
        let (byWAV, _) = try await transcript(voice: wav.base64EncodedString())
        #expect(byID != nil && byID == byWAV)
        // the cloned voice's prompt changes the answer: the id was not ignored
        let (plain, _) = try await transcript(voice: nil)
        #expect(plain != nil && plain != byID)
        let (_, unknown) = try await transcript(voice: "voice-nosuchvoice")
        #expect(unknown.contains("error") && !unknown.contains("session.updated"))
    }

    @Test func theKeyIsRequiredWhenSet() async throws {
        let s = try await TestServer.start { $0.apiKey = "sekret" }
        defer { Task { await s.stop() } }
        await #expect(throws: (any Error).self) {
            _ = try await Self.call(port: s.port, open: []) { _, _ in true }
        }
        let events = Self.parse(try await withTimeout(seconds: 30) {
            try await Self.call(port: s.port, query: "?api_key=sekret", open: []) { _, _ in true }
        })
        #expect(Self.types(events) == ["session.created"])
    }
}

/// Runs `body`, failing if it takes longer than `seconds`.
func withTimeout<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw TestFailure("timed out after \(seconds) s")
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}
