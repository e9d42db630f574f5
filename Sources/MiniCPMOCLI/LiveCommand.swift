import ArgumentParser
import Foundation
import Media
import MiniCPMO
import Runtime

struct LiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "live",
        abstract: "Replay a recording as a live call: the model listens as it plays and answers in speech when the speaker pauses.",
        discussion: """
            The recording is fed in real time (--fast: as fast as the model takes it). Each answer is written to \
            OUTPUT/answer-N.wav (24 kHz) and its text to stdout; OUTPUT/live.json holds every event with its time, \
            and the latencies: from the end of speech to the first text and to the first audio. Speaking during an \
            answer interrupts it.
            """)

    @OptionGroup var model: ModelOptions

    @Option(name: .long, help: "The recording to replay (WAV; any rate, mixed to mono).")
    var input: String

    @Option(name: .long, help: "A folder of video frames (PNG/JPEG, in name order), one per second of the recording.")
    var video: String?

    @Option(name: .long, help: "The folder for answer-N.wav and live.json (created if missing).")
    var output: String

    @Option(name: .long, help: "A WAV recording whose voice the answers imitate.")
    var voice: String?

    @Option(name: .long, help: "The system message (default: MiniCPM-o's omni assistant prompt).")
    var system: String?

    @Option(name: .long, help: "Seconds of silence that end a turn.")
    var silence: Double = 0.5

    @Flag(name: .long, help: "Feed the recording as fast as the model takes it instead of in real time.")
    var fast = false

    @Flag(name: .long, help: "Answer in text only.")
    var noSpeech = false

    @Flag(name: .long, help: "Frames in HD: up to 6 slices each instead of 1.")
    var hd = false

    @Option(name: .long, help: "Tokens per answer at most.")
    var maxTokens: Int = 512

    @Option(name: .long, help: "Sampling temperature of the text; 0 is greedy.")
    var temperature: Float = 0.7

    @Option(name: .long, help: "Random seed of the text sampler.")
    var seed: UInt64?

    @Flag(name: .long, help: "Pick the most likely audio codes instead of sampling them.")
    var speechGreedy = false

    @Option(name: .long, help: "Random seed of the speech sampler.")
    var speechSeed: UInt64 = 0

    @Flag(name: .long, help: "Replace answer files and live.json already in --output.")
    var overwrite = false

    func validate() throws {
        if silence <= 0 || silence > 10 { throw ValidationError("--silence must be in (0, 10] seconds") }
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if temperature < 0 { throw ValidationError("--temperature must not be negative") }
    }

    func run() throws {
        let fm = FileManager.default
        let outDir = URL(fileURLWithPath: output)
        let summaryURL = outDir.appendingPathComponent("live.json")
        if !overwrite, fm.fileExists(atPath: summaryURL.path) {
            fail(ValidationError("\(summaryURL.path) exists; pass --overwrite to replace it"), code: 1)
        }
        let recording: [Float]
        let frames: [RGBImage]
        let voiceClip: [Float]?
        do {
            recording = try WAVDecoder().load16k(contentsOf: URL(fileURLWithPath: input))
            frames = try video.map(loadFrames) ?? []
            voiceClip = try voice.map { try WAVDecoder().load16k(contentsOf: URL(fileURLWithPath: $0)) }
            try fm.createDirectory(at: outDir, withIntermediateDirectories: true)
        } catch { fail(error, code: 1) }
        // each second must be heard within the second: int8 prefill unless told otherwise
        let loaded = model.load(standard: .int8)
        let recorder = Recorder()
        let call: LiveCall
        do {
            let session = try OmniSession(model: loaded, tokenizer: try loaded.tokenizer())
            session.maxSliceNums = hd ? 6 : 1
            var options = LiveCall.Options()
            options.generation.maxTokens = maxTokens
            options.generation.sampling.temperature = temperature
            options.generation.sampling.seed = seed
            options.silence = silence
            options.speak = !noSpeech
            options.speechSeed = speechSeed
            options.greedySpeech = speechGreedy
            call = LiveCall(session: session, speech: noSpeech ? nil : try loaded.speech(), options: options) { recorder.record($0) }
        } catch { fail(error, code: 1) }
        call.start(system: system, voice: voiceClip)
        call.drain()  // the system prompt is in before the call begins
        recorder.begin()
        note(String(format: "[live: %.1f s of audio%@, %@]", Double(recording.count) / 16000,
                    frames.isEmpty ? "" : ", \(frames.count) frames", fast ? "as fast as it goes" : "in real time"))
        // 100 ms pieces, as a microphone delivers them; then silence, so a recording that ends mid-word ends its turn
        let piece = 1600
        let tail = [Float](repeating: 0, count: Int((silence + 0.2) * 16000))
        let audio = recording + tail
        var shown = -1
        for (k, start) in stride(from: 0, to: audio.count, by: piece).enumerated() {
            if !fast { recorder.sleep(until: Double(k) * 0.1) }
            let second = start / 16000
            if second != shown, second < frames.count { call.show(frames[second]); shown = second }
            call.hear(Array(audio[start..<min(start + piece, audio.count)]))
            if fast { call.drain() }
        }
        call.drain()
        call.close()
        do {
            let summary = try recorder.finish(directory: outDir, overwrite: overwrite)
            try summary.write(to: summaryURL)
            note("[live: wrote \(summaryURL.path)]")
        } catch { fail(error, code: 1) }
    }

    func loadFrames(_ dir: String) throws -> [RGBImage] {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { ["png", "jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
        guard !names.isEmpty else { throw ValidationError("no PNG or JPEG frames in \(dir)") }
        return try names.map { try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent($0)) }
    }
}

