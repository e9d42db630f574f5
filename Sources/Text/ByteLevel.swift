/// GPT-2's byte <-> character mapping. Byte-level BPE vocabularies store tokens as strings of these
/// characters so that every byte sequence, including invalid UTF-8, has a printable spelling.
enum ByteLevel {
    /// `characters[b]` spells byte `b`: printable Latin-1 bytes stand for themselves, the other 68
    /// bytes are moved to U+0100... in byte order.
    static let characters: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `characters`, indexed by scalar value (all values are below 0x144); -1 where unmapped.
    static let bytes: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, scalar) in characters.enumerated() { table[Int(scalar.value)] = Int16(b) }
        return table
    }()

    /// The byte-level spelling of `bytes`.
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var scalars = String.UnicodeScalarView()
        for b in bytes { scalars.append(characters[Int(b)]) }
        return String(scalars)
    }

    /// The bytes a token string stands for. Tokens containing characters outside the mapping (added
    /// tokens such as "<|im_start|>" are fine, a literal "中" is not) decode to their own UTF-8, as
    /// the `tokenizers` ByteLevel decoder does.
    static func decode(_ token: String) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(token.utf8.count)
        for scalar in token.unicodeScalars {
            let v = Int(scalar.value)
            guard v < Self.bytes.count, Self.bytes[v] >= 0 else { return Array(token.utf8) }
            out.append(UInt8(Self.bytes[v]))
        }
        return out
    }
}
