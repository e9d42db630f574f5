import Foundation
import Media
@_exported import TestSupport
import Weights

func imageURL(_ name: String) -> URL { fixturesDirectory.appendingPathComponent("images/\(name)") }

func decodeFixture(_ name: String, exif: Bool = true) throws -> RGBImage {
    try ImageDecoder(appliesEXIFOrientation: exif).decode(contentsOf: imageURL(name))
}

struct FixtureError: Error, CustomStringConvertible { let description: String }

/// A reference file of Tests/Fixtures/reference, read through the project's safetensors reader; values
/// are checked for their dtype so that a regenerated fixture of another type fails loudly.
struct Reference {
    let file: SafetensorsFile

    init(_ name: String) throws {
        file = try SafetensorsFile(path: fixturesDirectory.appendingPathComponent("reference/\(name)").path)
    }

    var keys: [String] { file.tensors.keys.sorted() }
    func has(_ key: String) -> Bool { file.tensors[key] != nil }

    func tensor(_ key: String, _ dtype: DType? = nil) throws -> TensorView {
        guard let t = file.tensors[key] else { throw FixtureError(description: "missing tensor \(key)") }
        if let dtype, t.dtype != dtype { throw FixtureError(description: "\(key) is \(t.dtype.rawValue), expected \(dtype.rawValue)") }
        return t
    }

    func shape(_ key: String) throws -> [Int] { try tensor(key).shape }
    func bytes(_ key: String) throws -> [UInt8] { [UInt8](UnsafeRawBufferPointer(start: try tensor(key, .u8).data, count: try tensor(key).byteCount)) }
    func int64(_ key: String) throws -> [Int] { try tensor(key, .i64).integers().map { Int($0) } }
    func float32(_ key: String) throws -> [Float] { try tensor(key, .f32).floats() }
    func float64(_ key: String) throws -> [Double] {
        let t = try tensor(key, .f64)
        return (0..<t.elementCount).map { t.data.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
    }
    func int(_ key: String) throws -> Int {
        guard let v = try int64(key).first else { throw FixtureError(description: "\(key) is empty") }
        return v
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