/// Collects the call's events with their times and writes the answers.
final class Recorder: @unchecked Sendable {
    private let lock = NSLock()
    private var t0 = Date()
    private var events: [[String: Any]] = []
    private var units: [[String: Double]] = []
    private var turns: [Int: Turn] = [:]
    private var lastSpeechEnd: (at: Double, detected: Double, wall: Double)?

    struct Turn {
        var speechEnded: Double?, detected: Double?, endWall: Double?
        var firstText: Double?, firstAudio: Double?
        var audio: [Float] = []
        var text = ""
        var interrupted = false
        var tokens = 0
        var frames = 0
        var phases: [String: Double] = [:]
    }

    func begin() { lock.withLock { t0 = Date() } }

    func sleep(until t: Double) {
        let wait = t - Date().timeIntervalSince(lock.withLock { t0 })
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }

    private var now: Double { Date().timeIntervalSince(t0) }

    func record(_ event: LiveCall.Event) {
        lock.withLock {
            let t = now
            switch event {
            case let .speechStarted(at):
                events.append(["t": t, "event": "speech_started", "audio_time": at])
                note(String(format: "[%6.2f s] listening", t))
            case let .speechEnded(at, detected):
                events.append(["t": t, "event": "speech_ended", "audio_time": at, "detected_at": detected])
                lastSpeechEnd = (at, detected, t)
            case let .heard(unit, seconds, prefill, encode):
                units.append(["unit": Double(unit), "seconds": seconds, "prefill_seconds": prefill, "encode_seconds": encode, "t": t])
                events.append(["t": t, "event": "unit", "unit": unit, "seconds": seconds, "prefill_seconds": prefill])
            case let .answerStarted(turn):
                var r = Turn()
                // the end of speech in audio time; in real time that is also wall time since the start
                r.speechEnded = lastSpeechEnd?.at
                r.detected = lastSpeechEnd?.detected
                r.endWall = lastSpeechEnd?.wall
                turns[turn] = r
                events.append(["t": t, "event": "answer_started", "turn": turn])
                note(String(format: "[%6.2f s] answering (turn %d)", t, turn))
            case let .text(s):
                if let k = turns.keys.max() {
                    if turns[k]?.firstText == nil { turns[k]?.firstText = t }
                    turns[k]?.text += s
                }
                writeOut(s)
            case let .audio(chunk):
                if let k = turns.keys.max() {
                    if turns[k]?.firstAudio == nil, !chunk.samples.isEmpty {
                        turns[k]?.firstAudio = t
                        events.append(["t": t, "event": "first_audio", "turn": k])
                    }
                    turns[k]?.audio += chunk.samples
                }
            case let .answerFinished(turn, answer):
                turns[turn]?.interrupted = answer.interrupted
                turns[turn]?.tokens = answer.tokenIds.count
                turns[turn]?.frames = answer.codes.count
                var phases = ["answer_prefill_seconds": answer.prefillSeconds, "answer_seconds": answer.seconds]
                if let v = answer.firstTokenAfter { phases["first_token_after_answer_start_seconds"] = v }
                if let v = answer.firstTextAfter { phases["first_text_after_answer_start_seconds"] = v }
                if let v = answer.firstAudioAfter { phases["first_audio_after_answer_start_seconds"] = v }
                turns[turn]?.phases = phases
                events.append(["t": t, "event": "answer_finished", "turn": turn, "interrupted": answer.interrupted,
                               "tokens": answer.tokenIds.count])
                writeOut("\n")
            case let .interrupted(turn):
                events.append(["t": t, "event": "interrupted", "turn": turn])
                note(String(format: "[%6.2f s] interrupted (turn %d)", t, turn))
            case let .failed(message):
                events.append(["t": t, "event": "error", "message": message])
                note("error: \(message)")
            }
        }
    }

    /// Writes answer-N.wav and returns live.json.
    func finish(directory: URL, overwrite: Bool) throws -> Data {
        try lock.withLock {
            var turnList: [[String: Any]] = []
            for (k, r) in turns.sorted(by: { $0.key < $1.key }) {
                var d: [String: Any] = ["turn": k, "text": r.text, "interrupted": r.interrupted, "tokens": r.tokens,
                                        "speech_frames": r.frames, "phases": r.phases]
                if let e = r.speechEnded { d["speech_ended_audio_time"] = e }
                if let e = r.endWall {
                    // wall time when the end of speech was noticed, less the silence the detector waited for
                    let end = e - ((r.detected ?? 0) - (r.speechEnded ?? 0))
                    if let f = r.firstText { d["first_text_after_speech_end_seconds"] = f - end }
                    if let f = r.firstAudio { d["first_audio_after_speech_end_seconds"] = f - end }
                    if let f = r.firstAudio { d["first_audio_after_detection_seconds"] = f - e }
                }
                if !r.audio.isEmpty {
                    let name = "answer-\(k).wav"
                    try WAVWriter.write(r.audio, sampleRate: 24000, to: directory.appendingPathComponent(name), overwrite: overwrite)
                    d["file"] = name
                    d["audio_seconds"] = Double(r.audio.count) / 24000
                }
                turnList.append(d)
            }
            let factors = units.map { $0["prefill_seconds"]! / max($0["seconds"]!, 1e-9) }.sorted()
            let summary: [String: Any] = [
                "turns": turnList, "units": units, "events": events,
                "listening_real_time_factor_median": factors.isEmpty ? 0 : factors[factors.count / 2],
                "listening_real_time_factor_max": factors.last ?? 0,
            ]
            return try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
        }
    }
}
