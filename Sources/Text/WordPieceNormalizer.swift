/// Character classes and mappings of the BERT pipeline as `tokenizers` computes them, from the
/// generated `WordPieceTables.swift`: one flags word per code point (a two-level table) plus the
/// decomposition, lowercase and combining-class maps.
struct BertCharacters: Sendable {
    static let control: UInt16 = 1 << 0        // removed by clean_text
    static let cleanSpace: UInt16 = 1 << 1     // becomes " " in clean_text
    static let chinese: UInt16 = 1 << 2        // padded with spaces by handle_chinese_chars
    static let combiningMark: UInt16 = 1 << 3  // dropped by StripAccents
    static let bertMark: UInt16 = 1 << 9       // dropped by BertNormalizer's strip_accents (after NFD)
    static let punctuation: UInt16 = 1 << 4    // isolated by BertPreTokenizer
    static let whitespace: UInt16 = 1 << 5     // split on by BertPreTokenizer / WhitespaceSplit
    static let decomposes: UInt16 = 1 << 6     // NFD changes it
    static let lowercases: UInt16 = 1 << 7     // Lowercase changes it
    static let nonStarter: UInt16 = 1 << 8     // canonical combining class > 0 (for NFD ordering)

    /// Flags of code point `v` are `blocks[Int(index[v >> 8]) << 8 | v & 0xFF]`.
    let index: [UInt16]
    let blocks: [UInt16]
    let decompositions: [UInt32: [UInt32]]
    let lowercase: [UInt32: [UInt32]]
    let combiningClass: [UInt32: UInt8]

    static let shared = BertCharacters()

    private init() {
        var flat = [UInt16](repeating: 0, count: 0x110000)
        func fill(_ ranges: [UInt32], _ bit: UInt16) {
            var k = 0
            while k + 1 < ranges.count {
                for v in ranges[k]...ranges[k + 1] { flat[Int(v)] |= bit }
                k += 2
            }
        }
        fill(bertControlRanges, Self.control)
        fill(bertCleanSpaceRanges, Self.cleanSpace)
        fill(bertChineseRanges, Self.chinese)
        fill(combiningMarkRanges, Self.combiningMark)
        fill(bertNonspacingMarkRanges, Self.bertMark)
        fill(bertPunctuationRanges, Self.punctuation)
        fill(bertWhitespaceRanges, Self.whitespace)
        fill([0xAC00, 0xD7A3], Self.decomposes)  // Hangul syllables, decomposed arithmetically
        var classes = [UInt32: UInt8]()
        for (ccc, ranges) in combiningClassRanges {
            fill(ranges, Self.nonStarter)
            var k = 0
            while k + 1 < ranges.count {
                for v in ranges[k]...ranges[k + 1] { classes[v] = ccc }
                k += 2
            }
        }
        combiningClass = classes
        let decompositions = Self.parseMapping(canonicalDecompositionTable)
        for v in decompositions.keys { flat[Int(v)] |= Self.decomposes }
        self.decompositions = decompositions
        let lowercase = Self.parseMapping(lowercaseTable)
        for v in lowercase.keys { flat[Int(v)] |= Self.lowercases }
        self.lowercase = lowercase

        // Share identical 256-code-point blocks (most of the code space is all zeros).
        var index = [UInt16](), blocks = [UInt16](), seen = [ArraySlice<UInt16>: UInt16]()
        index.reserveCapacity(0x1100)
        for start in stride(from: 0, to: 0x110000, by: 256) {
            let block = flat[start..<(start + 256)]
            if let id = seen[block] {
                index.append(id)
            } else {
                let id = UInt16(blocks.count / 256)
                seen[block] = id
                blocks += block
                index.append(id)
            }
        }
        self.index = index
        self.blocks = blocks
    }

    /// Parses `"C0:41 300;C1:41 301;..."` (hex; whitespace between entries ignored).
    private static func parseMapping(_ table: String) -> [UInt32: [UInt32]] {
        var map = [UInt32: [UInt32]]()
        for entry in table.split(separator: ";") {
            let parts = entry.split(separator: ":")
            guard parts.count == 2,
                  let key = UInt32(parts[0].trimmingCharacters(in: .whitespacesAndNewlines), radix: 16) else { continue }
            map[key] = parts[1].split(separator: " ").compactMap { UInt32($0, radix: 16) }
        }
        return map
    }

    @inline(__always)
    func flags(_ v: UInt32) -> UInt16 {
        guard v < 0x110000 else { return 0 }
        return blocks[Int(index[Int(v >> 8)]) << 8 | Int(v & 0xFF)]
    }
}

