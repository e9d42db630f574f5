import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// `minicpmo serve` as users start it: answers equal `minicpmo generate`, SIGTERM stops it gracefully.
@Suite struct ServeCLITests {
    final class Served: @unchecked Sendable {
        let process = Process()
        let log: String
        var port = 0
        // the shared client needs no shutdown, so a failed expectation cannot crash the process
        let client = HTTPClient.shared
        var base: String { "http://127.0.0.1:\(port)" }

        init(_ model: String, tag: String, extra: [String] = []) throws {
            log = temp("serve-\(tag).out")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            process.executableURL = URL(fileURLWithPath: minicpmoBinary())
            process.arguments = ["serve", "--model", model, "--port", "0"] + extra
            process.standardOutput = FileHandle(forWritingAtPath: log)
            process.standardError = FileHandle.nullDevice
            try process.run()
        }

        /// Waits for the URL line on stdout, then for /health (counting attempts, not seconds: a
        /// busy test process may not run this task for a while).
        func ready() async throws {
            var attempts = 0
            while port == 0 && attempts < 3000 {
                attempts += 1
                let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                if let line = out.split(separator: "\n").first(where: { $0.hasPrefix("listening on http://127.0.0.1:") }) {
                    port = Int(line.split(separator: ":").last ?? "") ?? 0
                } else {
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            #expect(port > 0, "the server printed its URL")
            while attempts < 6000 {
                attempts += 1
                if try await get("/health").0 == 200 { return }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        func get(_ path: String) async throws -> (Int, Data) {
            let r = try await client.execute(HTTPClientRequest(url: base + path), timeout: .seconds(30))
            return (Int(r.status.code), Data(try await r.body.collect(upTo: 1 << 24).readableBytesView))
        }

        func post(_ path: String, _ json: [String: Any]) async throws -> (Int, [String: Any]) {
            var request = HTTPClientRequest(url: base + path)
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)))
            let r = try await client.execute(request, timeout: .seconds(120))
            let body = try await r.body.collect(upTo: 1 << 26)
            return (Int(r.status.code), (try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]) ?? [:])
        }

        func stop() async {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
    }

    struct Case {
        var args: [String]
        var messages: [[String: Any]]
    }

    @Test func greedyAnswersEqualGenerate() async throws {
        let model = fixtures.appendingPathComponent("models/tiny-minicpmo").path
        let served = try Served(model, tag: "equal")
        try await served.ready()
        let image = fixtures.appendingPathComponent("images/chelsea-small.png").path
        let audio = fixtures.appendingPathComponent("audio/speech-16k-s16.wav").path
        let imageURL = "data:image/png;base64," + (try Data(contentsOf: URL(fileURLWithPath: image))).base64EncodedString()
        let wav = (try Data(contentsOf: URL(fileURLWithPath: audio))).base64EncodedString()
        let cases = [
            Case(args: ["--system", "You are terse.", "--prompt", "Hello, who are you?"],
                 messages: [["role": "system", "content": "You are terse."], ["role": "user", "content": "Hello, who are you?"]]),
            Case(args: ["--image", image, "--prompt", "What is in the picture?"],
                 messages: [["role": "user", "content": [["type": "image_url", "image_url": ["url": imageURL]],
                                                         ["type": "text", "text": "What is in the picture?"]]]]),
            Case(args: ["--prompt", "What is said?", "--audio", audio],
                 messages: [["role": "user", "content": [["type": "text", "text": "What is said?"],
                                                         ["type": "input_audio", "input_audio": ["data": wav, "format": "wav"]]]]]),
        ]
        for c in cases {
            let r = try await runAsync(["generate", "--model", model, "--max-tokens", "12", "--temperature", "0", "--repetition-penalty", "1", "--json"] + c.args)
            #expect(r.status == 0, "\(r.stderr)")
            let cli = try JSONDecoder().decode(GenerateOutput.self, from: Data(r.stdout.utf8))
            let (status, body) = try await served.post("/v1/chat/completions", [
                "messages": c.messages, "max_tokens": 12, "temperature": 0, "repetition_penalty": 1, "return_token_ids": true,
            ])
            #expect(status == 200)
            let choice = (body["choices"] as? [[String: Any]])?.first
            #expect(choice?["token_ids"] as? [Int] == cli.token_ids, "\(c.args)")
            #expect((choice?["message"] as? [String: Any])?["content"] as? String == cli.text)
            #expect((body["usage"] as? [String: Any])?["prompt_tokens"] as? Int == cli.prompt_tokens)
        }
        await served.stop()
    }

    @Test func aModelThatCannotLoadStopsTheServer() async throws {
        let dir = temp("serve-bad-model")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(#"{"model_type": 5}"#.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let r = try await runAsync(["serve", "--model", dir, "--port", "0"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("error:") && r.stderr.contains("model_type"), "\(r.stderr)")
    }

    /// SIGTERM while an answer streams: the answer finishes, then the server exits with status 0.
    @Test func sigtermIsGraceful() async throws {
        let served = try Served(fixtures.appendingPathComponent("models/tiny-minicpmo").path, tag: "term")
        try await served.ready()
        var request = HTTPClientRequest(url: served.base + "/v1/chat/completions")
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: [
            "messages": [["role": "user", "content": "Write a long story."]], "max_tokens": 150, "temperature": 0, "stream": true,
        ] as [String: Any])))
        let response = try await served.client.execute(request, timeout: .seconds(120))
        var body = response.body.makeAsyncIterator()
        var text = ""
        if let first = try await body.next() { text += String(buffer: first) }
        kill(served.process.processIdentifier, SIGTERM)
        while let more = try await body.next() { text += String(buffer: more) }
        #expect(text.hasSuffix("data: [DONE]\n\n"), "the open answer was finished")
        #expect(text.contains(#""finish_reason":"length""#))
        for _ in 0..<400 where served.process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!served.process.isRunning, "the server exited after SIGTERM")
        if !served.process.isRunning {
            #expect(served.process.terminationStatus == 0)
            #expect(served.process.terminationReason == .exit)
        }
        await served.stop()
    }
}
