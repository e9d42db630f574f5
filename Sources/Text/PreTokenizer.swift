/// Qwen2's pre-tokenizer: the split regex below, hand-compiled into a scanner. Swift `Regex` is far
/// too slow for megabytes of text, and the scanner lets us pin down exactly the Oniguruma semantics
/// `tokenizers` uses (leftmost-first alternation, the `\s+(?!\S)` backtrack, Unicode 16 classes).
enum Qwen2PreTokenizer {
    /// The split pattern of Qwen2's `tokenizer.json`; loaders accept only this pattern.
    static let pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    // Class bits of one scalar.
    static let letter: UInt8 = 1   // \p{L}
    static let number: UInt8 = 2   // \p{N}
    static let space: UInt8 = 4    // \s
    static let newline: UInt8 = 8  // [\r\n] (also `space`)

    /// Classes of the Basic Multilingual Plane, filled from the generated Oniguruma ranges.
    static let bmpClasses: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 0x10000)
        func fill(_ ranges: [UInt32], _ bit: UInt8) {
            var k = 0
            while k < ranges.count {
                let lo = ranges[k], hi = min(ranges[k + 1], 0xFFFF)
                if lo <= hi { for v in lo...hi { table[Int(v)] |= bit } }
                k += 2
            }
        }
        fill(letterRanges, letter)
        fill(numberRanges, number)
        fill(whitespaceRanges, space)
        table[0x0A] |= newline
        table[0x0D] |= newline
        return table
    }()

    @inline(__always)
    static func classify(_ v: UInt32) -> UInt8 {
        if v < 0x10000 { return bmpClasses[Int(v)] }
        var c: UInt8 = 0
        if contains(letterRanges, v) { c |= letter }
        if contains(numberRanges, v) { c |= number }
        if contains(whitespaceRanges, v) { c |= space }
        return c
    }

    /// Binary search in flattened inclusive ranges.
    static func contains(_ ranges: [UInt32], _ v: UInt32) -> Bool {
        var lo = 0, hi = ranges.count / 2  // search pairs [lo, hi)
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[2 * mid + 1] < v { lo = mid + 1 } else { hi = mid }
        }
        return lo < ranges.count / 2 && ranges[2 * lo] <= v
    }

    /// Calls `emit(start, end)` with the UTF-8 byte range of each piece of `bytes` (valid UTF-8),
    /// in order. Pieces cover the input exactly; none is empty.
    static func split(_ bytes: UnsafeBufferPointer<UInt8>, _ emit: (Int, Int) -> Void) {
        let count = bytes.count
        guard count > 0 else { return }
        // Decode once: scalar values, classes and byte offsets (offsets[n] == count).
        var values = [UInt32](), classes = [UInt8](), offsets = [Int]()
        values.reserveCapacity(count)
        classes.reserveCapacity(count)
        offsets.reserveCapacity(count + 1)
        var i = 0
        while i < count {
            let b0 = UInt32(bytes[i])
            var v: UInt32
            var len: Int
            if b0 < 0x80 {
                v = b0; len = 1
            } else if b0 < 0xE0 {
                v = (b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F); len = 2
            } else if b0 < 0xF0 {
                v = (b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F)
                len = 3
            } else {
                v = (b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12
                    | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F)
                len = 4
            }
            values.append(v)
            classes.append(classify(v))
            offsets.append(i)
            i += len
        }
        offsets.append(count)
        values.withUnsafeBufferPointer { vals in
            classes.withUnsafeBufferPointer { cls in
                var p = 0
                while p < vals.count {
                    let q = pieceEnd(at: p, vals, cls)
                    emit(offsets[p], offsets[q])
                    p = q
                }
            }
        }
    }

    /// ASCII lowercase of a scalar for the case-insensitive contraction branch; U+017F LATIN SMALL
    /// LETTER LONG S case-folds to "s" in Oniguruma, so "'ſ" is a contraction too. 0 otherwise.
    @inline(__always)
    private static func folded(_ v: UInt32) -> UInt32 {
        if v >= 0x61 && v <= 0x7A { return v }
        if v >= 0x41 && v <= 0x5A { return v + 0x20 }
        return v == 0x17F ? 0x73 : 0
    }

    /// End (exclusive, in scalars) of the regex match starting at `p`; every scalar starts a match.
    @inline(__always)
    static func pieceEnd(at p: Int, _ vals: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<UInt8>) -> Int {
        let n = vals.count
        let v = vals[p], c = cls[p]

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if v == 0x27, p + 1 < n {
            switch folded(vals[p + 1]) {
            case 0x73, 0x74, 0x6D, 0x64:  // s t m d
                return p + 2
            case 0x72, 0x76:  // r v, then e
                if p + 2 < n, folded(vals[p + 2]) == 0x65 { return p + 3 }
            case 0x6C:  // l, then l
                if p + 2 < n, folded(vals[p + 2]) == 0x6C { return p + 3 }
            default:
                break
            }
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        var q = -1
        if c & letter != 0 {
            q = p + 1
        } else if c & (letter | number | newline) == 0, p + 1 < n, cls[p + 1] & letter != 0 {
            q = p + 2
        }
        if q >= 0 {
            while q < n, cls[q] & letter != 0 { q += 1 }
            return q
        }

        // \p{N}
        if c & number != 0 { return p + 1 }

        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let symbolMask = letter | number | space
        q = p
        if v == 0x20, p + 1 < n, cls[p + 1] & symbolMask == 0 { q = p + 1 }
        if cls[q] & symbolMask == 0 {
            while q < n, cls[q] & symbolMask == 0 { q += 1 }
            while q < n, cls[q] & newline != 0 { q += 1 }
            return q
        }

        // Only whitespace is left. Let [p, end) be the whole run.
        var end = p + 1
        var lastNewline = c & newline != 0 ? p : -1
        while end < n, cls[end] & space != 0 {
            if cls[end] & newline != 0 { lastNewline = end }
            end += 1
        }
        // \s*[\r\n]+ : backtracks to just after the run's last CR/LF.
        if lastNewline >= 0 { return lastNewline + 1 }
        // \s+(?!\S) : the whole run at the end of the text, else all but its last scalar.
        if end == n { return end }
        if end - p >= 2 { return end - 1 }
        // \s+
        return end
    }
}
