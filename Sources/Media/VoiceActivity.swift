import Foundation

/// Finds where someone starts and stops speaking in 16 kHz audio as it arrives: an energy detector with
/// an adaptive noise floor and hysteresis (no Debian package carries a voice-activity detector library).
///
/// - The audio is cut into 30 ms frames; each frame's level is its RMS in dBFS.
/// - The noise floor follows the level down at once and up slowly (about 3 dB a second), so it tracks
///   the room but not the voice.
/// - A frame is voiced when it is `margin` dB over the floor and over `minimumLevel`.
/// - Speech starts after `startFrames` voiced frames in a row (90 ms), and ends after `silence` seconds
///   without a voiced frame.
public struct VoiceActivityDetector: Sendable {
    public enum Event: Sendable, Equatable {
        /// Speech began at this many seconds of audio (its first voiced frame).
        case speechStarted(at: Double)
        /// Speech ended: the last voiced frame ended at `at`; it was noticed at `detectedAt`.
        case speechEnded(at: Double, detectedAt: Double)
    }

    public static let frameSamples = 480  // 30 ms at 16 kHz
    public var silence: Double
    public var margin: Float = 9
    public var minimumLevel: Float = -50
    public var startFrames = 3
    public private(set) var speaking = false
    private var floor: Float = -60
    private var run = 0
    private var runStart = 0
    private var lastVoiced = 0
    private var frames = 0
    private var pending: [Float] = []

    public init(silence: Double = 0.5) { self.silence = max(0.03, silence) }

    /// Seconds of audio seen.
    public var seconds: Double { Double(frames * Self.frameSamples + pending.count) / 16000 }

    /// While speaking: seconds since the last voiced frame (0 in a voiced run).
    public var quietFor: Double { speaking ? Double((frames - lastVoiced) * Self.frameSamples) / 16000 : 0 }

    /// Feeds samples; returns what changed, in order.
    public mutating func push(_ samples: [Float]) -> [Event] {
        pending += samples
        var events: [Event] = []
        let n = Self.frameSamples
        var used = 0
        while pending.count - used >= n {
            var sum: Float = 0
            for i in used..<(used + n) { sum += pending[i] * pending[i] }
            used += n
            let level = 10 * log10(max(sum / Float(n), 1e-12))
            let voiced = level > floor + margin && level > minimumLevel
            // the floor falls to quiet frames at once and rises by 0.1 dB per 30 ms frame
            floor = level < floor ? level : min(level, floor + 0.1)
            if voiced {
                if run == 0 { runStart = frames }
                run += 1
                lastVoiced = frames + 1
                if !speaking && run >= startFrames {
                    speaking = true
                    events.append(.speechStarted(at: Double(runStart * n) / 16000))
                }
            } else {
                run = 0
                if speaking && Double((frames + 1 - lastVoiced) * n) / 16000 >= silence {
                    speaking = false
                    events.append(.speechEnded(at: Double(lastVoiced * n) / 16000, detectedAt: Double((frames + 1) * n) / 16000))
                }
            }
            frames += 1
        }
        pending.removeFirst(used)
        return events
    }
}
