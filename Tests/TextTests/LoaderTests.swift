import CZlib
import Foundation
import Testing
import Text

@Suite struct LoaderTests {
    /// The vocab.json + merges.txt layout (added tokens from tokenizer_config.json) must give the
    /// same tokenizer as tokenizer.json.
    @Test func vocabAndMergesEqualTokenizerJSON() throws {
        let reference = Fixtures.qwen2
        let tokenizer = try Qwen2Tokenizer(
            vocabJSONData: Fixtures.data("qwen2/vocab.json.gz"), mergesData: Fixtures.data("qwen2/merges.txt.gz"),
            tokenizerConfigData: Fixtures.data("qwen2/tokenizer_config.json"))
        #expect(tokenizer.vocabularySize == reference.vocabularySize)
        #expect(tokenizer.addedTokenList == reference.addedTokenList)
        var differing = 0
        for id in 0..<reference.vocabularySize where tokenizer.token(of: id) != reference.token(of: id) { differing += 1 }
        #expect(differing == 0)
        for document in Fixtures.expected.documents {
            #expect(tokenizer.encode(document.text) == document.ids, "\(document.name)")
        }
        for (i, line) in Fixtures.corpusLines.enumerated() where i % 7 == 0 {
            #expect(tokenizer.encode(line) == Fixtures.expected.lines[i].ids, "line \(i + 1)")
        }
    }

    /// Model directories may hold `tokenizer.json.gz`.
    @Test func gzipCompressedFilesLoad() throws {
        let reference = Fixtures.qwen2
        let fromDirectory = try Qwen2Tokenizer(directory: Fixtures.directory.appendingPathComponent("qwen2"))
        let fromFiles = try Qwen2Tokenizer(
            vocabJSON: Fixtures.directory.appendingPathComponent("qwen2/vocab.json.gz"),
            merges: Fixtures.directory.appendingPathComponent("qwen2/merges.txt.gz"),
            tokenizerConfig: Fixtures.directory.appendingPathComponent("qwen2/tokenizer_config.json"))
        let document = try #require(Fixtures.expected.documents.first { $0.name == "generated" })
        for tokenizer in [fromDirectory, fromFiles] {
            #expect(tokenizer.vocabularySize == reference.vocabularySize)
            #expect(tokenizer.encode(document.text) == document.ids)
        }
        // Stored, fixed-Huffman and dynamic-Huffman blocks, and two concatenated gzip members.
        let json = try Fixtures.data("synthetic/tokenizer.json")
        let plain = try Qwen2Tokenizer(tokenizerJSONData: json)
        let half = json.count / 2
        let variants = [
            try gzipCompress(json, level: 0), try gzipCompress(json, strategy: Z_FIXED), try gzipCompress(json, level: 9),
            try gzipCompress(json[..<half]) + gzipCompress(json[half...]),
        ]
        for variant in variants {
            let tokenizer = try Qwen2Tokenizer(tokenizerJSONData: variant)
            #expect(tokenizer.encode("hello <word> [MASK] world") == plain.encode("hello <word> [MASK] world"))
        }
        var corrupt = variants[2]
        corrupt[corrupt.count / 2] ^= 0x55
        #expect(throws: TokenizerError.self) { try Qwen2Tokenizer(tokenizerJSONData: corrupt, source: "x.json.gz") }
        let truncated = variants[2].prefix(variants[2].count - 9)
        #expect(throws: TokenizerError.self) { try Qwen2Tokenizer(tokenizerJSONData: truncated, source: "x.json.gz") }
    }

    /// A small tokenizer.json with ["a", "b"] merges and added tokens using lstrip / rstrip /
    /// single_word / normalized, against `tokenizers`.
    @Test func syntheticTokenizerFlags() throws {
        let tokenizer = try Qwen2Tokenizer(tokenizerJSON: Fixtures.directory.appendingPathComponent("synthetic/tokenizer.json"))
        let cases = try JSONDecoder().decode([SyntheticCase].self, from: Fixtures.data("synthetic/expected.json"))
        #expect(cases.count > 10)
        for c in cases {
            #expect(tokenizer.encode(c.text) == c.ids, "\(c.text.debugDescription)")
            #expect(tokenizer.encode(c.text, allowSpecial: false) == c.idsNoSpecial, "\(c.text.debugDescription)")
            #expect(identical(tokenizer.decode(c.ids), c.decoded), "\(c.text.debugDescription)")
            #expect(identical(tokenizer.decode(c.ids, skipSpecial: true), c.decodedSkipSpecial), "\(c.text.debugDescription)")
        }
    }

