import Foundation
import Testing
import Text

@Suite struct StreamingDecoderTests {
    let tokenizer = Fixtures.qwen2

    private func stream(_ ids: [Int], skipSpecial: Bool = false) -> (chunks: [String], tail: String) {
        var decoder = tokenizer.streamingDecoder(skipSpecial: skipSpecial)
        let chunks = ids.map { decoder.push($0) }
        return (chunks, decoder.flush())
    }

    /// For valid text, the pieces add up to `decode` and no piece holds a broken character.
    @Test func corpusStreamsLikeDecode() {
        var mismatches = [String]()
        let texts = Fixtures.corpusLines + Fixtures.expected.documents.map(\.text)
        for text in texts {
            let ids = tokenizer.encode(text)
            let (chunks, tail) = stream(ids)
            let whole = tokenizer.decode(ids)
            if !identical(chunks.joined() + tail, whole) { mismatches.append("\(text.debugDescription): total differs") }
            if !tail.isEmpty { mismatches.append("\(text.debugDescription): bytes held back at the end") }
            if !whole.contains("\u{FFFD}"), chunks.contains(where: { $0.contains("\u{FFFD}") }) {
                mismatches.append("\(text.debugDescription): emitted U+FFFD")
            }
        }
        #expect(mismatches.isEmpty, "\(describeMismatches(mismatches))")
    }

    /// Arbitrary ids (invalid UTF-8 included): the total still equals `decode`, replacement
    /// characters included, with and without skipping special tokens.
    @Test func arbitraryIdsStreamLikeDecode() {
        for case_ in Fixtures.expected.decode {
            let (chunks, tail) = stream(case_.ids)
            #expect(identical(chunks.joined() + tail, case_.decoded), "\(case_.ids)")
            let skipped = stream(case_.ids, skipSpecial: true)
            #expect(identical(skipped.chunks.joined() + skipped.tail, case_.decodedSkipSpecial), "\(case_.ids)")
        }
    }

    @Test func emojiAndCJKSplitAcrossTokens() throws {
        var splitTexts = 0
        for text in ["👨‍👩‍👧‍👦 family", "👍🏽", "中文字符測試", "龘靐齉爩", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "𒀀𒀁", "🫠🦀"] {
            let ids = tokenizer.encode(text)
            if ids.contains(where: { tokenizer.decode([$0]).contains("\u{FFFD}") }) { splitTexts += 1 }
            let (chunks, tail) = stream(ids)
            #expect(identical(chunks.joined(), text))
            #expect(tail.isEmpty)
            #expect(!chunks.contains { $0.contains("\u{FFFD}") })
        }
        // Most of these have a token that ends inside a character.
        #expect(splitTexts >= 4)
    }

    @Test func bytesOfOneCharacterArriveOneByOne() throws {
        // "中" is E4 B8 AD; byte tokens are spelled with GPT-2's byte characters.
        let byteTokens = try ["ä", "¸", "Ń"].map { try #require(tokenizer.id(of: $0)) }
        var decoder = tokenizer.streamingDecoder()
        #expect(decoder.push(byteTokens[0]) == "")
        #expect(decoder.hasPendingBytes)
        #expect(decoder.push(byteTokens[1]) == "")
        #expect(decoder.push(byteTokens[2]) == "中")
        #expect(!decoder.hasPendingBytes)
        // An unfinished character is replaced only when the stream ends...
        #expect(decoder.push(byteTokens[0]) == "")
        #expect(decoder.flush() == "\u{FFFD}")
        // ...or when the next byte cannot continue it.
        let a = try #require(tokenizer.id(of: "a"))
        #expect(decoder.push(byteTokens[0]) == "")
        #expect(decoder.push(a) == "\u{FFFD}a")
    }

    @Test func specialTokensCanBeSkipped() throws {
        let imEnd = try #require(tokenizer.id(of: "<|im_end|>"))
        let ids = tokenizer.encode("Hi") + [imEnd]
        #expect(stream(ids).chunks.joined() == "Hi<|im_end|>")
        #expect(stream(ids, skipSpecial: true).chunks.joined() == "Hi")
    }
}
