import Foundation

/// Decoded audio: mono samples in [-1, 1) at the file's own rate.
public struct AudioClip: Sendable, Equatable {
    public var sampleRate: Int
    /// Channel count of the source; `samples` are already mixed down to mono.
    public var channels: Int
    public var samples: [Float]

    public init(sampleRate: Int, channels: Int = 1, samples: [Float]) {
        self.sampleRate = sampleRate
        self.channels = channels
        self.samples = samples
    }

    public var duration: Double { sampleRate > 0 ? Double(samples.count) / Double(sampleRate) : 0 }
}

/// What a WAV header declares, after validation.
public struct WAVFormat: Sendable, Equatable {
    public enum Encoding: Sendable, Equatable { case pcm, float }
    public var encoding: Encoding
    /// Bits per sample as declared; PCM samples occupy (bits + 7) / 8 bytes, as libsndfile reads them.
    public var bitsPerSample: Int
    public var channels: Int
    public var sampleRate: Int
    /// Whole frames available in the data chunk (after truncating a data size that runs past the end).
    public var frames: Int
    /// True for WAVE_FORMAT_EXTENSIBLE (0xFFFE) headers.
    public var isExtensible: Bool

    public var bytesPerSample: Int { (bitsPerSample + 7) / 8 }
    public var duration: Double { Double(frames) / Double(sampleRate) }
}

/// RIFF/WAVE decoder: PCM 8 (unsigned) / 16 / 24 / 32-bit, IEEE float 32 / 64, WAVE_FORMAT_EXTENSIBLE with a PCM or
/// float sub-format, any channel count (mixed to mono by the channel mean, as librosa's `to_mono`), any rate in
/// 1000…768000 Hz. Integers scale as libsndfile's float reads do (int16 / 32768, int24 / 2^23, int32 / 2^31,
/// (uint8 − 128) / 128), so the samples equal `soundfile.read(dtype="float32")`.
public struct WAVDecoder: Sendable {
    /// One hour; at 16 kHz that is 57.6 M samples after resampling.
    public static let defaultMaxDuration: Double = 3600
    public static let sampleRateRange = 1000...768_000

    public var maxDuration: Double

    public init(maxDuration: Double = WAVDecoder.defaultMaxDuration) {
        self.maxDuration = maxDuration
    }

    public func decode(contentsOf url: URL) throws -> AudioClip {
        try decode(try Self.read(url))
    }

    public func decode(_ data: Data) throws -> AudioClip {
        let layout = try Self.parse(data)
        try checkDuration(layout.format)
        return try data.withUnsafeBytes { raw in
            AudioClip(sampleRate: layout.format.sampleRate, channels: layout.format.channels,
                      samples: Self.mixToMono(raw, layout))
        }.validated(layout.format)
    }

    /// The validated header without decoding samples.
    public func inspect(_ data: Data) throws -> WAVFormat {
        let format = try Self.parse(data).format
        try checkDuration(format)
        return format
    }

    private func checkDuration(_ format: WAVFormat) throws {
        if format.duration > maxDuration { throw AudioError.tooLong(seconds: format.duration, maxSeconds: maxDuration) }
    }

    /// Memory-mapped, so a huge file costs no allocation before its header is checked.
    static func read(_ url: URL) throws -> Data {
        do { return try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw AudioError.io(path: url.path, reason: error.localizedDescription)
        }
    }

    // MARK: - Header

    struct Layout {
        var format: WAVFormat
        var dataOffset: Int
    }

