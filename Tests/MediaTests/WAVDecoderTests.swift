import Foundation
import Testing
import Media

@Suite struct WAVDecoderTests {
    struct Good: Sendable, CustomStringConvertible {
        let name: String, rate: Int, channels: Int, encoding: WAVFormat.Encoding, bits: Int, extensible: Bool
        var description: String { name }
    }

    static let goodFiles: [Good] = [
        Good(name: "speech-16k-s16.wav", rate: 16000, channels: 1, encoding: .pcm, bits: 16, extensible: false),
        Good(name: "speech-44k1-stereo-s16.wav", rate: 44100, channels: 2, encoding: .pcm, bits: 16, extensible: false),
        Good(name: "speech-48k-f32.wav", rate: 48000, channels: 1, encoding: .float, bits: 32, extensible: false),
        Good(name: "speech-22k05-s24.wav", rate: 22050, channels: 1, encoding: .pcm, bits: 24, extensible: false),
        Good(name: "speech-8k-u8.wav", rate: 8000, channels: 1, encoding: .pcm, bits: 8, extensible: false),
        Good(name: "speech-12k-3ch-s32-ext.wav", rate: 12000, channels: 3, encoding: .pcm, bits: 32, extensible: true),
        Good(name: "speech-16k-10ch-f64-ext.wav", rate: 16000, channels: 10, encoding: .float, bits: 64, extensible: true),
        Good(name: "speech-16k-s16-data-size-too-large.wav", rate: 16000, channels: 1, encoding: .pcm, bits: 16,
             extensible: false),
        Good(name: "long-45s-8k-u8.wav", rate: 8000, channels: 1, encoding: .pcm, bits: 8, extensible: false),
        Good(name: "silence-1s-16k-s16.wav", rate: 16000, channels: 1, encoding: .pcm, bits: 16, extensible: false),
        Good(name: "short-100-16k-s16.wav", rate: 16000, channels: 1, encoding: .pcm, bits: 16, extensible: false),
    ]

    /// Decoding is exact arithmetic (power-of-two scales, numpy's summation order for the channel mean), so the
    /// samples must equal soundfile's float32 read + np.mean bit for bit.
    @Test(arguments: goodFiles)
    func decodesLikeSoundfile(_ file: Good) throws {
        let ref = try Reference("audio-load.safetensors")
        let data = try AudioFixtures.data(file.name)
        let format = try WAVDecoder().inspect(data)
        #expect(format.sampleRate == file.rate && format.channels == file.channels)
        #expect(format.encoding == file.encoding && format.bitsPerSample == file.bits)
        #expect(format.isExtensible == file.extensible)
        let clip = try WAVDecoder().decode(contentsOf: AudioFixtures.url(file.name))
        #expect(clip.sampleRate == file.rate && clip.channels == file.channels)
        #expect(clip.samples.count == (try ref.int("\(file.name)#native_count")))
        let sub = try ref.float32("\(file.name)#native_sub")
        let mine = stride(from: 0, to: clip.samples.count, by: 97).map { clip.samples[$0] }
        #expect(mine.count == sub.count)
        if mine.count == sub.count {
            #expect(maxAbs(mine, sub) == 0, "subsample differs")
        }
        #expect(AudioFixtures.fnv1a64(clip.samples) == (try ref.int("\(file.name)#native_fnv")), "samples differ")
    }

    static let badFiles: [(String, AudioError?)] = [
        ("bad-empty.wav", .empty),
        ("bad-garbage.wav", nil),  // .notWAV, whatever the bytes say
        ("bad-truncated-header.wav", .truncated(part: "fmt chunk")),
        ("bad-riff-not-wave.wav", .notWAV(reason: "RIFF form type is 'AVI ', not 'WAVE'")),
        ("bad-no-fmt-chunk.wav", .missingChunk("fmt ")),
        ("bad-no-data-chunk.wav", .missingChunk("data")),
        ("bad-data-size-0.wav", .noAudio),
        ("bad-format-mp3.wav", .unsupportedFormat(tag: 0x55, name: "MPEG Layer 3")),
        ("bad-rate-0.wav", .invalidSampleRate(0)),
        ("bad-rate-10mhz.wav", .invalidSampleRate(10_000_000)),
        ("bad-channels-0.wav", .zeroChannels),
        ("bad-float16.wav", .unsupportedBitDepth(bits: 16, isFloat: true)),
    ]

    @Test(arguments: badFiles)
    func badFilesGiveClearErrors(_ name: String, _ expected: AudioError?) throws {
        let data = try AudioFixtures.data(name)
        do {
            _ = try WAVDecoder().decode(data)
            Issue.record("\(name) decoded")
        } catch let error as AudioError {
            if let expected {
                #expect(error == expected)
            } else if case .notWAV = error {} else {
                Issue.record("\(name): expected notWAV, got \(error)")
            }
            #expect(!error.description.isEmpty)
            print("\(name): \(error)")
        }
    }

