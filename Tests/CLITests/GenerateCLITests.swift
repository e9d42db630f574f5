import Foundation
import Testing
import Weights

struct ChatCase: Decodable {
    var system: String?
    var prompt: String
    var prompt_ids: [Int]
    var generated_ids: [Int]
}

struct GenerateOutput: Decodable {
    var text: String
    var token_ids: [Int]
    var prompt_tokens: Int
    var finish_reason: String
}

func cases(_ model: String) throws -> [ChatCase] {
    try JSONDecoder().decode([ChatCase].self, from: Data(contentsOf: fixtures.appendingPathComponent("reference/generate-\(model).json")))
}

/// A copy of a fixture model folder that a test may modify.
func copyModel(_ name: String, tag: String, tokenizer: Bool = true) throws -> String {
    let dst = temp("model-\(tag)")
    try? FileManager.default.removeItem(atPath: dst)
    try FileManager.default.createDirectory(atPath: dst, withIntermediateDirectories: true)
    let src = fixtures.appendingPathComponent("models/\(name)")
    for f in try FileManager.default.contentsOfDirectory(atPath: src.path) where tokenizer || !f.hasPrefix("tokenizer") {
        let from = src.appendingPathComponent(f).resolvingSymlinksInPath()
        try FileManager.default.copyItem(atPath: from.path, toPath: dst + "/" + f)
    }
    return dst
}

@Suite struct GenerateCLITests {
    /// Greedy generation equals transformers' generate(do_sample=False) token for token.
    @Test(arguments: ["tiny-qwen2", "tiny-minicpmo"])
    func greedyMatchesTransformers(model: String) throws {
        let dir = fixtures.appendingPathComponent("models/\(model)").path
        let all = try cases(model)
        #expect(all.count >= 3)
        for c in all {
            var args = ["generate", "--model", dir, "--prompt", c.prompt, "--max-tokens", "32", "--temperature", "0",
                        "--repetition-penalty", "1", "--json"]
            if let s = c.system { args += ["--system", s] }
            let r = try run(args)
            #expect(r.status == 0, "\(r.stderr)")
            let out = try JSONDecoder().decode(GenerateOutput.self, from: Data(r.stdout.utf8))
            var expected = c.generated_ids
            var reason = "length"
            if let last = expected.last, [151643, 151645].contains(last) { expected.removeLast(); reason = "stop" }
            #expect(out.token_ids == expected, "\(model): \(c.prompt)")
            #expect(out.prompt_tokens == c.prompt_ids.count)
            #expect(out.finish_reason == reason)
        }
    }

