/// A token that is matched as a whole in the text before BPE runs (chat markers, tool tags...).
/// The flags mirror `tokenizers`' `AddedToken`, because they change where the token matches.
public struct AddedToken: Sendable, Equatable {
    public var id: Int
    public var content: String
    /// Special tokens are skipped by `decode(skipSpecial: true)` and, with `allowSpecial: false`,
    /// encoded as plain text.
    public var special: Bool
    /// Also absorb whitespace before the token.
    public var lstrip: Bool
    /// Also absorb whitespace after the token.
    public var rstrip: Bool
    /// Match only when not glued to word characters on either side.
    public var singleWord: Bool
    /// Match in the NFC-normalized text instead of the raw text.
    public var normalized: Bool

    public init(id: Int, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false,
                singleWord: Bool = false, normalized: Bool? = nil) {
        self.id = id
        self.content = content
        self.special = special
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.singleWord = singleWord
        self.normalized = normalized ?? !special
    }
}

/// The added tokens as `tokenizers` keeps them: later entries win when a content or an id is listed
/// twice; empty contents are dropped. `unique` is sorted by id.
func deduplicated(_ tokens: [AddedToken]) -> (unique: [AddedToken], byContent: [String: Int], byID: [Int: AddedToken]) {
    var byContent = [String: Int](), byID = [Int: AddedToken]()
    for token in tokens where !token.content.isEmpty {
        byContent[token.content] = token.id
        byID[token.id] = token
    }
    return (byID.values.sorted { $0.id < $1.id }, byContent, byID)
}

/// Finds added tokens in UTF-8 text with `tokenizers`' semantics: leftmost-longest matches scanned
/// left to right (its Aho-Corasick automaton), then filters (special tokens when not allowed,
/// `singleWord`) that drop a match without re-searching inside it, then `lstrip`/`rstrip`.
struct AddedTokenMatcher: Sendable {
    enum Segment {
        case text(Range<Int>)
        case token(Int)
    }

    private let tokens: [AddedToken]
    private let contents: [[UInt8]]
    /// Candidate token indices by first byte, longest first.
    private let byFirstByte: [[Int]]

    var isEmpty: Bool { tokens.isEmpty }

    init(_ tokens: [AddedToken]) {
        let usable = tokens.filter { !$0.content.isEmpty }
        self.tokens = usable
        contents = usable.map { Array($0.content.utf8) }
        var table = [[Int]](repeating: [], count: 256)
        for (i, bytes) in contents.enumerated() { table[Int(bytes[0])].append(i) }
        let contents = self.contents
        byFirstByte = table.map { $0.sorted { (contents[$0].count, $1) > (contents[$1].count, $0) } }
    }

    /// Splits `text` into plain-text ranges and added-token ids, in order, covering all of `text`
    /// except whitespace absorbed by `lstrip`/`rstrip`.
    func split(_ text: UnsafeBufferPointer<UInt8>, allowSpecial: Bool, _ emit: (Segment) -> Void) {
        let n = text.count
        var startOffset = 0
        var i = 0
        while i < n {
            let candidates = byFirstByte[Int(text[i])]
            guard !candidates.isEmpty, let k = candidates.first(where: { matches(contents[$0], text, at: i) }) else {
                i += 1
                continue
            }
            let token = tokens[k]
            var start = i
            var stop = i + contents[k].count
            i = stop
            if token.special && !allowSpecial { continue }
            if token.singleWord {
                let wordBefore = start > 0 && Self.isWordScalar(Self.scalar(before: start, in: text).value)
                let wordAfter = stop < n && Self.isWordScalar(Self.scalar(at: stop, in: text).value)
                if wordBefore || wordAfter { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0 {
                    let (scalar, length) = Self.scalar(before: s, in: text)
                    guard Self.isWhitespace(scalar) else { break }
                    s -= length
                }
                start = max(s, startOffset)
            }
            if token.rstrip {
                while stop < n {
                    let (scalar, length) = Self.scalar(at: stop, in: text)
                    guard Self.isWhitespace(scalar) else { break }
                    stop += length
                }
                i = stop
            }
            if startOffset < start { emit(.text(startOffset..<start)) }
            emit(.token(token.id))
            startOffset = stop
        }
        if startOffset < n { emit(.text(startOffset..<n)) }
    }

    private func matches(_ needle: [UInt8], _ text: UnsafeBufferPointer<UInt8>, at i: Int) -> Bool {
        guard i + needle.count <= text.count else { return false }
        for j in 1..<needle.count where text[i + j] != needle[j] { return false }
        return true
    }

    private static func isWhitespace(_ value: UInt32) -> Bool {
        Qwen2PreTokenizer.classify(value) & Qwen2PreTokenizer.space != 0
    }

    /// Rust `regex`'s `\w`, which `tokenizers` uses for `single_word`.
    private static func isWordScalar(_ value: UInt32) -> Bool {
        guard let scalar = Unicode.Scalar(value) else { return false }
        let p = scalar.properties
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation:
            return true
        default:
            return p.isAlphabetic || p.isJoinControl
        }
    }

    /// The scalar starting at byte `i`, and its length.
    private static func scalar(at i: Int, in text: UnsafeBufferPointer<UInt8>) -> (value: UInt32, length: Int) {
        let b0 = UInt32(text[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(text[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 {
            return ((b0 & 0x0F) << 12 | UInt32(text[i + 1] & 0x3F) << 6 | UInt32(text[i + 2] & 0x3F), 3)
        }
        return ((b0 & 0x07) << 18 | UInt32(text[i + 1] & 0x3F) << 12 | UInt32(text[i + 2] & 0x3F) << 6
                | UInt32(text[i + 3] & 0x3F), 4)
    }

    /// The scalar ending just before byte `i`, and its length.
    private static func scalar(before i: Int, in text: UnsafeBufferPointer<UInt8>) -> (value: UInt32, length: Int) {
        var s = i - 1
        while s > 0, text[s] & 0xC0 == 0x80 { s -= 1 }
        return (scalar(at: s, in: text).value, i - s)
    }
}
