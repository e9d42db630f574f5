import AsyncHTTPClient
import Foundation
import Logging
import MiniCPMO
import NIOCore
import NIOHTTP1
import Runtime
import Server
import TestSupport

/// A server on an ephemeral loopback port with a fixture model, and an HTTP client for it.
final class TestServer: @unchecked Sendable {
    let server: MiniCPMOServer
    let task: Task<Void, Error>
    let port: Int
    let client: HTTPClient
    var base: String { "http://127.0.0.1:\(port)" }

    static let model: MiniCPMOModel = try! MiniCPMOModel(directory: fixtureModel("tiny-minicpmo"))

    /// - batch: answers decoded together (BatchScheduler); nil: the serial scheduler.
    static func start(_ configure: (inout ServerConfiguration) -> Void = { _ in }, contextLength: Int? = nil, cacheBytes: Int = 64 << 20,
                      batch: Int? = nil, prefillBudget: Int = 256,
                      load: (@Sendable () throws -> any RequestScheduler)? = nil, waitReady: Bool = true) async throws -> TestServer {
        var config = ServerConfiguration()
        config.port = 0
        config.modelName = "tiny-minicpmo"
        configure(&config)
        let maxQueue = config.maxQueue
        let loader = load ?? {
            let engine = try Engine(model: TestServer.model, contextLength: contextLength, cacheBytes: cacheBytes)
            if let batch { return BatchScheduler(engine: engine, maxQueue: maxQueue, maxBatch: batch, prefillBudget: prefillBudget) }
            return SerialScheduler(engine: engine, maxQueue: maxQueue)
        }
        var logger = Logger(label: "test.server")
        logger.logLevel = .warning
        let server = MiniCPMOServer(configuration: config, logger: logger, load: loader)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let task = Task { try await server.run { continuation.yield($0) } }
        var port = 0
        for await p in ports { port = p; break }
        let s = TestServer(server: server, task: task, port: port)
        if waitReady { try await s.waitUntilReady() }
        return s
    }

    private init(server: MiniCPMOServer, task: Task<Void, Error>, port: Int) {
        self.server = server
        self.task = task
        self.port = port
        var c = HTTPClient.Configuration()
        c.timeout = .init(connect: .seconds(5), read: .seconds(60))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }

    func waitUntilReady() async throws {
        for _ in 0..<500 {
            if try await get("/health").status == 200 { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("the server did not become ready")
    }

    func stop() async {
        try? await client.shutdown()
        await server.shutdown()
        _ = await task.result
    }

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> [String: Any] {
            guard let o = try JSONSerialization.jsonObject(with: body) as? [String: Any] else { throw TestFailure("not a JSON object: \(text)") }
            return o
        }
        /// The `error` object of an OpenAI error body.
        var error: [String: Any]? { (try? json())?["error"] as? [String: Any] }
    }

    func send(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = []) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await client.execute(request, timeout: .seconds(120))
        let bytes = try await response.body.collect(upTo: 256 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: Data(bytes.readableBytesView))
    }

    func get(_ path: String, headers: [(String, String)] = []) async throws -> Reply { try await send(.GET, path, headers: headers) }

    func post(_ path: String, json: Any, headers: [(String, String)] = []) async throws -> Reply {
        try await send(.POST, path, body: try JSONSerialization.data(withJSONObject: json), headers: [("Content-Type", "application/json")] + headers)
    }

    /// A streamed chat completion's events (the JSON of each `data:` line, `[DONE]` as nil).
    func stream(_ json: Any) async throws -> (status: Int, events: [[String: Any]?]) {
        let r = try await post("/v1/chat/completions", json: json)
        return (r.status, try sseEvents(r.text))
    }

    /// Prometheus text → value of one sample line (`name{labels} value`), nil when absent.
    func metric(_ line: String) async throws -> Double? {
        let text = try await get("/metrics").text
        for l in text.split(separator: "\n") where l.hasPrefix(line + " ") {
            return Double(l.dropFirst(line.count + 1))
        }
        return nil
    }
}

func sseEvents(_ text: String) throws -> [[String: Any]?] {
    var out: [[String: Any]?] = []
    for block in text.components(separatedBy: "\n\n") where !block.isEmpty {
        guard block.hasPrefix("data: ") else { throw TestFailure("not an SSE data line: \(block)") }
        let payload = block.dropFirst(6)
        if payload == "[DONE]" { out.append(nil); continue }
        guard let o = try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any] else { throw TestFailure("bad event \(payload)") }
        out.append(o)
    }
    return out
}

/// The text of a streamed completion's content deltas.
func streamedText(_ events: [[String: Any]?]) -> String {
    events.compactMap { e -> String? in
        guard let c = (e?["choices"] as? [[String: Any]])?.first, let d = c["delta"] as? [String: Any] else { return nil }
        return (d["content"] as? String) ?? ((d["audio"] as? [String: Any])?["transcript"] as? String)
    }.joined()
}

func messageText(_ reply: TestServer.Reply) throws -> String {
    let choices = try reply.json()["choices"] as? [[String: Any]]
    return ((choices?.first?["message"] as? [String: Any])?["content"] as? String) ?? ""
}

func usage(_ o: [String: Any]?) -> (prompt: Int, completion: Int, cached: Int) {
    let u = o?["usage"] as? [String: Any] ?? [:]
    let d = u["prompt_tokens_details"] as? [String: Any] ?? [:]
    return (u["prompt_tokens"] as? Int ?? -1, u["completion_tokens"] as? Int ?? -1, d["cached_tokens"] as? Int ?? -1)
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}

func fixtureData(_ path: String) throws -> Data { try Data(contentsOf: fixturesDirectory.appendingPathComponent(path)) }

/// A data: URL of a fixture image.
func dataURL(_ path: String, mime: String = "image/png") throws -> String { "data:\(mime);base64," + (try fixtureData(path)).base64EncodedString() }

nonisolated(unsafe) let greedy: [String: Any] = ["temperature": 0, "repetition_penalty": 1]

func chat(_ content: Any, maxTokens: Int = 8, extra: [String: Any] = greedy) -> [String: Any] {
    var body: [String: Any] = ["model": "tiny-minicpmo", "messages": [["role": "user", "content": content]], "max_tokens": maxTokens]
    for (k, v) in extra { body[k] = v }
    return body
}

/// Resident memory of this process, bytes.
func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
    return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
}