    @Test func directoryLoadingAndAddedTokensJSON() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A three-token vocabulary: "a", "b" and their merge.
        try Data(#"{"a": 0, "b": 1, "ab": 2}"#.utf8).write(to: dir.appendingPathComponent("vocab.json"))
        try Data("#version: 0.2\r\na b\r\n".utf8).write(to: dir.appendingPathComponent("merges.txt"))
        try Data(#"{"<eos>": 3}"#.utf8).write(to: dir.appendingPathComponent("added_tokens.json"))
        let tokenizer = try Qwen2Tokenizer(directory: dir)
        #expect(tokenizer.encode("abab<eos>ba") == [2, 2, 3, 1, 0])
        #expect(tokenizer.isSpecial(3))
        #expect(tokenizer.decode([2, 3, 0], skipSpecial: true) == "aba")
        #expect(tokenizer.vocabularySize == 4)
    }

    @Test func missingFilesNameThePath() throws {
        let missing = URL(fileURLWithPath: "/nonexistent/dir/tokenizer.json")
        #expect(throws: TokenizerError.fileNotFound(path: missing.path)) {
            try Qwen2Tokenizer(tokenizerJSON: missing)
        }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            _ = try Qwen2Tokenizer(directory: dir)
            Issue.record("loading an empty directory succeeded")
        } catch let error as TokenizerError {
            #expect(error == .fileNotFound(path: dir.appendingPathComponent("vocab.json").path))
            #expect(error.description.contains("vocab.json"))
        }
    }

    @Test(arguments: [
        ("{ not json", "malformed"),
        ("[1, 2]", "malformed"),
        (#"{"version": "1.0"}"#, "model"),
        (#"{"model": {"type": "WordPiece", "vocab": {}}}"#, "WordPiece"),
        (#"{"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}}"#, "model.vocab"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}}}"#, "model.merges"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["ab"]}}"#, "merge 'ab'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel", "use_regex": true}}"#, "use_regex"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "Lowercase"}}"#, "Lowercase"),
    ])
    func malformedTokenizerJSON(json: String, mention: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tokenizer.json")
        try Data(json.utf8).write(to: url)
        do {
            _ = try Qwen2Tokenizer(tokenizerJSON: url)
            Issue.record("loaded \(json)")
        } catch let error as TokenizerError {
            #expect(error.description.contains(url.path), "\(error)")
            #expect(error.description.contains(mention), "\(error)")
        }
    }

    /// A merge whose result is not in the vocabulary (the file is otherwise a valid Qwen2 one).
    @Test func mergeOutsideVocabulary() throws {
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "use_regex": false]
        let json: [String: Any] = [
            "model": ["type": "BPE", "vocab": ["a": 0, "b": 1], "merges": [["a", "b"]]],
            "normalizer": ["type": "NFC"],
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": Self.qwen2Pattern], "behavior": "Isolated", "invert": false],
                byteLevel]],
        ]
        let data = try JSONSerialization.data(withJSONObject: json)
        #expect(throws: TokenizerError.invalidMerge(path: "test.json", merge: "a b")) {
            try Qwen2Tokenizer(tokenizerJSONData: data, source: "test.json")
        }
        // The same file with "ab" in the vocabulary loads and merges.
        var model = json["model"] as! [String: Any]
        model["vocab"] = ["a": 0, "b": 1, "ab": 2]
        var fixed = json
        fixed["model"] = model
        let tokenizer = try Qwen2Tokenizer(tokenizerJSONData: JSONSerialization.data(withJSONObject: fixed))
        #expect(tokenizer.encode("abba") == [2, 1, 0])
    }

    static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    private func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("TextTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