    /// The KSDATAFORMAT_SUBTYPE_* GUID tail shared by PCM (0x0001) and IEEE float (0x0003).
    private static let subformatTail: [UInt8] = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00,
                                                 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71]

    static func parse(_ data: Data) throws -> Layout {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> Layout in
            let count = raw.count
            if count == 0 { throw AudioError.empty }
            func fourCC(_ at: Int) -> String {
                String(decoding: (at..<min(at + 4, count)).map { raw[$0] }, as: UTF8.self)
            }
            func u16(_ at: Int) -> Int { Int(raw[at]) | Int(raw[at + 1]) << 8 }
            func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }

            let magic = fourCC(0)
            if magic == "RIFX" { throw AudioError.unsupported(reason: "big-endian RIFX") }
            if magic == "RF64" || magic == "BW64" { throw AudioError.unsupported(reason: "\(magic) (64-bit RIFF)") }
            // A file shorter than 4 bytes that is a prefix of "RIFF" is a truncated WAV, not a foreign format.
            if !Array("RIFF".utf8).starts(with: raw.prefix(4)) {
                throw AudioError.notWAV(reason: "starts with \(hexPrefix(raw))")
            }
            if count < 12 { throw AudioError.truncated(part: "RIFF header") }
            let form = fourCC(8)
            if form != "WAVE" { throw AudioError.notWAV(reason: "RIFF form type is '\(printable(form))', not 'WAVE'") }

            // Walk the chunks; the RIFF size field is ignored (writers get it wrong), the file length rules.
            var fmt: Range<Int>?
            var dataChunk: (offset: Int, size: Int)?
            var offset = 12
            while offset + 8 <= count {
                let id = fourCC(offset), size = u32(offset + 4), body = offset + 8
                if id == "fmt " && fmt == nil {
                    guard body + size <= count else { throw AudioError.truncated(part: "fmt chunk") }
                    fmt = body..<(body + size)
                } else if id == "data" && dataChunk == nil {
                    // libsndfile tolerates a data size that runs past the end (streamed writers leave it
                    // 0xFFFFFFFF or stale): use what is there.
                    dataChunk = (body, min(size, count - body))
                }
                offset = body + size + (size & 1)  // chunks are word-aligned: odd sizes carry a pad byte
            }
            // Stopping with 1…7 bytes left means the file ends inside a chunk header.
            let endsInHeader = offset < count
            guard let fmt else { throw endsInHeader ? AudioError.truncated(part: "chunk header") : .missingChunk("fmt ") }
            guard fmt.count >= 16 else { throw AudioError.truncated(part: "fmt chunk (\(fmt.count) of 16 bytes)") }
            let f = fmt.lowerBound
            var tag = u16(f)
            let channels = u16(f + 2), rate = u32(f + 4), bits = u16(f + 14)
            let isExtensible = tag == 0xFFFE
            if isExtensible {
                guard fmt.count >= 40 else {
                    throw AudioError.truncated(part: "WAVE_FORMAT_EXTENSIBLE fmt chunk (\(fmt.count) of 40 bytes)")
                }
                let guid = (f + 24)..<(f + 40)
                let sub = u16(guid.lowerBound)
                guard (sub == 1 || sub == 3), zip(raw[(guid.lowerBound + 2)..<guid.upperBound], subformatTail)
                    .allSatisfy({ $0 == $1 })
                else {
                    let hex = raw[guid].map { String(format: "%02x", $0) }.joined()
                    throw AudioError.unsupported(reason: "EXTENSIBLE sub-format GUID \(hex) is not PCM or IEEE float")
                }
                tag = sub
            }
            let encoding: WAVFormat.Encoding
            switch tag {
            case 1: encoding = .pcm
            case 3: encoding = .float
            default: throw AudioError.unsupportedFormat(tag: tag, name: formatTagNames[tag] ?? "")
            }
            if channels == 0 { throw AudioError.zeroChannels }
            guard sampleRateRange.contains(rate) else { throw AudioError.invalidSampleRate(rate) }
            switch (encoding, bits) {
            case (.pcm, 1...32), (.float, 32), (.float, 64): break
            default: throw AudioError.unsupportedBitDepth(bits: bits, isFloat: encoding == .float)
            }
            guard let dataChunk else { throw endsInHeader ? AudioError.truncated(part: "chunk header") : .missingChunk("data") }
            // The frame size comes from channels × sample width; libsndfile does not trust block_align either.
            let frameBytes = channels * ((bits + 7) / 8)
            let frames = dataChunk.size / frameBytes
            if frames == 0 { throw AudioError.noAudio }
            let format = WAVFormat(encoding: encoding, bitsPerSample: bits, channels: channels, sampleRate: rate,
                                   frames: frames, isExtensible: isExtensible)
            return Layout(format: format, dataOffset: dataChunk.offset)
        }
    }

    private static let formatTagNames: [Int: String] = [
        0x0000: "unknown", 0x0002: "Microsoft ADPCM", 0x0006: "A-law", 0x0007: "µ-law", 0x0011: "IMA ADPCM",
        0x0031: "GSM 6.10", 0x0050: "MPEG", 0x0055: "MPEG Layer 3", 0x00FF: "AAC", 0x1610: "HE-AAC",
        0xF1AC: "FLAC",
    ]

    private static func hexPrefix(_ raw: UnsafeRawBufferPointer) -> String {
        raw.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
    }

    private static func printable(_ s: String) -> String {
        String(s.unicodeScalars.map { (0x20..<0x7F).contains($0.value) ? Character($0) : "?" })
    }

    // MARK: - Samples

    /// Mixes while converting: the channel values of a frame are summed in Float and divided by the channel count,
    /// in numpy's order for a float32 mean over the channel axis (sequential below 8 channels, pairwise from 8).
    static func mixToMono(_ raw: UnsafeRawBufferPointer, _ layout: Layout) -> [Float] {
        let format = layout.format
        let channels = format.channels, frames = format.frames, width = format.bytesPerSample
        let base = layout.dataOffset
        let scale = Float(channels)
        return [Float](unsafeUninitializedCapacity: frames) { out, initialized in
            func mix(_ load: (Int) -> Float) {
                let frameBytes = channels * width
                if channels == 1 {
                    for i in 0..<frames { out[i] = load(base + i * width) }
                } else if channels < 8 {
                    for i in 0..<frames {
                        let p = base + i * frameBytes
                        var s: Float = 0  // numpy's sum starts from 0 (this keeps −0.0 + −0.0 = +0.0 as there)
                        for c in 0..<channels { s += load(p + c * width) }
                        out[i] = s / scale
                    }
                } else {
                    var values = [Float](repeating: 0, count: channels)
                    for i in 0..<frames {
                        let p = base + i * frameBytes
                        for c in 0..<channels { values[c] = load(p + c * width) }
                        out[i] = values.withUnsafeBufferPointer { pairwiseSum($0[...]) } / scale
                    }
                }
            }
            switch (format.encoding, width) {
            case (.pcm, 1):
                mix { (Float(raw[$0]) - 128) * (1 / 128) }
            case (.pcm, 2):
                mix { Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: $0, as: Int16.self))) * (1 / 32768) }
            case (.pcm, 3):
                mix { p in
                    // Left-justify into 32 bits, then an arithmetic shift sign-extends.
                    let u = UInt32(raw[p]) << 8 | UInt32(raw[p + 1]) << 16 | UInt32(raw[p + 2]) << 24
                    return Float(Int32(bitPattern: u) >> 8) * (1 / 8_388_608)
                }
            case (.pcm, _):
                mix { Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0, as: Int32.self))) * (1 / 2_147_483_648) }
            case (.float, 4):
                mix { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0, as: UInt32.self))) }
            case (.float, _):
                // Mixed after narrowing to Float, as soundfile's float32 read followed by the mean.
                mix { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0, as: UInt64.self)))) }
            }
            initialized = frames
        }
    }
}

/// numpy's `pairwise_sum` (float32): sequential below 8 values, 8 interleaved accumulators up to 128, halves above.
func pairwiseSum(_ a: Slice<UnsafeBufferPointer<Float>>) -> Float {
    let n = a.count, s = a.startIndex
    if n < 8 {
        var r: Float = 0
        for v in a { r += v }
        return r
    }
    if n <= 128 {
        var r = (0..<8).map { a[s + $0] }
        var i = 8
        while i < n - n % 8 {
            for j in 0..<8 { r[j] += a[s + i + j] }
            i += 8
        }
        var res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n { res += a[s + i]; i += 1 }
        return res
    }
    var half = n / 2
    half -= half % 8
    return pairwiseSum(a[s..<(s + half)]) + pairwiseSum(a[(s + half)...])
}

extension AudioClip {
    /// Float files may carry NaN / infinity; integer formats cannot.
    fileprivate func validated(_ format: WAVFormat) throws -> AudioClip {
        if format.encoding == .float && !samples.allSatisfy({ $0.isFinite }) { throw AudioError.nonFiniteSamples }
        return self
    }
}
