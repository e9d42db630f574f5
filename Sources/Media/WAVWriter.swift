import Foundation

/// Writes mono 16-bit PCM WAV files (what every player and `sox` read).
public enum WAVWriter {
    /// RIFF/WAVE bytes of `samples` (clipped to [−1, 1], scaled by 32767 and rounded).
    public static func encode(_ samples: [Float], sampleRate: Int) -> Data {
        let dataBytes = samples.count * 2
        var d = Data(capacity: 44 + dataBytes)
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { d.append(contentsOf: $0) } }
        func u16(_ v: Int) { withUnsafeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian) { d.append(contentsOf: $0) } }
        d.append(contentsOf: Array("RIFF".utf8)); u32(36 + dataBytes)
        d.append(contentsOf: Array("WAVE".utf8))
        d.append(contentsOf: Array("fmt ".utf8)); u32(16)
        u16(1); u16(1); u32(sampleRate); u32(sampleRate * 2); u16(2); u16(16)
        d.append(contentsOf: Array("data".utf8)); u32(dataBytes)
        var pcm = [Int16](repeating: 0, count: samples.count)
        for (i, s) in samples.enumerated() {
            let v = s.isFinite ? max(-1, min(1, s)) : 0
            pcm[i] = Int16((v * 32767).rounded()).littleEndian
        }
        pcm.withUnsafeBytes { d.append(contentsOf: $0) }
        return d
    }

    /// Writes the file; refuses to replace an existing one unless `overwrite`.
    public static func write(_ samples: [Float], sampleRate: Int, to url: URL, overwrite: Bool = false) throws {
        if !overwrite && FileManager.default.fileExists(atPath: url.path) {
            throw AudioError.io(path: url.path, reason: "the file exists (choose another name, or allow overwriting)")
        }
        do {
            try encode(samples, sampleRate: sampleRate).write(to: url, options: .atomic)
        } catch {
            throw AudioError.io(path: url.path, reason: error.localizedDescription)
        }
    }
}
