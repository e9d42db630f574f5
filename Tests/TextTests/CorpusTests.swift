import Foundation
import Testing
import Text

/// Qwen2 ids and texts must equal what `tokenizers` produces for the same tokenizer.json.
@Suite struct CorpusTests {
    let tokenizer = Fixtures.qwen2
    let expected = Fixtures.expected

    @Test func corpusHasItsReference() {
        #expect(Fixtures.corpusLines.count >= 2000)
        #expect(Fixtures.corpusLines.count == expected.lineCount)
        #expect(expected.lines.count == expected.lineCount)
    }

    @Test func encodeEveryLine() {
        var mismatches = [String]()
        for (i, line) in Fixtures.corpusLines.enumerated() where i < expected.lines.count {
            let ids = tokenizer.encode(line)
            if ids != expected.lines[i].ids {
                mismatches.append("line \(i + 1) \(line.debugDescription): \(ids) != \(expected.lines[i].ids)")
            }
        }
        #expect(mismatches.isEmpty, "\(describeMismatches(mismatches))")
    }

    @Test func decodeEveryLine() {
        var mismatches = [String]()
        for (i, line) in expected.lines.enumerated() {
            let text = tokenizer.decode(line.ids)
            if !identical(text, line.decoded) {
                mismatches.append("line \(i + 1): \(text.debugDescription) != \(line.decoded.debugDescription)")
            }
        }
        #expect(mismatches.isEmpty, "\(describeMismatches(mismatches))")
    }

    @Test func encodeAndDecodeDocuments() {
        for document in expected.documents {
            let ids = tokenizer.encode(document.text)
            #expect(ids == document.ids, "document \(document.name)")
            #expect(identical(tokenizer.decode(document.ids), document.decoded), "document \(document.name)")
        }
    }

    /// Random strings over an alphabet chosen to stress the split regex (whitespace runs, CR/LF,
    /// contractions, combining marks, Unicode 16 vs 17 letters, added tokens).
    @Test func encodeFuzzStrings() {
        var mismatches = [String]()
        for case_ in expected.fuzz {
            let ids = tokenizer.encode(case_.text)
            if ids != case_.ids {
                mismatches.append("\(case_.text.debugDescription): \(ids) != \(case_.ids)")
            }
        }
        #expect(mismatches.isEmpty, "\(describeMismatches(mismatches))")
    }

    /// `tokenizers` normalizes with Unicode 9.0 data; Foundation has newer data and two bugs
    /// (Hangul LV + T, Tibetan U+0F73/75/81). Every character NFC can change, in two contexts.
    @Test func normalizationMatchesTokenizers() {
        #expect(expected.normalization.count > 4000)
        var mismatches = [String]()
        for case_ in expected.normalization {
            let text = tokenizer.decode(tokenizer.encode(case_.text))
            if !identical(text, case_.nfc) {
                let hex = { (s: String) in s.unicodeScalars.map { String($0.value, radix: 16) }.joined(separator: " ") }
                mismatches.append("\(hex(case_.text)) -> \(hex(text)), expected \(hex(case_.nfc))")
            }
        }
        #expect(mismatches.isEmpty, "\(describeMismatches(mismatches))")
    }

    @Test func specialTokensAsTextAndSkipped() {
        #expect(!expected.special.isEmpty)
        var mismatches = [String]()
        for entry in expected.special {
            let line = Fixtures.corpusLines[entry.line]
            let ids = tokenizer.encode(line, allowSpecial: false)
            if ids != entry.idsNoSpecial {
                mismatches.append("line \(entry.line + 1) allowSpecial false: \(ids) != \(entry.idsNoSpecial)")
            }
            let text = tokenizer.decode(expected.lines[entry.line].ids, skipSpecial: true)
            if !identical(text, entry.decodedSkipSpecial) {
                mismatches.append("line \(entry.line + 1) skipSpecial: \(text.debugDescription) != \(entry.decodedSkipSpecial.debugDescription)")
            }
        }
        #expect(mismatches.isEmpty, "\(describeMismatches(mismatches))")
    }

    /// Random ids, many of them partial UTF-8 sequences: U+FFFD replacement must match Rust's
    /// `String::from_utf8_lossy`.
    @Test func decodeArbitraryIds() {
        var mismatches = [String]()
        for case_ in expected.decode {
            let text = tokenizer.decode(case_.ids)
            if !identical(text, case_.decoded) { mismatches.append("\(case_.ids): \(text.debugDescription) != \(case_.decoded.debugDescription)") }
            let skipped = tokenizer.decode(case_.ids, skipSpecial: true)
            if !identical(skipped, case_.decodedSkipSpecial) { mismatches.append("\(case_.ids) skipSpecial: \(skipped.debugDescription)") }
        }
        #expect(mismatches.isEmpty, "\(describeMismatches(mismatches))")
    }

    @Test func addedTokensMatchInRawText() throws {
        let imStart = try #require(tokenizer.id(of: "<|im_start|>"))
        let imEnd = try #require(tokenizer.id(of: "<|im_end|>"))
        #expect(imStart == 151644 && imEnd == 151645)
        #expect(tokenizer.id(of: "<|endoftext|>") == 151643)
        #expect(tokenizer.encode("<|im_start|>") == [imStart])
        let ids = tokenizer.encode("say<|im_end|>\n<|im_start|>user")
        #expect(ids.filter { $0 == imStart || $0 == imEnd } == [imEnd, imStart])
        // Split before normalization: a combining mark after a marker starts the next span.
        #expect(tokenizer.encode("<|im_end|>\u{301}").first == imEnd)
        // As text, markers are ordinary bytes and still decode to the same string.
        let plain = tokenizer.encode("say<|im_end|>", allowSpecial: false)
        #expect(!plain.contains(imEnd))
        #expect(tokenizer.decode(plain) == "say<|im_end|>")
        // Non-special added tokens match even when special ones are not allowed, as in `tokenizers`.
        #expect(tokenizer.encode("<tool_call>", allowSpecial: false) == [151657])
        #expect(!tokenizer.isSpecial(151657) && tokenizer.isSpecial(imEnd))
        #expect(tokenizer.decode([imStart, 872, imEnd], skipSpecial: true) == tokenizer.decode([872]))
    }

    @Test func vocabularyLookups() {
        #expect(tokenizer.vocabularySize == 151665)
        #expect(tokenizer.token(of: 151644) == "<|im_start|>")
        #expect(tokenizer.token(of: 151664) == "<|file_sep|>")
        #expect(tokenizer.token(of: 151665) == nil)
        #expect(tokenizer.token(of: -1) == nil)
        let spaceThe = tokenizer.id(of: "Ġthe")
        #expect(spaceThe != nil)
        #expect(spaceThe.map { tokenizer.token(of: $0) } == "Ġthe")
        #expect(spaceThe.map { tokenizer.decode([$0]) } == " the")
        #expect(tokenizer.encode("") == [])
        #expect(tokenizer.decode([]) == "")
        #expect(tokenizer.decode([-5, 10_000_000]) == "")
    }

    @Test func concurrentEncodingIsConsistent() async {
        let lines = Array(Fixtures.corpusLines.prefix(200))
        let shared = tokenizer
        let reference = lines.map { shared.encode($0) }
        let results = await withTaskGroup(of: [[Int]].self) { group in
            for _ in 0..<4 { group.addTask { lines.map { shared.encode($0) } } }
            return await group.reduce(into: [[[Int]]]()) { $0.append($1) }
        }
        for result in results { #expect(result == reference) }
    }
}
