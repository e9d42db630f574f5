import AsyncHTTPClient
import Foundation
import NIOCore
import Runtime
import Testing
import TestSupport

/// Everything a client can get wrong is a 4xx with OpenAI's error object.
@Suite struct ErrorTests {
    func expectError(_ r: TestServer.Reply, _ status: Int, param: String? = nil, code: String? = nil, _ note: String = "") {
        #expect(r.status == status, "\(note): \(r.text)")
        let e = r.error
        #expect(e?["message"] is String && e?["type"] is String, "\(note): no error object in \(r.text)")
        #expect(e?.keys.contains("param") == true && e?.keys.contains("code") == true, "\(note): \(r.text)")
        if let param { #expect(e?["param"] as? String == param, "\(note): \(r.text)") }
        if let code { #expect(e?["code"] as? String == code, "\(note): \(r.text)") }
    }

    @Test func badRequests() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let path = "/v1/chat/completions"
        expectError(try await s.send(.POST, path, body: Data("{not json".utf8)), 400, "malformed JSON")
        expectError(try await s.send(.POST, path, body: Data()), 400, "empty body")
        expectError(try await s.post(path, json: ["messages": "hello"]), 400, param: "messages", "messages a string")
        expectError(try await s.post(path, json: [:] as [String: Any]), 400, param: "messages", "no messages")
        expectError(try await s.post(path, json: ["messages": [] as [Any]]), 400, param: "messages", "empty messages")
        expectError(try await s.post(path, json: chat("hi", extra: ["temperature": "hot"])), 400, param: "temperature", "temperature a string")
        expectError(try await s.post(path, json: chat("hi", extra: ["temperature": 5])), 400, param: "temperature", "temperature too high")
        expectError(try await s.post(path, json: chat("hi", maxTokens: 0)), 400, param: "max_tokens", "max_tokens 0")
        expectError(try await s.post(path, json: chat("hi", extra: ["n": 2])), 400, param: "n", "n = 2")
        expectError(try await s.post(path, json: chat("hi", extra: ["frequency_penalty": 0.5])), 400, param: "frequency_penalty", "frequency penalty")
        expectError(try await s.post(path, json: chat("hi", extra: ["response_format": ["type": "json_object"]])), 400, param: "response_format", "json mode")
        expectError(try await s.post(path, json: chat("hi", extra: ["tools": [["type": "function"]]])), 400, param: "tools", "tools")
        expectError(try await s.post(path, json: ["messages": [["role": "tool", "content": "x"]]]), 400, param: "messages[0].role", "tool role")
        expectError(try await s.post(path, json: chat([["type": "video_url", "video_url": "x"]])), 400, param: "messages[0].content[0].type", "unknown part")
        expectError(try await s.post(path, json: chat([["type": "text"]])), 400, param: "messages[0].content[0].text", "text part without text")
        expectError(try await s.post(path, json: chat([["type": "image_url", "image_url": ["url": try dataURL("images/bad-corrupt.png")]]])),
                    400, code: "invalid_media", "corrupt PNG")
        expectError(try await s.post(path, json: chat([["type": "image_url", "image_url": ["url": "data:image/png;base64,@@@"]]])),
                    400, param: "messages[0].content[0]", "bad base64")
        expectError(try await s.post(path, json: chat([["type": "image_url", "image_url": ["url": "http://127.0.0.1:1/cat.png"]]])),
                    400, param: "messages[0].content[0]", "remote media off")
        let garbage = try fixtureData("audio/bad-garbage.wav").base64EncodedString()
        expectError(try await s.post(path, json: chat([["type": "input_audio", "input_audio": ["data": garbage, "format": "wav"]]])),
                    400, code: "invalid_media", "garbage WAV")
        expectError(try await s.post(path, json: chat([["type": "input_audio", "input_audio": ["data": garbage, "format": "mp3"]]])),
                    400, param: "messages[0].content[0].input_audio.format", "mp3")
        expectError(try await s.post(path, json: chat("hi", extra: ["modalities": ["text", "audio"], "audio": ["voice": "nobody"]])),
                    400, param: "audio.voice", "unknown voice")
        expectError(try await s.post(path, json: chat("hi", extra: ["modalities": ["text", "audio"], "audio": ["format": "mp3"]])),
                    400, param: "audio.format", "mp3 out")
        expectError(try await s.post(path, json: chat("hi", extra: ["modalities": ["text", "audio"], "audio": ["format": "wav"], "stream": true])),
                    400, param: "audio.format", "streamed wav")
        expectError(try await s.get("/v1/nothing-here"), 404, code: "not_found", "unknown route")
        expectError(try await s.send(.DELETE, "/v1/voices/none"), 404, "unknown voice id")
        expectError(try await s.post("/v1/audio/speech", json: ["input": ""]), 400, param: "input", "empty speech input")
        expectError(try await s.send(.POST, "/v1/audio/transcriptions", body: Data("x".utf8), headers: [("Content-Type", "text/plain")]), 400,
                    "transcription without multipart")
        #expect(try await s.get("/health").status == 200)
        #expect(try await s.metric(#"minicpmo_requests_total{endpoint="chat_completions",status="400"}"#) ?? 0 >= 20,
                "refused completions are counted")
    }

