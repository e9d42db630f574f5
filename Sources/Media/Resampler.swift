import CSoxr
import Foundation

/// Sample-rate conversion with libsoxr at SOXR_HQ, reproducing `librosa.resample(y, orig_sr, target_sr)` with its
/// default `res_type="soxr_hq"`: python-soxr's `soxr.resample(x, in, out, quality="HQ")` on float32, then librosa's
/// `fix_length` to ceil(n · target / orig) samples.
public enum AudioResampler {
    /// The rate the Whisper front end expects.
    public static let whisperRate = 16000

    public static func resample(_ samples: [Float], from inputRate: Int, to outputRate: Int = whisperRate) throws -> [Float] {
        guard WAVDecoder.sampleRateRange.contains(inputRate), WAVDecoder.sampleRateRange.contains(outputRate) else {
            throw AudioError.invalidArgument("resampling \(inputRate) → \(outputRate) Hz: rates must be in 1000…768000")
        }
        if inputRate == outputRate { return samples }  // librosa.load skips resampling when the rates agree
        let n = samples.count
        let inRate = Double(inputRate), outRate = Double(outputRate)
        // librosa: n_samples = ceil(n · (target / orig)), with the ratio rounded first.
        let target = Int((Double(n) * (outRate / inRate)).rounded(.up))
        if n == 0 { return [] }

        var error: soxr_error_t?
        var io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I)
        var quality = soxr_quality_spec(UInt(SOXR_HQ), 0)
        guard let soxr = soxr_create(inRate, outRate, 1, &error, &io, &quality, nil), error == nil else {
            throw AudioError.resampler(error.map { String(cString: $0) } ?? "soxr_create failed")
        }
        defer { soxr_delete(soxr) }

        // python-soxr's csoxr_divide_proc: an output buffer of ⌊n · out / in⌋ + 1 samples, input fed in blocks of
        // max(1000, 48000 · in / out) samples, then one flush. Output past the buffer is dropped, as there.
        let capacity = Int(Double(n) * outRate / inRate + 1)
        let block = Int(max(1000, 48000 * inRate / outRate))
        var out = [Float](repeating: 0, count: max(capacity, target))
        var produced = 0
        try samples.withUnsafeBufferPointer { input in
            try out.withUnsafeMutableBufferPointer { output in
                guard let inBase = input.baseAddress, let outBase = output.baseAddress else { return }
                var done = 0
                var start = 0
                while start < n {
                    let len = min(block, n - start)
                    if let e = soxr_process(soxr, inBase + start, len, nil, outBase + produced, capacity - produced, &done) {
                        throw AudioError.resampler(String(cString: e))
                    }
                    produced += done
                    start += block
                }
                if let e = soxr_process(soxr, nil, 0, nil, outBase + produced, capacity - produced, &done) {
                    throw AudioError.resampler(String(cString: e))
                }
                produced += done
            }
        }
        // librosa's fix_length: zero-pad (the buffer is zeroed past `produced`) or truncate to `target`.
        out.removeSubrange(target...)
        return out
    }
}

extension AudioClip {
    /// This clip at `rate` (unchanged when it is already there).
    public func resampled(to rate: Int = AudioResampler.whisperRate) throws -> AudioClip {
        AudioClip(sampleRate: rate, channels: channels,
                  samples: try AudioResampler.resample(samples, from: sampleRate, to: rate))
    }
}

extension WAVDecoder {
    /// `librosa.load(path, sr=16000, mono=True)` for WAV files: decode, mix to mono, resample with soxr HQ.
    public func load16k(contentsOf url: URL) throws -> [Float] {
        try decode(contentsOf: url).resampled(to: AudioResampler.whisperRate).samples
    }

    public func load16k(_ data: Data) throws -> [Float] {
        try decode(data).resampled(to: AudioResampler.whisperRate).samples
    }
}
