import Foundation

/// NFC exactly as `tokenizers` computes it: with Unicode 9.0 data (its `unicode-normalization-
/// alignments` crate), where later characters are unassigned and so normalize to themselves and
/// block reordering and composition like any starter. Built on Foundation's NFC with two repairs.
enum NFC {
    /// Normalized `bytes` (valid UTF-8), or nil when they are already normalized. Any scalar below
    /// U+0300 is NFC-stable and never composes with a neighbour below U+0300, so text without a
    /// lead byte >= 0xCC (most text, by bytes) is returned as is.
    static func normalize(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        guard bytes.contains(where: { $0 >= 0xCC }) else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        // Normalize the runs between characters newer than Unicode 9.0 separately: for
        // `tokenizers` such a character is an inert starter, so NFC(a + x + b) = NFC(a) + x + NFC(b).
        var runStart = bytes.startIndex
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b0 = bytes[i]
            let length = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4
            if b0 >= 0xCC, let scalar = decode(bytes, at: i, length: length), !inUnicode9(scalar) {
                appendNormalized(bytes[runStart..<i], to: &out)
                out += bytes[i..<(i + length)]
                runStart = i + length
            }
            i += length
        }
        appendNormalized(bytes[runStart..<bytes.endIndex], to: &out)
        return out[...]
    }

    private static func appendNormalized(_ run: ArraySlice<UInt8>, to out: inout [UInt8]) {
        guard run.contains(where: { $0 >= 0xCC }) else {
            out += run
            return
        }
        var text = String(decoding: run, as: UTF8.self)
        // Foundation treats U+0F73, U+0F75 and U+0F81 (combining class 0, but decomposing to
        // non-starters) as starters and does not reorder marks around them. They are excluded from
        // composition, so spelling them decomposed first gives the same NFC, correctly ordered.
        if text.unicodeScalars.contains(where: { $0 == "\u{0F73}" || $0 == "\u{0F75}" || $0 == "\u{0F81}" }) {
            var view = String.UnicodeScalarView()
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\u{0F73}": view += ["\u{0F71}", "\u{0F72}"]
                case "\u{0F75}": view += ["\u{0F71}", "\u{0F74}"]
                case "\u{0F81}": view += ["\u{0F71}", "\u{0F80}"]
                default: view.append(scalar)
                }
            }
            text = String(view)
        }
        out += composeHangul(text.precomposedStringWithCanonicalMapping).utf8
    }

    private static func decode(_ bytes: ArraySlice<UInt8>, at i: Int, length: Int) -> Unicode.Scalar? {
        var v = UInt32(bytes[i]) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for k in 1..<length { v = v << 6 | UInt32(bytes[i + k] & 0x3F) }
        return Unicode.Scalar(v)
    }

    /// Whether `scalar` was assigned by Unicode 9.0 (fast paths for the big old blocks).
    private static func inUnicode9(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x3041...0x3096, 0x30A1...0x30FA, 0x4E00...0x9FD5, 0xAC00...0xD7A3:
            return true
        default:
            guard let age = scalar.properties.age else { return false }
            return age.major < 9 || (age.major == 9 && age.minor == 0)
        }
    }

    /// Foundation in Swift 6.3 leaves a precomposed LV syllable followed by a trailing jamo as is
    /// ("가" U+AC00 + "ᆨ" U+11A8 stays two scalars; NFC is "각" U+AC01). Hangul composition is
    /// algorithmic and jamo are starters, so composing adjacent pairs afterwards is exact.
    static func composeHangul(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { (0x1161...0x11C2).contains($0.value) }) else { return text }
        var scalars = [Unicode.Scalar]()
        scalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            let v = scalar.value
            if let last = scalars.last?.value {
                if (0x1100...0x1112).contains(last), (0x1161...0x1175).contains(v) {
                    scalars[scalars.count - 1] = Unicode.Scalar(0xAC00 + ((last - 0x1100) * 21 + (v - 0x1161)) * 28)!
                    continue
                }
                if (0xAC00...0xD7A3).contains(last), (last - 0xAC00) % 28 == 0, (0x11A8...0x11C2).contains(v) {
                    scalars[scalars.count - 1] = Unicode.Scalar(last + (v - 0x11A7))!
                    continue
                }
            }
            scalars.append(scalar)
        }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
