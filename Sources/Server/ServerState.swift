import Foundation
import Hummingbird
import MiniCPMO
import Runtime

/// The model's lifecycle as the API sees it: loading (503), ready, or failed to load (503 with why).
final class ModelState: @unchecked Sendable {
    enum Phase {
        case loading
        case ready(any RequestScheduler)
        case failed(String)
    }
    private let lock = NSLock()
    private var phase = Phase.loading

    func set(_ p: Phase) { lock.withLock { phase = p } }
    var current: Phase { lock.withLock { phase } }

    func scheduler() throws -> any RequestScheduler {
        switch current {
        case .loading: throw APIError(.serviceUnavailable, "the model is loading; try again shortly", code: "model_loading")
        case let .failed(why): throw APIError(.serviceUnavailable, "the model failed to load: \(why)", code: "model_load_failed")
        case let .ready(s): return s
        }
    }
}

/// Voices registered through `POST /v1/voices`, for cloning in spoken answers.
final class VoiceStore: @unchecked Sendable {
    struct Voice {
        var id: String
        var clip: EncodedAudio
        var created: Int
        /// The recording at 16 kHz, for live calls (which encode their voice with the streaming encoder);
        /// nil when it is longer than a live call's voice may be.
        var samples: [Float]?
    }
    private let lock = NSLock()
    private var voices: [String: Voice] = [:]
    private var order: [String] = []
    let capacity = 64

    func add(_ clip: EncodedAudio, samples: [Float]?) -> Voice {
        let v = Voice(id: "voice-" + randomID(12), clip: clip, created: Int(Date().timeIntervalSince1970), samples: samples)
        lock.withLock {
            voices[v.id] = v
            order.append(v.id)
            while order.count > capacity { voices[order.removeFirst()] = nil }
        }
        return v
    }
    func get(_ id: String) -> Voice? { lock.withLock { voices[id] } }
    func remove(_ id: String) -> Bool {
        lock.withLock {
            order.removeAll { $0 == id }
            return voices.removeValue(forKey: id) != nil
        }
    }
    var all: [Voice] { lock.withLock { order.compactMap { voices[$0] } } }
}

/// Transcripts of spoken answers by their audio id, so that a client may send a previous answer back
/// as `{"role": "assistant", "audio": {"id": …}}` as OpenAI's API allows.
final class AudioTranscripts: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [(id: String, transcript: String)] = []
    let capacity = 1024
    /// Seconds an id stays valid (reported as `expires_at`).
    static let lifetime = 3600

    func add(id: String, transcript: String) {
        lock.withLock {
            items.append((id, transcript))
            if items.count > capacity { items.removeFirst(items.count - capacity) }
        }
    }
    func transcript(_ id: String) -> String? { lock.withLock { items.last { $0.id == id }?.transcript } }
}

func randomID(_ n: Int) -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    return String((0..<n).map { _ in alphabet.randomElement()! })
}

/// Equal in time independent of where the strings first differ (API key checks).
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff: UInt8 = x.count == y.count ? 0 : 1
    for i in 0..<max(x.count, y.count) {
        diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return diff == 0
}