/// One normalizer of a `tokenizer.json`, as `tokenizers` applies it.
enum WordPieceNormalizerStep: Sendable, Equatable {
    /// BertNormalizer: clean_text, handle_chinese_chars, strip_accents (NFD then drop non-spacing
    /// marks), lowercase, in that order.
    case bert(cleanText: Bool, chineseChars: Bool, stripAccents: Bool, lowercase: Bool)
    /// Lowercase (Rust's `char::to_lowercase`, one character at a time: no final-sigma rule).
    case lowercase
    /// StripAccents: drops combining marks only (pair it with NFD to remove accents).
    case stripAccents
    /// NFD with Unicode 9.0 data.
    case nfd
    /// NFC with Unicode 9.0 data.
    case nfc
}

/// A normalizer pipeline over UTF-8 bytes.
struct WordPieceNormalizer: Sendable {
    let steps: [WordPieceNormalizerStep]

    /// Normalized `input` (valid UTF-8).
    func normalize(_ input: ArraySlice<UInt8>) -> [UInt8] {
        guard !steps.isEmpty else { return Array(input) }
        let chars = BertCharacters.shared
        var current = input
        var output = [UInt8]()
        for step in steps {
            output = [UInt8]()
            output.reserveCapacity(current.count + current.count / 8 + 8)
            switch step {
            case let .bert(clean, chinese, strip, lower):
                if !Self.bert(current, clean: clean, chinese: chinese, strip: strip, lower: lower, chars, into: &output) {
                    output = Self.bertReordering(current, clean: clean, chinese: chinese, lower: lower, chars)
                }
            case .lowercase:
                _ = Self.bert(current, clean: false, chinese: false, strip: false, lower: true, chars, into: &output)
            case .stripAccents:
                Self.dropMarks(current, BertCharacters.combiningMark, chars, into: &output)
            case .nfd:
                Self.nfd(current, chars, into: &output)
            case .nfc:
                if let normalized = NFC.normalize(current) { output += normalized } else { output += current }
            }
            current = output[...]
        }
        return output
    }

    /// BertNormalizer in one pass. Stripping accents is NFD followed by dropping non-spacing marks;
    /// NFD's canonical reordering only matters when a non-starter survives (one `tokenizers`'
    /// Unicode 9.0 NFD knows but its older "non-spacing mark" table does not, such as U+08D4 or
    /// U+302E), and then this returns false and the caller takes `bertReordering`.
    private static func bert(_ input: ArraySlice<UInt8>, clean: Bool, chinese: Bool, strip: Bool, lower: Bool,
                             _ chars: BertCharacters, into out: inout [UInt8]) -> Bool {
        var ordered = true
        input.withUnsafeBufferPointer { bytes in
            var i = 0
            let n = bytes.count
            while i < n {
                let b0 = bytes[i]
                // ASCII: no decompositions or marks; the flags decide removal and spaces.
                if b0 < 0x80 {
                    i += 1
                    var v = UInt32(b0)
                    if clean {
                        let f = chars.flags(v)
                        if f & BertCharacters.control != 0 { continue }
                        if f & BertCharacters.cleanSpace != 0 { v = 0x20 }
                    }
                    if lower && v >= 0x41 && v <= 0x5A { v += 0x20 }
                    out.append(UInt8(v))
                    continue
                }
                let (v, length) = decodeUTF8(bytes, at: i)
                i += length
                let f = chars.flags(v)
                if clean {
                    if f & BertCharacters.control != 0 { continue }
                    if f & BertCharacters.cleanSpace != 0 {
                        out.append(0x20)
                        continue
                    }
                }
                let padded = chinese && f & BertCharacters.chinese != 0
                if padded { out.append(0x20) }
                if strip && f & BertCharacters.decomposes != 0 {
                    forEachDecomposed(v, chars) { d in
                        let g = chars.flags(d)
                        if g & BertCharacters.bertMark == 0 {
                            if g & BertCharacters.nonStarter != 0 { ordered = false }
                            appendLowered(d, g, lower: lower, chars, into: &out)
                        }
                    }
                } else if !(strip && f & BertCharacters.bertMark != 0) {
                    if strip && f & BertCharacters.nonStarter != 0 { ordered = false }
                    appendLowered(v, f, lower: lower, chars, into: &out)
                }
                if padded { out.append(0x20) }
            }
        }
        return ordered
    }

    /// BertNormalizer with strip_accents, step by step: clean_text and Chinese characters, NFD
    /// with canonical reordering, non-spacing marks dropped, then lowercase.
    private static func bertReordering(_ input: ArraySlice<UInt8>, clean: Bool, chinese: Bool, lower: Bool,
                                       _ chars: BertCharacters) -> [UInt8] {
        var spaced = [UInt8](), decomposed = [UInt8](), stripped = [UInt8]()
        _ = bert(input, clean: clean, chinese: chinese, strip: false, lower: false, chars, into: &spaced)
        nfd(spaced[...], chars, into: &decomposed)
        dropMarks(decomposed[...], BertCharacters.bertMark, chars, into: &stripped)
        guard lower else { return stripped }
        var lowered = [UInt8]()
        _ = bert(stripped[...], clean: false, chinese: false, strip: false, lower: true, chars, into: &lowered)
        return lowered
    }

