import Foundation
import Media

/// Tests/Fixtures, found from this file's path (works for the repo and for packages that symlink it).
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures")

func imageURL(_ name: String) -> URL { fixturesDirectory.appendingPathComponent("images/\(name)") }

func decodeFixture(_ name: String, exif: Bool = true) throws -> RGBImage {
    try ImageDecoder(appliesEXIFOrientation: exif).decode(contentsOf: imageURL(name))
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
}

/// Minimal safetensors reader for U8 / I64 / F32 reference tensors (tools/reference/images.py).
struct Reference {
    struct Entry { let dtype: String; let shape: [Int]; let range: Range<Int> }
    let data: Data
    let entries: [String: Entry]
    let base: Int

    init(_ name: String) throws {
        let url = fixturesDirectory.appendingPathComponent("reference/\(name)")
        data = try Data(contentsOf: url)
        guard data.count >= 8 else { throw FixtureError(description: "\(name): too short") }
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        guard 8 + n <= data.count,
              let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any]
        else { throw FixtureError(description: "\(name): bad header") }
        var entries: [String: Entry] = [:]
        for (key, value) in json where key != "__metadata__" {
            guard let v = value as? [String: Any], let dtype = v["dtype"] as? String,
                  let shape = v["shape"] as? [Int], let offsets = v["data_offsets"] as? [Int], offsets.count == 2
            else { throw FixtureError(description: "\(name): bad entry \(key)") }
            entries[key] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        self.entries = entries
        base = 8 + n
    }

    var keys: [String] { entries.keys.sorted() }
    func has(_ key: String) -> Bool { entries[key] != nil }

    func entry(_ key: String, _ dtype: String) throws -> Entry {
        guard let e = entries[key] else { throw FixtureError(description: "missing tensor \(key)") }
        guard e.dtype == dtype else { throw FixtureError(description: "\(key) is \(e.dtype), expected \(dtype)") }
        return e
    }

    func bytes(_ key: String) throws -> [UInt8] {
        let e = try entry(key, "U8")
        return [UInt8](data[(base + e.range.lowerBound)..<(base + e.range.upperBound)])
    }

    func shape(_ key: String) throws -> [Int] {
        guard let e = entries[key] else { throw FixtureError(description: "missing tensor \(key)") }
        return e.shape
    }

    func int64(_ key: String) throws -> [Int] {
        let e = try entry(key, "I64")
        let raw = data[(base + e.range.lowerBound)..<(base + e.range.upperBound)]
        return raw.withUnsafeBytes { p in (0..<(raw.count / 8)).map { Int(Int64(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) } }
    }

    func float32(_ key: String) throws -> [Float] {
        let e = try entry(key, "F32")
        let raw = data[(base + e.range.lowerBound)..<(base + e.range.upperBound)]
        return raw.withUnsafeBytes { p in
            (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    func string(_ key: String) throws -> String { String(decoding: try bytes(key), as: UTF8.self) }
}

/// FNV-1a 64 as a signed Int, the same as images.py's `fnv1a64`.
func fnv1a64(_ bytes: [UInt8]) -> Int {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return Int(Int64(bitPattern: h))
}

/// images.py's `subsample_indices`: j -> (j * n) / k.
func subsampleIndices(_ n: Int, _ k: Int = 1024) -> [Int] {
    let k = min(k, n)
    return (0..<k).map { $0 * n / k }
}

func maxDiff(_ a: [UInt8], _ b: [UInt8]) -> Int {
    zip(a, b).reduce(0) { max($0, abs(Int($1.0) - Int($1.1))) }
}

/// Compares `image` with a reference stored in full (`key`) or hashed (`key#fnv`, `#shape`, `#sub`).
/// Returns nil on exact match, else a message with the max diff seen.
func compare(_ image: RGBImage, _ ref: Reference, _ key: String) throws -> String? {
    if ref.has(key) {
        let shape = try ref.shape(key)
        guard shape == [image.height, image.width, 3] else { return "\(key): shape \(image.height)×\(image.width) vs \(shape)" }
        let d = maxDiff(image.pixels, try ref.bytes(key))
        return d == 0 ? nil : "\(key): max diff \(d)"
    }
    let shape = try ref.int64(key + "#shape")
    guard shape == [image.height, image.width, 3] else { return "\(key): shape \(image.height)×\(image.width) vs \(shape)" }
    if fnv1a64(image.pixels) == (try ref.int64(key + "#fnv"))[0] { return nil }
    let sub = subsampleIndices(image.pixels.count).map { image.pixels[$0] }
    return "\(key): hash differs, subsample max diff \(maxDiff(sub, try ref.bytes(key + "#sub")))"
}
