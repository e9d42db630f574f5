import Foundation
import Testing
import Media

@Suite struct WhisperFeaturesTests {
    /// Against WhisperFeatureExtractor's numpy path (float64 DFT rounded to complex64). The Swift path does the same
    /// rounding, so only float64 summation order differs: 1e-4 is the requirement, every fixture matches exactly.
    static let tolerance: Float = 1e-4

    @Test func filterBankMatchesTransformers() throws {
        let ref = try Reference("audio-mel.safetensors")
        let index = try ref.int64("mel_filters#index"), value = try ref.float64("mel_filters#value")
        let bank = WhisperFeatures.melFilters
        #expect(bank.count == 201 * 80)
        #expect(bank.indices.filter { bank[$0] != 0 } == index)
        let err = zip(index, value).map { abs(bank[$0] - $1) / $1 }.max() ?? 0
        print("mel filters vs transformers: max relative diff \(err)")
        #expect(err < 1e-12)
    }

    /// openai-whisper's mel_filters.npz (librosa's filters in float32, [80 × 201]).
    @Test func filterBankMatchesWhisperAssets() throws {
        let ref = try Reference("audio-mel.safetensors")
        let index = try ref.int64("whisper_mel_80#index"), value = try ref.float32("whisper_mel_80#value")
        let bank = WhisperFeatures.melFilters  // [201 × 80]
        let transposed = (0..<(80 * 201)).map { Float(bank[($0 % 201) * 80 + $0 / 201]) }
        #expect(transposed.indices.filter { transposed[$0] != 0 } == index)
        let err = zip(index, value).map { abs(transposed[$0] - $1) }.max() ?? 0
        print("mel filters vs whisper mel_filters.npz: max |diff| \(err)")
        #expect(err < 1e-7)
    }

    func compare(_ name: String, piece: Int, _ mel: (values: [Float], frames: Int)) throws -> Float {
        let ref = try Reference("audio-mel.safetensors")
        let key = "\(name)#piece\(piece)"
        if ref.has(key) {
            let shape = try ref.shape(key)
            #expect(shape == [80, mel.frames])
            guard shape == [80, mel.frames] else { return .infinity }
            return maxAbs(mel.values, try ref.float32(key))
        }
        // Long pieces: every 16th frame and the last.
        #expect(mel.frames == (try ref.int(key + "#frame_count")))
        let frames = try ref.int64(key + "#frames"), sub = try ref.float32(key + "#sub")
        let mine = (0..<80).flatMap { m in frames.map { mel.values[m * mel.frames + $0] } }
        return maxAbs(mine, sub)
    }

    @Test(arguments: [("speech-16k-s16.wav", 412), ("silence-1s-16k-s16.wav", 100), ("short-100-16k-s16.wav", 1),
                      ("speech-44k1-stereo-s16.wav", 100)])
    func logMelMatchesTransformers(_ name: String, _ frames: Int) throws {
        let samples = try WAVDecoder().load16k(contentsOf: AudioFixtures.url(name))
        #expect(WhisperFeatures.pieces(of: samples).count == 1)
        let mel = WhisperFeatures.logMel(samples16k: samples)
        #expect(mel.frames == frames && mel.values.count == 80 * frames)
        let err = try compare(name, piece: 0, mel)
        print("log-mel \(name): \(mel.frames) frames, max |diff| vs WhisperFeatureExtractor \(err)")
        #expect(err <= Self.tolerance)
        if name.hasPrefix("silence") { #expect(mel.values.allSatisfy { $0 == -1.5 }) }
    }

    /// 45 s → a full 30 s piece (3000 frames, reflect padding at both ends) and a 15 s piece (1500 frames).
    @Test func longClipSplitsIntoPieces() throws {
        let name = "long-45s-8k-u8.wav"
        let samples = try WAVDecoder().load16k(contentsOf: AudioFixtures.url(name))
        let pieces = WhisperFeatures.pieces(of: samples)
        #expect(pieces.map(\.count) == [480_000, 240_000])
        #expect(Array(pieces.joined()) == samples)
        for (p, (piece, frames)) in zip(pieces, [3000, 1500]).enumerated() {
            let mel = WhisperFeatures.logMel(samples16k: piece)
            #expect(mel.frames == frames)
            let err = try compare(name, piece: p, mel)
            print("log-mel \(name) piece \(p): \(mel.frames) frames, max |diff| \(err)")
            #expect(err <= Self.tolerance)
        }
    }

    @Test func piecesAndFrameCounts() {
        #expect(WhisperFeatures.pieces(of: []).isEmpty)
        #expect(WhisperFeatures.pieces(of: [Float](repeating: 0, count: 480_000)).map(\.count) == [480_000])
        #expect(WhisperFeatures.pieces(of: [Float](repeating: 0, count: 480_001)).map(\.count) == [480_000, 1])
        let counts = [0: 1, 1: 1, 160: 1, 161: 2, 16000: 100, 479_999: 3000, 480_000: 3000, 1_000_000: 3000]
        for (n, frames) in counts { #expect(WhisperFeatures.frameCount(samples: n) == frames, "n \(n)") }
        let empty = WhisperFeatures.logMel(samples16k: [])
        #expect(empty.frames == 1 && empty.values == [Float](repeating: -1.5, count: 80))
    }

    /// Past 30 s the extractor truncates (truncation=True); so does logMel.
    @Test func overlongInputIsTruncatedToOnePiece() throws {
        var rng = SeededRNG(seed: 7)
        let x = (0..<480_100).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
        let whole = WhisperFeatures.logMel(samples16k: x)
        let first = WhisperFeatures.logMel(samples16k: Array(x[..<480_000]))
        #expect(whole.frames == 3000 && whole.values == first.values)
    }

    /// 30 s of real speech; printed, asserted only loosely (the budget is "well under 100 ms" in release).
    @Test func timingOf30Seconds() throws {
        let samples = try WAVDecoder().load16k(contentsOf: AudioFixtures.url("long-45s-8k-u8.wav"))
        let piece = Array(samples[..<480_000])
        _ = WhisperFeatures.logMel(samples16k: piece)  // warm-up: builds the DFT matrix and filters
        var times: [Double] = []
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            let mel = WhisperFeatures.logMel(samples16k: piece)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            #expect(mel.frames == 3000)
        }
        times.sort()
        print(String(format: "log-mel of 30 s: best %.1f ms, median %.1f ms (%d cores)", times[0], times[2],
                     ProcessInfo.processInfo.activeProcessorCount))
        #expect(times[0] < 2000)
    }
}
