/// Turns ids into text as they are generated. A token can end in the middle of a UTF-8 character
/// (an emoji or CJK character often spans two tokens), so the decoder holds back a trailing
/// incomplete sequence until the next token completes it, instead of printing U+FFFD.
/// The concatenation of everything `push` and `flush` return equals `decode` of all the ids.
public struct StreamingDecoder: Sendable {
    public let tokenizer: Qwen2Tokenizer
    public let skipSpecial: Bool
    private var pending: [UInt8] = []

    public init(tokenizer: Qwen2Tokenizer, skipSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
    }

    /// Whether bytes are held back waiting for the rest of a character.
    public var hasPendingBytes: Bool { !pending.isEmpty }

    /// Adds one id; returns the text completed by it (possibly empty).
    public mutating func push(_ id: Int) -> String {
        tokenizer.appendBytes(of: id, skipSpecial: skipSpecial, to: &pending)
        let complete = Self.completePrefixLength(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Adds several ids; returns the text completed by them.
    public mutating func push<S: Sequence>(contentsOf ids: S) -> String where S.Element == Int {
        var text = ""
        for id in ids { text += push(id) }
        return text
    }

    /// Ends the stream: held-back bytes can no longer complete and become U+FFFD.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix of `bytes` that later bytes cannot change: everything except a
    /// trailing sequence that is a valid but unfinished UTF-8 character. Decoding stops being
    /// affected at a lead byte, so decoding the prefix alone gives what decoding the whole would.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        let lowest = max(0, n - 3)
        var k = n - 1
        while k >= lowest, bytes[k] & 0xC0 == 0x80 { k -= 1 }
        guard k >= lowest else { return n }  // no lead byte in the last 3 bytes
        let lead = bytes[k]
        let length: Int
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0...0xEF: length = 3
        case 0xF0...0xF4: length = 4
        default: return n  // ASCII or a byte that never starts a character
        }
        guard n - k < length else { return n }
        if n - k >= 2 {
            // Second-byte limits that exclude overlongs, surrogates and values above U+10FFFF.
            let second = bytes[k + 1]
            switch lead {
            case 0xE0 where second < 0xA0, 0xED where second > 0x9F,
                 0xF0 where second < 0x90, 0xF4 where second > 0x8F:
                return n
            default:
                break
            }
        }
        return k
    }
}
