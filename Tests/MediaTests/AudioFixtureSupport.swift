import Foundation

/// Fixtures of the audio tests (tools/reference/audio_io.py). Everything lives in this namespace so that the
/// image tests' helpers in the same module keep their plain names.
enum AudioFixtures {
    /// Tests/Fixtures, found from this file's path.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ name: String) -> URL { directory.appendingPathComponent("audio/\(name)") }
    static func data(_ name: String) throws -> Data { try Data(contentsOf: url(name)) }

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Minimal safetensors reader for the F32 / F64 / I64 reference tensors.
    struct Reference {
        struct Entry { let dtype: String; let shape: [Int]; let range: Range<Int> }
        let data: Data
        let entries: [String: Entry]
        let base: Int

        init(_ name: String) throws {
            data = try Data(contentsOf: directory.appendingPathComponent("reference/\(name)"))
            guard data.count >= 8 else { throw Failure(description: "\(name): too short") }
            let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            guard 8 + n <= data.count,
                  let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any]
            else { throw Failure(description: "\(name): bad header") }
            var entries: [String: Entry] = [:]
            for (key, value) in json where key != "__metadata__" {
                guard let v = value as? [String: Any], let dtype = v["dtype"] as? String,
                      let shape = v["shape"] as? [Int], let offsets = v["data_offsets"] as? [Int], offsets.count == 2
                else { throw Failure(description: "\(name): bad entry \(key)") }
                entries[key] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
            }
            self.entries = entries
            base = 8 + n
        }

        func has(_ key: String) -> Bool { entries[key] != nil }

        func shape(_ key: String) throws -> [Int] {
            guard let e = entries[key] else { throw Failure(description: "missing tensor \(key)") }
            return e.shape
        }

        private func raw(_ key: String, _ dtype: String) throws -> Data {
            guard let e = entries[key] else { throw Failure(description: "missing tensor \(key)") }
            guard e.dtype == dtype else { throw Failure(description: "\(key) is \(e.dtype), expected \(dtype)") }
            return data[(base + e.range.lowerBound)..<(base + e.range.upperBound)]
        }

        func float32(_ key: String) throws -> [Float] {
            let d = try raw(key, "F32")
            return d.withUnsafeBytes { p in
                (0..<(d.count / 4)).map { Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }

        func float64(_ key: String) throws -> [Double] {
            let d = try raw(key, "F64")
            return d.withUnsafeBytes { p in
                (0..<(d.count / 8)).map { Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
            }
        }

        func int64(_ key: String) throws -> [Int] {
            let d = try raw(key, "I64")
            return d.withUnsafeBytes { p in
                (0..<(d.count / 8)).map { Int(Int64(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
            }
        }

        func int(_ key: String) throws -> Int {
            guard let v = try int64(key).first else { throw Failure(description: "\(key) is empty") }
            return v
        }
    }

    static func maxAbs(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// FNV-1a 64 over the little-endian float32 bytes, as audio_io.py's `fnv1a64`.
    static func fnv1a64(_ values: [Float]) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for v in values {
            var bits = v.bitPattern.littleEndian
            withUnsafeBytes(of: &bits) { for b in $0 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 } }
        }
        return Int(Int64(bitPattern: h))
    }

    /// Deterministic PRNG for the fuzz tests.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
