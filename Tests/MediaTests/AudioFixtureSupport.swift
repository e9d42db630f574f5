import Foundation

/// Fixtures of the audio tests (tools/reference/audio_io.py).
enum AudioFixtures {
    static func url(_ name: String) -> URL { fixturesDirectory.appendingPathComponent("audio/\(name)") }
    static func data(_ name: String) throws -> Data { try Data(contentsOf: url(name)) }

    /// FNV-1a 64 over the little-endian float32 bytes, as audio_io.py's `fnv1a64`.
    static func fnv1a64(_ values: [Float]) -> Int {
        MediaTests.fnv1a64(values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
    }
}
