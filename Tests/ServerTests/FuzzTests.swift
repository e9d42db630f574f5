import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TestSupport

/// Malformed bodies, headers and media payloads, made from valid requests by seeded mutations that
/// each break the request for sure: every one must be a 4xx with an error object, never a 5xx, a
/// hang or a crash.
@Suite struct FuzzTests {
    struct Case {
        var method: HTTPMethod = .POST
        var path = "/v1/chat/completions"
        var body: Data
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        var label: String
    }

    static func cases(count: Int, seed: UInt64) throws -> [Case] {
        var rng = SeededRNG(seed: seed)
        let png = try fixtureData("images/chelsea-small.png"), wav = try fixtureData("audio/speech-16k-s16.wav")
        let valid: [[String: Any]] = [
            chat("Hello there, how are you?"),
            chat([["type": "text", "text": "Describe"], ["type": "image_url", "image_url": ["url": "data:image/png;base64," + png.base64EncodedString()]]]),
            chat([["type": "text", "text": "Listen"], ["type": "input_audio", "input_audio": ["data": wav.base64EncodedString(), "format": "wav"]]]),
            chat("Speak", extra: ["modalities": ["text", "audio"], "audio": ["voice": "default", "format": "wav"], "stream": true]),
        ]
        let validBytes = try valid.map { try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
        // wrong values for each field: every one is refused
        let wrong: [(String, Any)] = [
            ("messages", "text"), ("messages", 3), ("messages", [1, 2]), ("messages", [["role": 1, "content": "x"]]),
            ("messages", [["role": "robot", "content": "x"]]), ("messages", [["content": "x"]]), ("messages", [["role": "user", "content": 5]]),
            ("messages", [["role": "user", "content": [["type": "image_url", "image_url": ["url": "ftp://x"]]]]]),
            ("messages", [["role": "user", "content": [["type": "input_audio", "input_audio": ["data": "!!", "format": "wav"]]]]]),
            ("messages", [["role": "user", "content": [["type": 7]]]]), ("messages", [["role": "user"]]),
            ("temperature", "warm"), ("temperature", -1), ("temperature", 1e9), ("top_p", 0), ("top_p", 2), ("top_k", -3),
            ("max_tokens", 0), ("max_tokens", -5), ("max_tokens", "many"), ("max_tokens", 1.5), ("n", 3), ("n", "one"),
            ("stop", 5), ("stop", [1, 2]), ("seed", "x"), ("seed", 1.25), ("stream", "yes"), ("stream_options", 4),
            ("repetition_penalty", 0), ("repetition_penalty", -2), ("frequency_penalty", 1), ("presence_penalty", -1),
            ("response_format", ["type": "json_schema"]), ("response_format", "text"), ("modalities", ["video"]), ("modalities", "audio"),
            ("audio", ["voice": "missing-voice-id"]), ("audio", 3), ("tools", [["type": "function"]]), ("logprobs", true),
        ]
        var out: [Case] = []
        for i in 0..<count {
            let k = i % validBytes.count
            let base = validBytes[k]
            switch rng.int(0...9) {
            case 0:  // a proper prefix of a JSON object is never JSON
                let cut = rng.int(0...(base.count - 2))
                out.append(Case(body: base.prefix(cut), label: "truncated at \(cut)"))
            case 1:  // random bytes that do not start a JSON object
                var b = (0..<rng.int(1...300)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if b[0] == UInt8(ascii: "{") { b[0] = UInt8(ascii: "x") }
                out.append(Case(body: Data(b), label: "garbage"))
            case 2:  // valid JSON that is not an object
                let values = ["[]", "null", "42", "\"text\"", "[{\"messages\":[]}]", "true", "{\"messages\":{}}"]
                out.append(Case(body: Data(values[rng.int(0...(values.count - 1))].utf8), label: "not an object"))
            case 3, 4:  // one field with a wrong value
                var o = valid[k]
                let (key, value) = wrong[rng.int(0...(wrong.count - 1))]
                o[key] = value
                out.append(Case(body: try JSONSerialization.data(withJSONObject: o), label: "wrong \(key)"))
            case 5:  // broken media inside well-formed JSON
                let media = rng.int(0...1) == 0 ? png : wav
                var bytes = [UInt8](media.prefix(rng.int(0...min(media.count - 1, 64))))
                if rng.int(0...1) == 0 { bytes = (0..<rng.int(1...200)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
                let part: [String: Any] = media == png
                    ? ["type": "image_url", "image_url": ["url": "data:image/png;base64," + Data(bytes).base64EncodedString()]]
                    : ["type": "input_audio", "input_audio": ["data": Data(bytes).base64EncodedString(), "format": "wav"]]
                out.append(Case(body: try JSONSerialization.data(withJSONObject: chat([part])), label: "broken media (\(bytes.count) bytes)"))
            case 6:  // invalid UTF-8 or control bytes inside a string
                var b = [UInt8](base)
                let at = (b.firstIndex(of: UInt8(ascii: ":")) ?? 0) + 2
                b.insert(contentsOf: [0xFF, 0xFE, 0x00, 0xC3], at: min(at, b.count - 1))
                out.append(Case(body: Data(b), label: "bad UTF-8"))
            case 7:  // deep nesting
                let depth = rng.int(100...5000)
                let s = "{\"messages\":" + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
                out.append(Case(body: Data(s.utf8), label: "nested \(depth)"))
            case 8:  // the other endpoints with bad bodies and headers
                switch rng.int(0...3) {
                case 0:
                    out.append(Case(path: "/v1/audio/transcriptions", body: base.prefix(50),
                                    headers: [("Content-Type", "multipart/form-data; boundary=\(rng.int(0...9999))")], label: "bad multipart"))
                case 1:
                    out.append(Case(path: "/v1/audio/transcriptions", body: base, headers: [("Content-Type", "application/json")], label: "json to multipart"))
                case 2:
                    out.append(Case(path: "/v1/audio/speech", body: Data("{\"input\": \(rng.int(0...99))}".utf8), label: "speech input number"))
                default:
                    out.append(Case(path: "/v1/voices", body: Data((0..<rng.int(1...100)).map { _ in UInt8.random(in: 0...255, using: &rng) }),
                                    headers: [("Content-Type", "audio/wav")], label: "garbage voice"))
                }
            default:  // unknown paths and methods
                let paths = ["/v1/chat", "/v1/completions", "/v1/chat/completions/x", "/v2/models", "/v1/embeddings"]
                out.append(Case(method: rng.int(0...1) == 0 ? .POST : .PUT, path: paths[rng.int(0...(paths.count - 1))], body: base, label: "unknown route"))
            }
        }
        return out
    }

    @Test func malformedRequestsAreAll4xx() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let all = try Self.cases(count: 2100, seed: 20261203)
        var failures: [String] = []
        let lanes = 8
        try await withThrowingTaskGroup(of: [String].self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    var bad: [String] = []
                    for c in stride(from: lane, to: all.count, by: lanes).map({ all[$0] }) {
                        let r = try await s.send(c.method, c.path, body: c.body, headers: c.headers)
                        let e = r.error
                        if !(400..<500).contains(r.status) || !(e?["message"] is String) || !(e?["type"] is String) {
                            bad.append("\(c.label) \(c.path): \(r.status) \(r.text.prefix(200))")
                        }
                    }
                    return bad
                }
            }
            for try await b in group { failures += b }
        }
        #expect(failures.isEmpty, "\(failures.count) of \(all.count) not a 4xx error object, e.g. \(failures.prefix(5))")
        #expect(try await s.get("/health").status == 200, "alive after the fuzz")
        #expect(try await s.post("/v1/chat/completions", json: chat("Hello")).status == 200)
        #expect(try await s.metric(#"minicpmo_requests_total{endpoint="other",status="500"}"#) == nil)
    }
}
