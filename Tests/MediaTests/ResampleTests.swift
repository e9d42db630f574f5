import Foundation
import Testing
import Media

@Suite struct ResampleTests {
    /// Tolerance against librosa.load(sr=16000) (soundfile + python-soxr 1.1.0 HQ). Debian's libsoxr 0.1.3 and the
    /// copy python-soxr bundles pick the same engine (cr32s) here and agree bit for bit; the tolerance leaves room for
    /// builds that pick another engine.
    static let tolerance: Float = 1e-5

    static let resampledFiles = [
        "speech-44k1-stereo-s16.wav", "speech-48k-f32.wav", "speech-22k05-s24.wav", "speech-8k-u8.wav",
        "speech-12k-3ch-s32-ext.wav",
    ]

    @Test(arguments: resampledFiles)
    func loadMatchesLibrosa(_ name: String) throws {
        let ref = try Reference("audio-load.safetensors")
        let expected = try ref.float32("\(name)#16k")
        let mine = try WAVDecoder().load16k(contentsOf: AudioFixtures.url(name))
        #expect(mine.count == expected.count)
        guard mine.count == expected.count else { return }
        let err = maxAbs(mine, expected)
        print("load16k \(name): \(mine.count) samples, max |diff| vs librosa.load \(err)")
        #expect(err <= Self.tolerance)
    }

    @Test func longClipMatchesLibrosa() throws {
        let name = "long-45s-8k-u8.wav"
        let ref = try Reference("audio-load.safetensors")
        let mine = try WAVDecoder().load16k(contentsOf: AudioFixtures.url(name))
        #expect(mine.count == (try ref.int("\(name)#16k_count")))
        #expect(mine.count == 720_000)
        let sub = try ref.float32("\(name)#16k_sub")
        let mineSub = stride(from: 0, to: mine.count, by: 41).map { mine[$0] }
        #expect(mineSub.count == sub.count)
        guard mineSub.count == sub.count else { return }
        let err = maxAbs(mineSub, sub)
        print("load16k \(name): max |diff| vs librosa.load (every 41st sample) \(err)")
        #expect(err <= Self.tolerance)
    }

    @Test(arguments: ["speech-16k-s16.wav", "silence-1s-16k-s16.wav", "short-100-16k-s16.wav",
                      "speech-16k-10ch-f64-ext.wav", "speech-16k-s16-data-size-too-large.wav"])
    func sixteenKilohertzPassesThroughUntouched(_ name: String) throws {
        let clip = try WAVDecoder().decode(contentsOf: AudioFixtures.url(name))
        let loaded = try WAVDecoder().load16k(contentsOf: AudioFixtures.url(name))
        #expect(loaded == clip.samples)
        #expect(try AudioResampler.resample(clip.samples, from: 16000, to: 16000) == clip.samples)
    }

    /// librosa's fix_length: the output has ceil(n · 16000 / sr) samples whatever soxr's flush produced.
    @Test(arguments: [44100, 48000, 22050, 8000, 11025, 96000, 1000, 768_000])
    func lengthFollowsLibrosa(_ rate: Int) throws {
        var rng = SeededRNG(seed: UInt64(rate))
        for n in [1, 2, 7, 159, 441, 1000, 4801, 44100] {
            let x = (0..<n).map { _ in Float.random(in: -0.5...0.5, using: &rng) }
            let y = try AudioResampler.resample(x, from: rate, to: 16000)
            #expect(y.count == Int((Double(n) * (16000.0 / Double(rate))).rounded(.up)), "n \(n)")
            #expect(y.allSatisfy { $0.isFinite })
        }
        #expect(try AudioResampler.resample([], from: rate, to: 16000) == [])
    }

    @Test func invalidRatesAreRefused() {
        #expect(throws: AudioError.self) { try AudioResampler.resample([0, 1], from: 0, to: 16000) }
        #expect(throws: AudioError.self) { try AudioResampler.resample([0, 1], from: 16000, to: 10_000_000) }
    }
}
