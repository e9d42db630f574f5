/// Splits normalized text into words: on whitespace (removed) and around punctuation (each
/// punctuation character its own word), with `tokenizers`' classes. BertPreTokenizer does both;
/// WhitespaceSplit only the first; no pre-tokenizer neither (the whole text is one word).
struct WordPiecePreTokenizer: Sendable, Equatable {
    var splitsOnWhitespace: Bool
    var isolatesPunctuation: Bool

    /// Calls `emit(start, end)` with the byte range of each word of `bytes` (valid UTF-8), in order.
    func split(_ bytes: UnsafeBufferPointer<UInt8>, _ emit: (Int, Int) -> Void) {
        let n = bytes.count
        guard n > 0 else { return }
        guard splitsOnWhitespace || isolatesPunctuation else {
            emit(0, n)
            return
        }
        let chars = BertCharacters.shared
        var mask: UInt16 = 0
        if splitsOnWhitespace { mask |= BertCharacters.whitespace }
        if isolatesPunctuation { mask |= BertCharacters.punctuation }
        var wordStart = 0
        var i = 0
        while i < n {
            let b0 = bytes[i]
            let v: UInt32, length: Int
            if b0 < 0x80 {
                v = UInt32(b0)
                length = 1
                // Letters and digits are never split; skip the table.
                if (b0 >= 0x61 && b0 <= 0x7A) || (b0 >= 0x41 && b0 <= 0x5A) || (b0 >= 0x30 && b0 <= 0x39) {
                    i += 1
                    continue
                }
            } else {
                (v, length) = decodeUTF8(bytes, at: i)
            }
            let f = chars.flags(v) & mask
            if f == 0 {
                i += length
                continue
            }
            if wordStart < i { emit(wordStart, i) }
            if f & BertCharacters.whitespace == 0 { emit(i, i + length) }  // punctuation
            i += length
            wordStart = i
        }
        if wordStart < n { emit(wordStart, n) }
    }
}

/// Vocabulary entries as a byte trie, for WordPiece's "longest entry the text starts with".
/// Transitions live in one open-addressing hash table keyed by (node, byte).
struct ByteTrie: Sendable {
    /// `(node << 8 | byte) + 1` per slot; 0 marks an empty slot.
    private let keys: [UInt64]
    private let children: [Int32]
    /// Token id ending at each node, or -1.
    private let values: [Int32]
    private let shift: UInt64

    init(_ entries: [(bytes: [UInt8], id: Int)]) {
        let transitions = entries.reduce(0) { $0 + $1.bytes.count }
        var capacity = 16
        while capacity < 2 * transitions + 1 { capacity <<= 1 }
        var keys = [UInt64](repeating: 0, count: capacity)
        var children = [Int32](repeating: -1, count: capacity)
        var values: [Int32] = [-1]
        let shift = UInt64(64 - capacity.trailingZeroBitCount)
        let mask = capacity - 1
        for (bytes, id) in entries where !bytes.isEmpty {
            var node: Int32 = 0
            for b in bytes {
                let key = (UInt64(node) << 8 | UInt64(b)) + 1
                var slot = Int((key &* 0x9E37_79B9_7F4A_7C15) >> shift)
                while keys[slot] != 0 && keys[slot] != key { slot = (slot + 1) & mask }
                if keys[slot] == 0 {
                    keys[slot] = key
                    children[slot] = Int32(values.count)
                    values.append(-1)
                }
                node = children[slot]
            }
            values[Int(node)] = Int32(id)
        }
        self.keys = keys
        self.children = children
        self.values = values
        self.shift = shift
    }

    /// The id and end of the longest entry that `text[start...]` starts with.
    @inline(__always)
    func longestPrefix(_ text: UnsafeBufferPointer<UInt8>, from start: Int) -> (id: Int, end: Int)? {
        keys.withUnsafeBufferPointer { keys in
            children.withUnsafeBufferPointer { children in
                values.withUnsafeBufferPointer { values in
                    let mask = keys.count - 1
                    var node: Int32 = 0
                    var best: (id: Int, end: Int)?
                    var i = start
                    while i < text.count {
                        let key = (UInt64(node) << 8 | UInt64(text[i])) + 1
                        var slot = Int((key &* 0x9E37_79B9_7F4A_7C15) >> shift)
                        while keys[slot] != key {
                            if keys[slot] == 0 { return best }
                            slot = (slot + 1) & mask
                        }
                        node = children[slot]
                        i += 1
                        let id = values[Int(node)]
                        if id >= 0 { best = (Int(id), i) }
                    }
                    return best
                }
            }
        }
    }
}

/// The WordPiece model of `tokenizers`: each word becomes the longest vocabulary entry it starts
/// with, then the longest entry (spelled with the continuing-subword prefix) the rest starts
/// with, and so on; a word longer than `maxInputCharsPerWord` characters, or with a remainder no
/// entry starts, becomes the single unknown token.
struct WordPieceModel: Sendable {
    let head: ByteTrie
    let continuation: ByteTrie
    let unknownID: Int
    let maxInputCharsPerWord: Int

    init(vocab: [String: Int], prefix: String, unknownID: Int, maxInputCharsPerWord: Int) {
        var heads = [(bytes: [UInt8], id: Int)](), continuations = [(bytes: [UInt8], id: Int)]()
        heads.reserveCapacity(vocab.count)
        let prefixBytes = Array(prefix.utf8)
        // Sorted so that the trie layout does not depend on dictionary order.
        for (token, id) in vocab.sorted(by: { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }) {
            let bytes = Array(token.utf8)
            heads.append((bytes, id))
            if bytes.count > prefixBytes.count, bytes.starts(with: prefixBytes) {
                continuations.append((Array(bytes[prefixBytes.count...]), id))
            }
        }
        head = ByteTrie(heads)
        continuation = ByteTrie(continuations)
        self.unknownID = unknownID
        self.maxInputCharsPerWord = maxInputCharsPerWord
    }

    /// Appends the ids of one word (normalized UTF-8) to `out`.
    func encode(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int]) {
        guard !word.isEmpty else { return }
        var chars = 0
        for b in word where b & 0xC0 != 0x80 { chars += 1 }
        if chars > maxInputCharsPerWord {
            out.append(unknownID)
            return
        }
        let mark = out.count
        var start = 0
        while start < word.count {
            guard let (id, end) = (start == 0 ? head : continuation).longestPrefix(word, from: start) else {
                out.removeSubrange(mark...)
                out.append(unknownID)
                return
            }
            out.append(id)
            start = end
        }
    }
}