    @inline(__always)
    private static func appendLowered(_ v: UInt32, _ f: UInt16, lower: Bool, _ chars: BertCharacters,
                                      into out: inout [UInt8]) {
        if lower && f & BertCharacters.lowercases != 0, let mapped = chars.lowercase[v] {
            for m in mapped { appendUTF8(m, to: &out) }
        } else {
            appendUTF8(v, to: &out)
        }
    }

    /// Calls `body` with each scalar of the full canonical decomposition of `v`.
    @inline(__always)
    private static func forEachDecomposed(_ v: UInt32, _ chars: BertCharacters, _ body: (UInt32) -> Void) {
        if v >= 0xAC00 && v <= 0xD7A3 {
            let s = v - 0xAC00
            body(0x1100 + s / 588)
            body(0x1161 + s % 588 / 28)
            if s % 28 != 0 { body(0x11A7 + s % 28) }
        } else if let mapped = chars.decompositions[v] {
            for d in mapped { body(d) }
        } else {
            body(v)
        }
    }

    private static func dropMarks(_ input: ArraySlice<UInt8>, _ mark: UInt16, _ chars: BertCharacters,
                                  into out: inout [UInt8]) {
        input.withUnsafeBufferPointer { bytes in
            var i = 0
            while i < bytes.count {
                let (v, length) = decodeUTF8(bytes, at: i)
                if v >= 0x80 && chars.flags(v) & mark != 0 {
                    i += length
                    continue
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[i..<(i + length)]))
                i += length
            }
        }
    }

    /// NFD: full decompositions, then each run of non-starters stably sorted by combining class.
    private static func nfd(_ input: ArraySlice<UInt8>, _ chars: BertCharacters, into out: inout [UInt8]) {
        var scalars = [UInt32]()
        scalars.reserveCapacity(input.count)
        var needsOrdering = false
        var previousNonStarter = false
        input.withUnsafeBufferPointer { bytes in
            var i = 0
            while i < bytes.count {
                let (v, length) = decodeUTF8(bytes, at: i)
                i += length
                let f = chars.flags(v)
                if f & BertCharacters.decomposes != 0 {
                    forEachDecomposed(v, chars) { d in
                        let nonStarter = chars.flags(d) & BertCharacters.nonStarter != 0
                        if nonStarter && previousNonStarter { needsOrdering = true }
                        previousNonStarter = nonStarter
                        scalars.append(d)
                    }
                } else {
                    let nonStarter = f & BertCharacters.nonStarter != 0
                    if nonStarter && previousNonStarter { needsOrdering = true }
                    previousNonStarter = nonStarter
                    scalars.append(v)
                }
            }
        }
        if needsOrdering {
            var k = 0
            while k < scalars.count {
                guard let _ = chars.combiningClass[scalars[k]] else {
                    k += 1
                    continue
                }
                var end = k + 1
                while end < scalars.count, chars.combiningClass[scalars[end]] != nil { end += 1 }
                if end - k > 1 {
                    // Insertion sort: stable, and runs are short.
                    for a in (k + 1)..<end {
                        let x = scalars[a], cx = chars.combiningClass[x]!
                        var b = a
                        while b > k, chars.combiningClass[scalars[b - 1]]! > cx {
                            scalars[b] = scalars[b - 1]
                            b -= 1
                        }
                        scalars[b] = x
                    }
                }
                k = end
            }
        }
        for v in scalars { appendUTF8(v, to: &out) }
    }
}

// MARK: - UTF-8

/// The scalar starting at byte `i` of valid UTF-8, and its length in bytes.
@inline(__always)
func decodeUTF8(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (UInt32, Int) {
    let b0 = UInt32(bytes[i])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F), 2) }
    if b0 < 0xF0 {
        return ((b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F), 3)
    }
    return ((b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6
            | UInt32(bytes[i + 3] & 0x3F), 4)
}

@inline(__always)
func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
    if v < 0x80 {
        out.append(UInt8(v))
    } else if v < 0x800 {
        out.append(UInt8(0xC0 | v >> 6))
        out.append(UInt8(0x80 | v & 0x3F))
    } else if v < 0x10000 {
        out.append(UInt8(0xE0 | v >> 12))
        out.append(UInt8(0x80 | v >> 6 & 0x3F))
        out.append(UInt8(0x80 | v & 0x3F))
    } else {
        out.append(UInt8(0xF0 | v >> 18))
        out.append(UInt8(0x80 | v >> 12 & 0x3F))
        out.append(UInt8(0x80 | v >> 6 & 0x3F))
        out.append(UInt8(0x80 | v & 0x3F))
    }
}