    @Test func promptPastTheContext() async throws {
        let s = try await TestServer.start(contextLength: 64)
        defer { Task { await s.stop() } }
        let long = String(repeating: "word ", count: 200)
        let r = try await s.post("/v1/chat/completions", json: chat(long))
        expectError(r, 400, param: "messages", code: "context_length_exceeded", "over the context")
        let ok = try await s.post("/v1/chat/completions", json: chat("hi", maxTokens: 500))
        #expect(ok.status == 200)
        let u = usage(try ok.json())
        #expect(u.prompt + u.completion <= 64, "the answer stops at the context's end")
    }

    @Test func apiKey() async throws {
        let s = try await TestServer.start { $0.apiKey = "sk-test-123" }
        defer { Task { await s.stop() } }
        expectError(try await s.post("/v1/chat/completions", json: chat("hi")), 401, code: "invalid_api_key", "no key")
        expectError(try await s.post("/v1/chat/completions", json: chat("hi"), headers: [("Authorization", "Bearer sk-test-124")]), 401,
                    code: "invalid_api_key", "wrong key")
        expectError(try await s.get("/v1/models", headers: [("Authorization", "sk-test-123")]), 401, "not a bearer token")
        #expect(try await s.post("/v1/chat/completions", json: chat("hi"), headers: [("Authorization", "Bearer sk-test-123")]).status == 200)
        #expect(try await s.get("/health").status == 200, "health needs no key")
    }

    @Test func bodyOverTheLimit() async throws {
        let s = try await TestServer.start { $0.maxBodyBytes = 4096 }
        defer { Task { await s.stop() } }
        let big = chat(String(repeating: "a", count: 10_000))
        expectError(try await s.post("/v1/chat/completions", json: big), 413, code: "request_too_large", "over the limit")
        #expect(try await s.post("/v1/chat/completions", json: chat("hi")).status == 200)
    }

    /// A client that leaves during a long prefill stops it between chunks, not at its end.
    @Test func cancellationDuringPrefill() async throws {
        let s = try await TestServer.start { $0.prefillChunk = 1 }
        defer { Task { await s.stop() } }
        var request = HTTPClientRequest(url: s.base + "/v1/chat/completions")
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: chat(String(repeating: "word ", count: 1500)))))
        let client = s.client
        let long = Task { _ = try await client.execute(request, timeout: .seconds(120)) }
        var running = 0.0
        for _ in 0..<500 where running == 0 {  // until the prefill runs
            running = try await s.metric("minicpmo_requests_running") ?? 0
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(200))
        long.cancel()
        _ = await long.result
        let t0 = ContinuousClock.now
        while ContinuousClock.now - t0 < .seconds(10), try await s.metric("minicpmo_requests_running") != 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
        // proof by work, not wall time (the suite shares two cores): had the prefill run to its end,
        // the answer's tokens would have been generated and counted
        #expect(try await s.metric("minicpmo_requests_running") == 0)
        let generated = try await s.metric("minicpmo_generated_tokens_total") ?? 0
        #expect(generated == 0, "the prefill stopped before the answer began")
        #expect(try await s.metric(#"minicpmo_requests_total{endpoint="chat_completions",status="499"}"#) == 1, "counted as cancelled")
    }

    /// A queue of 0 refuses a request while another runs (429, Retry-After); the running one, whose
    /// client goes away, stops at once and gives its KV pages back.
    @Test func queueFullAndCancellationByDisconnect() async throws {
        let s = try await TestServer.start { $0.maxQueue = 0 }
        defer { Task { await s.stop() } }
        let pagesBefore = try await s.metric("minicpmo_kv_pages_in_use") ?? 0
        var request = HTTPClientRequest(url: s.base + "/v1/chat/completions")
        request.method = .POST
        var body = chat("Write a very long story.", maxTokens: 20_000)
        body["stream"] = true
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        let (started, startedContinuation) = AsyncStream<Void>.makeStream()
        let client = s.client
        let long = Task {
            let response = try await client.execute(request, timeout: .seconds(120))
            var it = response.body.makeAsyncIterator()
            _ = try await it.next()
            _ = try await it.next()
            startedContinuation.yield()
            try await Task.sleep(for: .seconds(120))
        }
        for await _ in started { break }
        let refused = try await s.post("/v1/chat/completions", json: chat("hi"))
        expectError(refused, 429, code: "queue_full", "queue full")
        #expect(refused.headers["Retry-After"].first == "1")
        long.cancel()
        _ = await long.result
        let t0 = ContinuousClock.now
        var running = 1.0
        while ContinuousClock.now - t0 < .seconds(10) {
            running = try await s.metric("minicpmo_requests_running") ?? 1
            if running == 0 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        // 20,000 tokens take minutes here: stopping within 10 s (wall time on a shared machine) can
        // only be the disconnect
        #expect(running == 0, "the generation stopped after the client left")
        #expect(ContinuousClock.now - t0 < .seconds(10))
        #expect(try await s.metric("minicpmo_kv_pages_in_use") == pagesBefore, "the cancelled request's pages are free")
        #expect(try await s.metric(#"minicpmo_requests_total{endpoint="chat_completions",status="499"}"#) == 1, "counted as cancelled")
        #expect(try await s.post("/v1/chat/completions", json: chat("hi")).status == 200, "the worker is free again")
    }
}
