import AsyncHTTPClient
import Foundation
import Media
import MiniCPMO
import Runtime
import Testing
import TestSupport

/// Every endpoint over real HTTP on an ephemeral port.
@Suite struct EndpointTests {
    @Test func healthModelsAndMetrics() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        #expect(try await s.get("/health").status == 200)
        let models = try await s.get("/v1/models")
        #expect(models.status == 200)
        let data = try models.json()["data"] as? [[String: Any]]
        #expect(data?.first?["id"] as? String == "tiny-minicpmo")
        #expect(try await s.get("/v1/models/tiny-minicpmo").status == 200)
        #expect(try await s.get("/v1/models/other").status == 404)
        _ = try await s.post("/v1/chat/completions", json: chat("Hello!"))
        let metrics = try await s.get("/metrics").text
        for name in ["minicpmo_requests_total", "minicpmo_generated_tokens_total", "minicpmo_time_to_first_token_seconds_bucket",
                     "minicpmo_request_duration_seconds_bucket", "minicpmo_queue_depth", "minicpmo_kv_pages_in_use",
                     "minicpmo_prefix_cache_hits_total"] {
            #expect(metrics.contains(name), "\(name) missing from /metrics")
        }
        #expect(try await s.metric(#"minicpmo_requests_total{endpoint="chat_completions",status="200"}"#) == 1)
    }

    @Test func healthIs503WhileLoading() async throws {
        let gate = DispatchSemaphore(value: 0)
        let s = try await TestServer.start(load: {
            gate.wait()
            return SerialScheduler(engine: try Engine(model: TestServer.model))
        }, waitReady: false)
        defer { Task { await s.stop() } }
        let h = try await s.get("/health")
        #expect(h.status == 503)
        let c = try await s.post("/v1/chat/completions", json: chat("Hello!"))
        #expect(c.status == 503)
        #expect(c.error?["code"] as? String == "model_loading")
        gate.signal()
        try await s.waitUntilReady()
        #expect(try await s.post("/v1/chat/completions", json: chat("Hello!")).status == 200)
    }

    @Test func streamedEqualsNonStreamed() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let plain = try await s.post("/v1/chat/completions", json: chat("Tell me a story.", maxTokens: 12))
        #expect(plain.status == 200)
        let o = try plain.json()
        #expect(o["object"] as? String == "chat.completion")
        #expect(((o["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String) == "length")
        #expect(usage(o).completion == 12)
        var body = chat("Tell me a story.", maxTokens: 12)
        body["stream"] = true
        body["stream_options"] = ["include_usage": true]
        let (status, events) = try await s.stream(body)
        #expect(status == 200)
        #expect(events.last! == nil, "ends with [DONE]")
        #expect(streamedText(events) == (try messageText(plain)))
        let first = (events.first!?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any]
        #expect(first?["role"] as? String == "assistant")
        let finish = events.compactMap { ($0?["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String }
        #expect(finish == ["length"])
        let usageEvent = events.dropLast().last!
        #expect((usageEvent?["choices"] as? [Any])?.isEmpty == true)
        #expect(usage(usageEvent).completion == 12)
    }

    @Test func stopStringsAndSeeds() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let full = try messageText(try await s.post("/v1/chat/completions", json: chat("Hi", maxTokens: 16)))
        let words = full.split(separator: " ")
        try #require(words.count > 3)
        let stop = String(words[2])
        let cut = try await s.post("/v1/chat/completions", json: chat("Hi", maxTokens: 16, extra: greedy.merging(["stop": [stop, "zzzz"]]) { $1 }))
        let text = try messageText(cut)
        #expect(!text.contains(stop) && full.hasPrefix(text))
        #expect(((try cut.json()["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String) == "stop")
        let sampled: [String: Any] = ["temperature": 0.9, "seed": 7]
        let a = try messageText(try await s.post("/v1/chat/completions", json: chat("Hi", maxTokens: 10, extra: sampled)))
        let b = try messageText(try await s.post("/v1/chat/completions", json: chat("Hi", maxTokens: 10, extra: sampled)))
        #expect(a == b, "the same seed samples the same answer")
    }

    @Test func secondTurnReusesTheCache() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        var messages: [[String: Any]] = [["role": "system", "content": "You are terse."], ["role": "user", "content": "Hello!"]]
        let first = try await s.post("/v1/chat/completions", json: ["messages": messages, "max_tokens": 6] as [String: Any])
        let u1 = usage(try first.json())
        #expect(u1.cached == 0)
        messages.append(["role": "assistant", "content": try messageText(first)])
        messages.append(["role": "user", "content": "And then?"])
        let second = try await s.post("/v1/chat/completions", json: ["messages": messages, "max_tokens": 6] as [String: Any])
        let u2 = usage(try second.json())
        #expect(u2.cached >= u1.prompt, "turn 2 reuses turn 1's prompt (\(u2.cached) cached of \(u2.prompt))")
        #expect(u2.cached < u2.prompt)
        #expect(try await s.metric("minicpmo_prefix_cache_hits_total") == 1)
    }

    /// Two conversations with the same system prompt: the second reuses its cached pages, and the first
    /// keeps its whole history for its next turn (the cache hands out shared copies, not the cached one).
    @Test func conversationsSharingASystemPromptKeepTheirOwnHistory() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let system: [String: Any] = ["role": "system", "content": "You are a terse assistant who answers every question in as few words as possible."]
        var a: [[String: Any]] = [system, ["role": "user", "content": "Hello!"]]
        let a1 = try await s.post("/v1/chat/completions", json: ["messages": a, "max_tokens": 6] as [String: Any])
        let ua1 = usage(try a1.json())
        let b1 = try await s.post("/v1/chat/completions",
                                  json: ["messages": [system, ["role": "user", "content": "What is new today?"]], "max_tokens": 6] as [String: Any])
        let ub1 = usage(try b1.json())
        #expect(ub1.cached > 10 && ub1.cached < ub1.prompt, "the system prompt is reused (\(ub1.cached) of \(ub1.prompt))")
        a.append(["role": "assistant", "content": try messageText(a1)])
        a.append(["role": "user", "content": "And then?"])
        let ua2 = usage(try (try await s.post("/v1/chat/completions", json: ["messages": a, "max_tokens": 6] as [String: Any])).json())
        #expect(ua2.cached >= ua1.prompt, "turn 2 of the first conversation reuses all of turn 1 (\(ua2.cached) of \(ua2.prompt))")
    }

    @Test func imageAndAudioInput() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let image = try await s.post("/v1/chat/completions", json: chat([
            ["type": "image_url", "image_url": ["url": try dataURL("images/chelsea-small.png")]],
            ["type": "text", "text": "What is in the picture?"],
        ]))
        #expect(image.status == 200, "\(image.text)")
        #expect(usage(try image.json()).prompt > 64, "the image's placeholders are in the prompt")
        let audio = try await s.post("/v1/chat/completions", json: chat([
            ["type": "text", "text": "What is said?"],
            ["type": "input_audio", "input_audio": ["data": try fixtureData("audio/speech-16k-s16.wav").base64EncodedString(), "format": "wav"]],
        ]))
        #expect(audio.status == 200, "\(audio.text)")
        #expect(usage(try audio.json()).prompt > 25)
    }

    @Test func audioOut() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        var body = chat("Say something.", maxTokens: 12)
        body["modalities"] = ["text", "audio"]
        body["audio"] = ["voice": "default", "format": "wav"]
        let r = try await s.post("/v1/chat/completions", json: body)
        #expect(r.status == 200, "\(r.text)")
        let message = (try r.json()["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]
        let audio = message?["audio"] as? [String: Any]
        let wav = Data(base64Encoded: audio?["data"] as? String ?? "") ?? Data()
        let clip = try WAVDecoder().decode(wav)
        #expect(clip.sampleRate == 24000 && clip.channels == 1 && clip.samples.count > 0)
        #expect((audio?["transcript"] as? String)?.isEmpty == false)
        #expect(audio?["expires_at"] as? Int ?? 0 > Int(Date().timeIntervalSince1970))
        // the answer's audio id stands for its transcript in the next turn
        let id = try #require(audio?["id"] as? String)
        let next = try await s.post("/v1/chat/completions", json: ["messages": [
            ["role": "user", "content": "Say something."], ["role": "assistant", "audio": ["id": id]], ["role": "user", "content": "Again."],
        ], "max_tokens": 4] as [String: Any])
        #expect(next.status == 200, "\(next.text)")

        body["stream"] = true
        body["audio"] = ["voice": "alloy", "format": "pcm16"]
        let (status, events) = try await s.stream(body)
        #expect(status == 200)
        let chunks = events.compactMap { e -> Data? in
            let d = ((e?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["audio"] as? [String: Any]
            return (d?["data"] as? String).flatMap { Data(base64Encoded: $0) }
        }
        #expect(!chunks.isEmpty, "audio chunks are streamed")
        #expect(chunks.allSatisfy { $0.count % 2 == 0 && !$0.isEmpty })
        #expect(!streamedText(events).isEmpty, "the transcript is streamed")
    }

    @Test func transcriptionsSpeechAndVoices() async throws {
        let s = try await TestServer.start()
        defer { Task { await s.stop() } }
        let wav = try fixtureData("audio/speech-16k-s16.wav")
        func form(_ fields: [(String, String)], file: Data?) -> (Data, String) {
            let boundary = "----minicpmo\(Int.random(in: 0..<1_000_000))"
            var d = Data()
            for (k, v) in fields { d.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(k)\"\r\n\r\n\(v)\r\n".utf8)) }
            if let file {
                d.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n".utf8))
                d.append(file)
                d.append(Data("\r\n".utf8))
            }
            d.append(Data("--\(boundary)--\r\n".utf8))
            return (d, "multipart/form-data; boundary=\(boundary)")
        }
        let (body, type) = form([("model", "whisper-1"), ("response_format", "json")], file: wav)
        let t = try await s.send(.POST, "/v1/audio/transcriptions", body: body, headers: [("Content-Type", type)])
        #expect(t.status == 200, "\(t.text)")
        let text = try t.json()["text"] as? String
        #expect(text != nil)
        let (body2, type2) = form([("response_format", "text")], file: wav)
        let plain = try await s.send(.POST, "/v1/audio/transcriptions", body: body2, headers: [("Content-Type", type2)])
        #expect(plain.status == 200 && plain.text == text, "greedy transcription is the same either way")
        let (noFile, type3) = form([("model", "x")], file: nil)
        let missing = try await s.send(.POST, "/v1/audio/transcriptions", body: noFile, headers: [("Content-Type", type3)])
        #expect(missing.status == 400 && missing.error?["param"] as? String == "file")

        let speech = try await s.post("/v1/audio/speech", json: ["model": "tts-1", "input": "Hello there.", "voice": "alloy"])
        #expect(speech.status == 200)
        #expect(speech.headers["Content-Type"].first == "audio/wav")
        let clip = try WAVDecoder().decode(speech.body)
        #expect(clip.sampleRate == 24000 && clip.samples.count > 0)
        let pcm = try await s.post("/v1/audio/speech", json: ["input": "Hello there.", "response_format": "pcm"])
        #expect(pcm.body == speech.body.dropFirst(44), "pcm is the WAV's samples")

        let added = try await s.send(.POST, "/v1/voices", body: wav, headers: [("Content-Type", "audio/wav")])
        #expect(added.status == 201, "\(added.text)")
        let id = try #require(try added.json()["id"] as? String)
        let list = try await s.get("/v1/voices")
        #expect(((try list.json()["data"] as? [[String: Any]]) ?? []).contains { $0["id"] as? String == id })
        var cloned = chat("Hello", maxTokens: 6)
        cloned["modalities"] = ["text", "audio"]
        cloned["audio"] = ["voice": id, "format": "wav"]
        let c = try await s.post("/v1/chat/completions", json: cloned)
        #expect(c.status == 200, "\(c.text)")
        #expect(usage(try c.json()).prompt > 40, "the voice recording is in the prompt")
        let read = try await s.post("/v1/audio/speech", json: ["input": "Hello there.", "voice": id])
        #expect(read.status == 200)
        #expect(try await s.send(.DELETE, "/v1/voices/\(id)").status == 204)
        cloned["audio"] = ["voice": id, "format": "wav"]
        let gone = try await s.post("/v1/chat/completions", json: cloned)
        #expect(gone.status == 400 && gone.error?["param"] as? String == "audio.voice")
    }
}
