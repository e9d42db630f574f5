import Foundation
import Testing
import Weights

struct VisionCase: Decodable {
    var images: [String]
    var question: String
    var prompt_ids: [Int]
    var generated_ids: [Int]
}

/// Images through the whole pipeline: decode, slicing, SigLIP, resampler, prompt placeholders and
/// greedy generation, against the PyTorch reference pipeline.
@Suite struct VisionCLITests {
    static let model = fixtures.appendingPathComponent("models/tiny-minicpmo").path

    static func cases() throws -> [VisionCase] {
        try JSONDecoder().decode([VisionCase].self,
                                 from: Data(contentsOf: fixtures.appendingPathComponent("reference/generate-vision-tiny-minicpmo.json")))
    }

    @Test func greedyAnswersWithImagesMatchTheReference() throws {
        let all = try Self.cases()
        #expect(all.contains { $0.images.count == 1 } && all.contains { $0.images.count == 2 })
        for c in all {
            var args = ["generate", "--model", Self.model, "--prompt", c.question, "--max-tokens", "\(c.generated_ids.count)",
                        "--temperature", "0", "--repetition-penalty", "1", "--json"]
            for image in c.images { args += ["--image", fixtures.appendingPathComponent("images/\(image)").path] }
            let r = try run(args)
            #expect(r.status == 0, "\(r.stderr)")
            let out = try JSONDecoder().decode(GenerateOutput.self, from: Data(r.stdout.utf8))
            #expect(out.prompt_tokens == c.prompt_ids.count, "\(c.images)")
            var expected = c.generated_ids
            if let last = expected.last, [151643, 151645].contains(last) { expected.removeLast() }
            #expect(out.token_ids == expected, "\(c.images): \(c.question)")
        }
    }

    @Test func badImagesFailWithOneClearLine() throws {
        let garbage = temp("garbage.png")
        try Data("not an image at all".utf8).write(to: URL(fileURLWithPath: garbage))
        defer { try? FileManager.default.removeItem(atPath: garbage) }
        for path in [garbage, "/nonexistent/picture.jpg"] {
            let r = try run(["generate", "--model", Self.model, "--prompt", "hi", "--image", path, "--max-tokens", "2"])
            #expect(r.status == 1)
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            #expect(errors.count == 1, "\(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
    }

    @Test func chatAttachesImagesAndReusesTheCachedPrefix() throws {
        let image = fixtures.appendingPathComponent("images/chelsea.png").path
        let r = try run(["chat", "--model", Self.model, "--temperature", "0", "--max-tokens", "3"],
                        stdin: "/image \(image)\nWhat is it?\n/image /nonexistent.png\nAnd now?\n")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("not sliced"))
        #expect(r.stderr.contains("error:"))  // the missing file is reported, the chat goes on
        let rates = r.stderr.split(separator: "\n").filter { $0.contains("prompt tokens") }
        #expect(rates.count == 2)
        #expect(rates.last.map { !$0.contains("(0 cached)") } == true, "second turn reuses the image prefix: \(rates)")
    }
}
