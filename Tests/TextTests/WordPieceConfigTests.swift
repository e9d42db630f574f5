import Foundation
import Testing
import Text

/// tokenizer_config.json's do_lower_case / strip_accents / tokenize_chinese_chars, applied as
/// `transformers`' BertTokenizerFast applies them (fixture: tools/reference/wordpiece_config.py).
@Suite struct WordPieceConfigTests {
    struct Fixture: Decodable {
        var lines: Int
        var cases: [Case]
        struct Case: Decodable {
            var variant: String
            var config: [String: Bool?]
            var ids: [[Int]]
        }
    }

    static let fixture: Fixture = {
        let url = WordPieceFixtures.directory.appendingPathComponent("config-overrides.json.gz")
        return try! JSONDecoder().decode(Fixture.self, from: Gzip.decompress(Data(contentsOf: url)))
    }()

    @Test(arguments: 0..<8)
    func matchesBertTokenizerFast(index: Int) throws {
        let c = Self.fixture.cases[index]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wp-config-\(getpid())-\(index)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try WordPieceFixtures.tokenizerJSON(c.variant).write(to: dir.appendingPathComponent("tokenizer.json"))
        var config: [String: Any] = ["tokenizer_class": "BertTokenizerFast"]
        for (k, v) in c.config { config[k] = v.map { $0 as Any } ?? NSNull() }
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("tokenizer_config.json"))
        let tokenizer = try WordPieceTokenizer(directory: dir)
        let lines = WordPieceFixtures.expected.lines.prefix(Self.fixture.lines)
        var mismatches = 0
        for (line, ids) in zip(lines, c.ids) where tokenizer.encode(line) != ids { mismatches += 1 }
        #expect(mismatches == 0, "\(c.variant) \(c.config): \(mismatches) of \(lines.count) lines differ")
    }

    @Test func aWrongTypeInTheConfigIsAnError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wp-config-bad-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try WordPieceFixtures.tokenizerJSON("lower").write(to: dir.appendingPathComponent("tokenizer.json"))
        try Data(#"{"do_lower_case": "yes"}"#.utf8).write(to: dir.appendingPathComponent("tokenizer_config.json"))
        #expect(throws: (any Error).self) { _ = try WordPieceTokenizer(directory: dir) }
    }
}
