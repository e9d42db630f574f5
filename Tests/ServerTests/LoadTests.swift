import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization
import Testing
import TestSupport

/// Many clients at once on loopback: nothing lost, crossed or truncated, memory flat.
@Suite struct LoadTests {
    static let templateCount = 20

    /// Mixed requests: prompts of different lengths, greedy and seeded sampling, stop strings, an
    /// image and a recording among them, streamed and not.
    static func template(_ i: Int) throws -> [String: Any] {
        let words = String(repeating: "word\(i) ", count: 1 + (i * 7) % 40)
        var content: Any = "Request \(i): \(words)"
        if i == 3 {
            content = [["type": "image_url", "image_url": ["url": try dataURL("images/chelsea-small.png")]], ["type": "text", "text": "What is it?"]]
        } else if i == 7 {
            content = [["type": "text", "text": "Listen."],
                       ["type": "input_audio", "input_audio": ["data": try fixtureData("audio/speech-16k-s16.wav").base64EncodedString(), "format": "wav"]]]
        }
        var extra: [String: Any] = i % 3 == 0 ? ["temperature": 0.8, "seed": i, "top_k": 40] : greedy
        if i % 5 == 4 { extra["stop"] = ["e"] }
        var body = chat(content, maxTokens: 4 + i % 5, extra: extra)
        body["stream"] = i % 2 == 1
        return body
    }

    final class Counts: Sendable {
        let next = Atomic<Int>(0), done = Atomic<Int>(0), rssAt50 = Atomic<Int>(0)
    }

    struct Req: Sendable {
        var body: Data
        var stream: Bool
        init(_ o: [String: Any]) throws {
            body = try JSONSerialization.data(withJSONObject: o)
            stream = o["stream"] as? Bool == true
        }
    }

    func answer(_ client: HTTPClient, _ base: String, _ req: Req, disconnect: Bool = false) async throws -> String? {
        var request = HTTPClientRequest(url: base + "/v1/chat/completions")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: req.body))
        let response = try await client.execute(request, timeout: .seconds(120))
        if disconnect {
            var it = response.body.makeAsyncIterator()
            _ = try await it.next()
            return nil  // dropping the body mid-stream closes the connection
        }
        let bytes = Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)
        guard response.status == .ok else { throw TestFailure("HTTP \(response.status.code): \(String(decoding: bytes, as: UTF8.self))") }
        if req.stream {
            let events = try sseEvents(String(decoding: bytes, as: UTF8.self))
            guard events.last! == nil else { throw TestFailure("no [DONE]") }
            return streamedText(events)
        }
        return try messageText(TestServer.Reply(status: 200, headers: response.headers, body: bytes))
    }

    /// batch: nil serves one request at a time; 8 decodes up to eight answers together.
    @Test(arguments: [nil, 8] as [Int?])
    func concurrentClientsGetTheirOwnAnswers(batch: Int?) async throws {
        let s = try await TestServer.start({ $0.maxQueue = 64 }, batch: batch)
        defer { Task { await s.stop() } }
        var config = HTTPClient.Configuration()
        config.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        defer { _ = Task { try? await client.shutdown() } }
        let templates = try (0..<Self.templateCount).map { try Req(Self.template($0)) }
        let leaving = try (0..<Self.templateCount).map { i -> Req in
            var o = try Self.template(i)
            o["stream"] = true
            o["max_tokens"] = 400
            return try Req(o)
        }
        var answers: [String] = []
        for t in templates { answers.append(try await answer(client, s.base, t) ?? "") }
        let expected = answers

        let total = 500, clients = 32
        let counts = Counts()
        let base = s.base
        let t0 = ContinuousClock.now
        let problems = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<clients {
                group.addTask {
                    var bad: [String] = []
                    while true {
                        let i = counts.next.add(1, ordering: .relaxed).oldValue
                        guard i < total else { break }
                        let k = (i * 13) % Self.templateCount
                        let leaves = i % 10 == 9
                        do {
                            let got = try await answer(client, base, leaves ? leaving[k] : templates[k], disconnect: leaves)
                            if !leaves && got != expected[k] { bad.append("request \(i) (template \(k)): \(got ?? "nil") ≠ \(expected[k])") }
                        } catch {
                            bad.append("request \(i): \(error)")
                        }
                        if counts.done.add(1, ordering: .relaxed).newValue == 50 { counts.rssAt50.store(residentBytes(), ordering: .relaxed) }
                    }
                    return bad
                }
            }
            var all: [String] = []
            for try await b in group { all += b }
            return all
        }
        let elapsed = ContinuousClock.now - t0
        let rssEnd = residentBytes(), rss50 = counts.rssAt50.load(ordering: .relaxed)
        #expect(problems.isEmpty, "\(problems.count) lost, crossed or truncated: \(problems.prefix(5))")
        let growth = Double(rssEnd) / Double(max(rss50, 1))
        print(String(format: "[load] %d requests from %d clients in %.1f s; RSS %.1f MB after 50, %.1f MB after all (%.3fx)", total, clients,
                     Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18,
                     Double(rss50) / 1e6, Double(rssEnd) / 1e6, growth))
        #expect(growth <= 1.05, "RSS grew from \(rss50) to \(rssEnd)")
        #expect(try await s.get("/health").status == 200)
    }
}
