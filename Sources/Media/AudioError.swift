import Foundation

/// Everything that can go wrong between audio bytes and model-ready features. Decoding never traps:
/// malformed input always ends up as one of these.
public enum AudioError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The data is empty (0 bytes).
    case empty
    /// Not a RIFF/WAVE file; `reason` says what was found instead.
    case notWAV(reason: String)
    /// The data ends inside a header (`part` names which one).
    case truncated(part: String)
    /// A required chunk ("fmt " or "data") is absent.
    case missingChunk(String)
    /// The fmt chunk's format tag is not PCM, IEEE float or EXTENSIBLE with one of those.
    case unsupportedFormat(tag: Int, name: String)
    /// PCM or float with a sample width this decoder does not read.
    case unsupportedBitDepth(bits: Int, isFloat: Bool)
    /// A valid file in a layout this decoder does not handle (RIFX, RF64, odd EXTENSIBLE sub-formats).
    case unsupported(reason: String)
    /// The fmt chunk declares zero channels.
    case zeroChannels
    /// The sample rate is outside 1000…768000 Hz.
    case invalidSampleRate(Int)
    /// The data chunk holds no whole frame.
    case noAudio
    /// Longer than the decoder's limit (checked before any sample buffer is allocated).
    case tooLong(seconds: Double, maxSeconds: Double)
    /// A float file holds NaN or infinity; the features would be garbage.
    case nonFiniteSamples
    /// Reading the file failed.
    case io(path: String, reason: String)
    /// libsoxr refused or failed.
    case resampler(String)
    /// A caller-supplied argument is out of range.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .empty: return "audio data is empty"
        case .notWAV(let reason): return "not a RIFF/WAVE file: \(reason)"
        case .truncated(let part): return "WAV data is truncated inside the \(part)"
        case .missingChunk(let id): return "WAV file has no '\(id)' chunk"
        case .unsupportedFormat(let tag, let name):
            return String(format: "unsupported WAV format tag 0x%04X", tag) + (name.isEmpty ? "" : " (\(name))")
                + "; only PCM and IEEE float are read"
        case .unsupportedBitDepth(let bits, let isFloat):
            return isFloat ? "unsupported IEEE float WAV with \(bits) bits per sample (32 or 64 are read)"
                : "unsupported PCM WAV with \(bits) bits per sample (1…32 are read)"
        case .unsupported(let reason): return "unsupported WAV file: \(reason)"
        case .zeroChannels: return "WAV fmt chunk declares 0 channels"
        case .invalidSampleRate(let rate): return "WAV sample rate \(rate) Hz is outside 1000…768000 Hz"
        case .noAudio: return "WAV data chunk holds no audio frames"
        case .tooLong(let seconds, let maxSeconds):
            return String(format: "audio is %.1f s long, above the limit of %.0f s", seconds, maxSeconds)
        case .nonFiniteSamples: return "float WAV contains NaN or infinite samples"
        case .io(let path, let reason): return "cannot read audio file \(path): \(reason)"
        case .resampler(let message): return "resampling failed: \(message)"
        case .invalidArgument(let message): return "invalid argument: \(message)"
        }
    }
}