    /// `--json` reports the phases around generation: load, media encoding, time to first token (everything
    /// before decoding), speech and peak RSS.
    @Test func jsonReportsThePhases() throws {
        let dir = fixtures.appendingPathComponent("models/tiny-minicpmo").path
        let wav = FileManager.default.temporaryDirectory.appendingPathComponent("phases-\(getpid()).wav").path
        defer { try? FileManager.default.removeItem(atPath: wav) }
        let image = fixtures.appendingPathComponent("images/chelsea-small.png").path
        let r = try run(["generate", "--model", dir, "--prompt", "Hi", "--image", image, "--max-tokens", "4", "--temperature", "0",
                         "--speech-out", wav, "--max-speech-frames", "8", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let t = try #require(json["timings"] as? [String: Any])
        let number = { (key: String) -> Double in (t[key] as? NSNumber)?.doubleValue ?? -1 }
        for key in ["load_seconds", "encode_seconds", "time_to_first_token_seconds", "speech_seconds", "prefill_seconds"] {
            #expect(number(key) > 0, "\(key): \(t[key] ?? "missing")")
        }
        // the first token waits for the image and the prefill
        #expect(number("time_to_first_token_seconds") >= number("encode_seconds") + number("prefill_seconds"))
        #expect(number("peak_rss_bytes") > 1e6)
        // text without speech reports no speech time
        let plain = try run(["generate", "--model", dir, "--prompt", "Hi", "--max-tokens", "2", "--json"])
        let pt = try #require((try JSONSerialization.jsonObject(with: Data(plain.stdout.utf8)) as? [String: Any])?["timings"] as? [String: Any])
        #expect(pt["speech_seconds"] == nil && pt["load_seconds"] != nil)
    }

    @Test func benchParallelReportsTheAggregate() throws {
        let dir = fixtures.appendingPathComponent("models/tiny-qwen2-quant").path
        let r = try run(["bench", "--model", dir, "--quant", "q8", "--parallel", "4", "--prompt-tokens", "4", "--gen-tokens", "3",
                         "--repeats", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(j["streams"] as? Int == 4)
        #expect(((j["aggregate_decode_tokens_per_second"] as? NSNumber)?.doubleValue ?? 0) > 0)
        #expect(try run(["bench", "--model", dir, "--parallel", "0"]).status != 0)
    }

    @Test func benchTTFTNeedsAModelAndReportsEachCase() throws {
        let dir = fixtures.appendingPathComponent("models/tiny-qwen2").path
        let r = try run(["bench", "--model", dir, "--ttft", "--prompt-tokens", "6", "--repeats", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let cases = try #require(j["cases"] as? [[String: Any]])
        #expect(cases.map { $0["name"] as? String } == ["text"])
        #expect(cases.first?["prompt_tokens"] as? Int == 6)
        #expect(try run(["bench", "--ttft"]).status != 0)
        #expect(try run(["bench", "--model", dir, "--ttft", "--parallel", "2"]).status != 0)
    }

    @Test func tokenizeMatchesReferencePromptIds() throws {
        let c = try cases("tiny-minicpmo")[1]
        let text = "<|im_start|>system\n\(c.system!)<|im_end|>\n<|im_start|>user\n\(c.prompt)<|im_end|>\n<|im_start|>assistant\n"
        let r = try run(["tokenize", "--model", fixtures.appendingPathComponent("models/tiny-minicpmo").path, "--text", text, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        struct Ids: Decodable { var ids: [Int] }
        #expect(try JSONDecoder().decode(Ids.self, from: Data(r.stdout.utf8)).ids == c.prompt_ids)
    }

    @Test func streamingPrintsOnlyTheAnswerOnStdout() throws {
        let dir = fixtures.appendingPathComponent("models/tiny-minicpmo").path
        let r = try run(["generate", "--model", dir, "--prompt", "Hi", "--max-tokens", "6", "--seed", "3"])
        #expect(r.status == 0)
        let j = try run(["generate", "--model", dir, "--prompt", "Hi", "--max-tokens", "6", "--seed", "3", "--json"])
        let out = try JSONDecoder().decode(GenerateOutput.self, from: Data(j.stdout.utf8))
        #expect(r.stdout == out.text + "\n", "same seed, same sampled text")
        #expect(r.stderr.contains("tok/s"))
    }

    @Test func chatThroughPipedStdin() throws {
        let dir = fixtures.appendingPathComponent("models/tiny-minicpmo").path
        let r = try run(["chat", "--model", dir, "--max-tokens", "5", "--temperature", "0"],
                        stdin: "Hello\nHow are you?\n/reset\nHello\n/quit\nnever read\n")
        #expect(r.status == 0, "\(r.stderr)")
        let answers = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        #expect(r.stderr.components(separatedBy: " generated at ").count - 1 == 3, "\(r.stderr)")
        #expect(r.stderr.contains("reset"))
        // the first and third turns are the same conversation start, so greedy answers agree
        #expect(answers.count >= 2 && answers.first == answers.last)
        // Ctrl-D (end of input) also ends the chat cleanly
        #expect(try run(["chat", "--model", dir, "--max-tokens", "2"], stdin: "Hi\n").status == 0)
    }

    @Test func clearErrors() throws {
        let dir = fixtures.appendingPathComponent("models/tiny-minicpmo").path
        let empty = try run(["generate", "--model", dir, "--prompt", "  "])
        #expect(empty.status != 0 && empty.stderr.contains("empty"))
        let missing = try run(["generate", "--model", "/no/such/model", "--prompt", "hi"])
        #expect(missing.status != 0 && missing.stderr.contains("/no/such/model"))
        let noTok = try copyModel("tiny-qwen2-gqa", tag: "notok", tokenizer: false)
        let nt = try run(["generate", "--model", noTok, "--prompt", "hi"])
        #expect(nt.status != 0 && nt.stderr.contains("tokenizer"), "\(nt.stderr)")
        // a context window of 16 positions cannot hold a long prompt
        let small = try copyModel("tiny-minicpmo", tag: "ctx")
        var config = try String(contentsOfFile: small + "/config.json", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"max_position_embeddings\": 32768", with: "\"max_position_embeddings\": 16")
        try config.write(toFile: small + "/config.json", atomically: true, encoding: .utf8)
        let long = try run(["generate", "--model", small, "--prompt", String(repeating: "word ", count: 40)])
        #expect(long.status != 0 && long.stderr.contains("context"), "\(long.stderr)")
        let badTok = try run(["tokenize", "--model", "/no/such", "--text", "x"])
        #expect(badTok.status != 0)
    }
}