    @Test func shortPrefixesOfRIFFAreTruncatedNotForeign() {
        #expect(throws: AudioError.truncated(part: "RIFF header")) { try WAVDecoder().decode(Data("RIF".utf8)) }
        #expect(throws: AudioError.truncated(part: "RIFF header")) { try WAVDecoder().decode(Data("RIFF\0\0\0\0WAV".utf8)) }
        #expect(throws: AudioError.notWAV(reason: "starts with 49 44 33")) { try WAVDecoder().decode(Data("ID3".utf8)) }
        #expect(throws: AudioError.missingChunk("fmt ")) { try WAVDecoder().decode(Data("RIFF\0\0\0\0WAVE".utf8)) }
        #expect(throws: AudioError.truncated(part: "chunk header")) { try WAVDecoder().decode(Data("RIFF\0\0\0\0WAVEfmt".utf8)) }
        #expect(throws: AudioError.unsupported(reason: "big-endian RIFX")) {
            try WAVDecoder().decode(Data("RIFX\0\0\0\0WAVE".utf8))
        }
    }

    @Test func tooLongIsRefusedBeforeDecoding() throws {
        let data = try AudioFixtures.data("speech-16k-s16.wav")  // 4.115 s
        #expect(throws: AudioError.tooLong(seconds: 65840.0 / 16000, maxSeconds: 4)) {
            try WAVDecoder(maxDuration: 4).decode(data)
        }
        // Just over the default hour: 1000 Hz 8-bit mono, 3600.5 s.
        var header = Data("RIFF".utf8) + le32(0) + Data("WAVEfmt ".utf8) + le32(16)
        header += le16(1) + le16(1) + le32(1000) + le32(1000) + le16(1) + le16(8)
        let frames = 3_600_500
        header += Data("data".utf8) + le32(UInt32(frames))
        let big = header + Data(repeating: 128, count: frames)
        #expect(throws: AudioError.tooLong(seconds: 3600.5, maxSeconds: 3600)) { try WAVDecoder().decode(big) }
        #expect((try WAVDecoder(maxDuration: 3601).inspect(big)).frames == frames)
    }

    @Test func missingFileIsAnIOError() {
        let url = AudioFixtures.url("no-such-file.wav")
        #expect {
            try WAVDecoder().decode(contentsOf: url)
        } throws: { error in
            guard case .io(let path, _) = error as? AudioError else { return false }
            return path == url.path
        }
    }

    /// Truncations and random corruptions of valid files: each decode either succeeds or throws an AudioError,
    /// and whatever decodes also resamples. Seeded, so a failure reproduces.
    @Test func fuzzNeverCrashes() throws {
        let sources = try ["speech-8k-u8.wav", "short-100-16k-s16.wav", "speech-12k-3ch-s32-ext.wav",
                           "speech-16k-10ch-f64-ext.wav", "speech-44k1-stereo-s16.wav", "speech-48k-f32.wav",
                           "speech-16k-s16-data-size-too-large.wav"].map { try [UInt8](AudioFixtures.data($0)) }
        var rng = SeededRNG(seed: 0xA0D10)
        var decoded = 0, refused = 0
        // AUDIO_FUZZ_ITERATIONS runs a longer campaign by hand.
        let iterations = ProcessInfo.processInfo.environment["AUDIO_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 1200
        for iteration in 0..<iterations {
            var bytes = sources[iteration % sources.count]
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:  // truncate, mostly inside the headers
                let cut = Bool.random(using: &rng) ? Int.random(in: 0...min(120, bytes.count), using: &rng)
                    : Int.random(in: 0...bytes.count, using: &rng)
                bytes.removeSubrange(cut...)
            case 1:  // flip a few bytes, mostly in the headers
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    let i = Int.random(in: 0..<(Bool.random(using: &rng) ? min(90, bytes.count) : bytes.count), using: &rng)
                    bytes[i] = UInt8.random(in: 0...255, using: &rng)
                }
            case 2:  // an extreme value in a 16- or 32-bit header field
                let i = Int.random(in: 4..<min(84, bytes.count - 4), using: &rng)
                let v = [UInt32(0), 1, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, UInt32.random(in: 0...UInt32.max, using: &rng)]
                    .randomElement(using: &rng) ?? 0
                for k in 0..<(Bool.random(using: &rng) ? 2 : 4) { bytes[i + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) }
            default:  // random garbage appended or spliced in
                let at = Int.random(in: 12...bytes.count, using: &rng)
                bytes.insert(contentsOf: (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
            }
            do {
                let clip = try WAVDecoder().decode(Data(bytes))
                #expect(!clip.samples.isEmpty)
                if Double(clip.samples.count) * 16000 / Double(clip.sampleRate) < 400_000 {
                    let resampled = try clip.resampled(to: 16000).samples
                    #expect(resampled.count == Int((Double(clip.samples.count) * (16000 / Double(clip.sampleRate))).rounded(.up)))
                }
                decoded += 1
            } catch is AudioError {
                refused += 1
            }
        }
        print("fuzz: \(decoded) decoded, \(refused) refused with an AudioError")
        #expect(decoded > 0 && refused > 0)
    }
}

private func le16(_ v: UInt16) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
private func le32(_ v: UInt32) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
