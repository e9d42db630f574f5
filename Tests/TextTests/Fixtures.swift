import Foundation
import Text

/// Shared, lazily loaded fixtures (written by tools/reference/tokenizer.py from `tokenizers` 0.22.2).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    static func data(_ name: String) throws -> Data {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return name.hasSuffix(".gz") ? try Gzip.decompress(data) : data
    }

    /// Qwen2 (Qwen2.5 added tokens) loaded from the gzipped tokenizer.json.
    static let qwen2: Qwen2Tokenizer = {
        do {
            return try Qwen2Tokenizer(tokenizerJSONData: data("qwen2/tokenizer.json.gz"),
                                      source: "qwen2/tokenizer.json.gz")
        } catch {
            fatalError("cannot load the Qwen2 fixture: \(error)")
        }
    }()

    /// Corpus lines, split on "\n" only: lines may hold "\r", U+2028 and other separators.
    static let corpusLines: [String] = {
        guard let bytes = try? data("corpus.txt") else { fatalError("cannot read corpus.txt") }
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        if lines.last == "" { lines.removeLast() }
        return lines
    }()

    static let expected: Expected = {
        do {
            return try JSONDecoder().decode(Expected.self, from: data("corpus-expected.json.gz"))
        } catch {
            fatalError("cannot read corpus-expected.json.gz: \(error)")
        }
    }()
}

struct Expected: Decodable {
    struct Line: Decodable {
        let ids: [Int]
        let decoded: String
    }
    struct Special: Decodable {
        let line: Int
        let idsNoSpecial: [Int]
        let decodedSkipSpecial: String
    }
    struct Document: Decodable {
        let name: String
        let text: String
        let ids: [Int]
        let decoded: String
    }
    struct Fuzz: Decodable {
        let text: String
        let ids: [Int]
    }
    struct Decode: Decodable {
        let ids: [Int]
        let decoded: String
        let decodedSkipSpecial: String
    }
    struct Normalization: Decodable {
        let text: String
        let nfc: String
    }
    let lineCount: Int
    let lines: [Line]
    let special: [Special]
    let documents: [Document]
    let fuzz: [Fuzz]
    let decode: [Decode]
    let normalization: [Normalization]
}

struct SyntheticCase: Decodable {
    let text: String
    let ids: [Int]
    let idsNoSpecial: [Int]
    let decoded: String
    let decodedSkipSpecial: String
}

/// Short, readable description of the first mismatches (instead of thousands of failed expectations).
func describeMismatches(_ mismatches: [String], limit: Int = 5) -> String {
    "\(mismatches.count) mismatches:\n" + mismatches.prefix(limit).joined(separator: "\n")
}

/// Swift's `==` on strings is canonical equivalence; tokenizer output must match scalar for scalar.
func identical(_ a: String, _ b: String) -> Bool {
    a.unicodeScalars.elementsEqual(b.unicodeScalars)
}
