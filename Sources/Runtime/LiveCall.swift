import Foundation
import Media
import MiniCPMO

/// A voice (and video) call over an `OmniSession`: audio arrives in pieces of any size, a detector finds
/// where the user speaks, what they say goes to the model in 1-second units as it comes, the model
/// answers when they stop, and speaking again interrupts the answer.
///
/// The model works on one thread of its own, in order: units, answers. Audio is taken on the caller's
/// thread and never waits for the model, so an interruption stops the answer while it is being written.
/// `onEvent` is called on either thread and must not call back into the call.
public final class LiveCall: @unchecked Sendable {
    public struct Options: Sendable {
        public var generation = GenerationOptions(sampling: SamplingParameters(temperature: 0.7, topK: 100, topP: 0.8,
                                                                             repetitionPenalty: 1.05), maxTokens: 512)
        /// Seconds of silence that end the user's turn.
        public var silence = 0.5  // as OpenAI Realtime's server VAD (silence_duration_ms 500)
        /// Audio kept from before speech was detected, so that its first syllable is heard.
        public var preroll = 0.3
        /// A pause this long sends what was said so far at once (a unit shorter than a second), so that
        /// it is in by the time the pause is long enough to end the turn; the silence after it is not sent
        /// if the turn does end.
        public var earlyCut = 0.25
        /// Speak the answers (false: text only).
        public var speak = true
        public var speechSeed: UInt64 = 0
        public var greedySpeech = false
        public init() {}
    }

    public enum Event: Sendable {
        case speechStarted(at: Double)
        case speechEnded(at: Double, detectedAt: Double)
        /// A unit went into the conversation: its index in the call, its audio, the seconds its prefill took.
        case heard(unit: Int, seconds: Double, prefillSeconds: Double, encodeSeconds: Double)
        case answerStarted(turn: Int)
        case text(String)
        case audio(SpeechChunk)
        case answerFinished(turn: Int, OmniSession.Answer)
        /// The user spoke over an answer (or the client asked): it stops.
        case interrupted(turn: Int)
        case failed(String)
    }

    public let session: OmniSession
    let speech: SpeechModel?
    public var options: Options
    let onEvent: @Sendable (Event) -> Void
    private var detector: VoiceActivityDetector
    private let lock = NSLock()
    private var buffer: [Float] = []
    private var inTurn = false
    private var frame: RGBImage?
    private var units = 0
    private var turns = 0
    private var answering: Int?
    /// Audio since the early cut of the current pause (silence, unless speech resumes).
    private var cutAtPause = false
    /// Units cut but not yet heard by the model, in order.
    private var pending: [(index: Int, unit: OmniSession.Unit)] = []
    /// The turn has ended: its last unit waits for the answer, which hears it in the same pass.
    private var turnEnded = false
    private let worker: any LiveExecutor

    /// - executor: where the model's work runs (default: a thread of the call's own; a server passes its
    ///   scheduler's, so that calls and other requests take turns).
    public init(session: OmniSession, speech: SpeechModel?, options: Options = Options(), executor: (any LiveExecutor)? = nil,
                onEvent: @escaping @Sendable (Event) -> Void) {
        worker = executor ?? SerialWorker(name: "live-call")
        self.session = session
        self.speech = options.speak ? speech : nil
        self.options = options
        self.onEvent = onEvent
        detector = VoiceActivityDetector(silence: options.silence)
    }

    /// Prefills the system message (a voice to clone, if given) before the user speaks.
    public func start(system: String? = nil, voice: [Float]? = nil) {
        worker.run { [self] in
            do { try session.start(system: system, voice: voice) } catch { onEvent(.failed("\(error)")) }
        }
    }

    /// The latest video frame: it goes with the next unit.
    public func show(_ image: RGBImage) { lock.withLock { frame = image } }

    /// Takes 16 kHz mono audio as it arrives.
    public func hear(_ samples: [Float]) {
        lock.lock()
        defer { lock.unlock() }
        let events = detector.push(samples)
        buffer += samples
        for event in events {
            switch event {
            case let .speechStarted(at):
                onEvent(.speechStarted(at: at))
                if let turn = answering { interrupt(turn) }
                inTurn = true
            case let .speechEnded(at, detectedAt):
                onEvent(.speechEnded(at: at, detectedAt: detectedAt))
                endTurn()
            }
        }
        if inTurn {
            if detector.quietFor == 0 { cutAtPause = false }
            while buffer.count >= 16000 { sendUnit(Array(buffer.prefix(16000))); buffer.removeFirst(16000) }
            if !cutAtPause, detector.quietFor >= options.earlyCut, !buffer.isEmpty, options.earlyCut < options.silence {
                sendUnit(buffer)
                buffer = []
                cutAtPause = true
            }
        } else {
            let keep = Int(options.preroll * 16000)
            if buffer.count > keep { buffer.removeFirst(buffer.count - keep) }
        }
    }

    /// Ends the user's turn now (push to talk), whatever the detector thinks.
    public func commit() { lock.withLock { endTurn(force: true) } }

    /// Stops the answer being written or spoken.
    public func cancel() { lock.withLock { if let turn = answering { interrupt(turn) } } }

    /// Waits until everything queued so far has run.
    public func drain() { worker.wait() }

    public func close() {
        cancel()
        worker.stop()
    }

    // MARK: - under the lock

    private func interrupt(_ turn: Int) {
        session.interrupt()
        answering = nil
        onEvent(.interrupted(turn: turn))
    }

    private func endTurn(force: Bool = false) {
        guard inTurn || force else { return }
        inTurn = false
        if !buffer.isEmpty && !(cutAtPause && !force) { sendUnit(buffer, hearNow: false) }
        buffer = []
        cutAtPause = false
        guard units > 0 else { return }
        turnEnded = true
        turns += 1
        let turn = turns
        answering = turn
        worker.run { [self] in answer(turn) }
    }

    private func sendUnit(_ audio: [Float], hearNow: Bool = true) {
        pending.append((index: units + 1, unit: .init(audio: audio, frame: frame)))
        frame = nil
        units += 1
        turnEnded = false
        if hearNow { worker.run { [self] in hearPending(keepLast: true) } }
    }

    // MARK: - on the worker

    /// Prefills the units waiting, except the last one of an ended turn when `keepLast` (the answer
    /// takes it).
    private func hearPending(keepLast: Bool) {
        while let (index, unit) = lock.withLock({ () -> (index: Int, unit: OmniSession.Unit)? in
            if pending.isEmpty || (keepLast && turnEnded && pending.count == 1) { return nil }
            return pending.removeFirst()
        }) {
            do {
                let p = try session.listen(unit)
                onEvent(.heard(unit: index, seconds: Double(unit.audio.count) / 16000, prefillSeconds: p.seconds,
                               encodeSeconds: p.encodeSeconds))
            } catch {
                onEvent(.failed("\(error)"))
            }
        }
    }

    private func answer(_ turn: Int) {
        // the user spoke again before the answer began: their message goes on, nothing is answered yet
        guard lock.withLock({ answering == turn }) else { return hearPending(keepLast: false) }
        hearPending(keepLast: true)
        let last = lock.withLock { () -> (index: Int, unit: OmniSession.Unit)? in
            turnEnded = false
            return pending.popLast()
        }
        onEvent(.answerStarted(turn: turn))
        do {
            let sampler = CodeSampler(seed: options.speechSeed &+ UInt64(turn), greedy: options.greedySpeech)
            var generation = options.generation
            generation.shouldStop = { [weak self] in
                guard let self else { return true }
                return lock.withLock { answering != turn }
            }
            let a = try session.answer(after: last?.unit, options: generation, speech: speech, sampler: sampler) { [onEvent] event in
                switch event {
                case let .text(t): onEvent(.text(t))
                case let .audio(c): onEvent(.audio(c))
                }
            }
            lock.withLock { if answering == turn { answering = nil } }
            if let last {
                onEvent(.heard(unit: last.index, seconds: Double(last.unit.audio.count) / 16000, prefillSeconds: a.prefillSeconds,
                               encodeSeconds: a.encodeSeconds))
            }
            onEvent(.answerFinished(turn: turn, a))
        } catch {
            onEvent(.failed("\(error)"))
        }
    }
}

/// Runs a call's jobs one after another, in order.
public protocol LiveExecutor: Sendable {
    func run(_ job: @escaping @Sendable () -> Void)
    /// Returns when every job given so far has run.
    func wait()
    /// Runs no more jobs.
    func stop()
}

/// The call's jobs on a scheduler's worker, in turn with its other requests.
public final class SchedulerExecutor: LiveExecutor, @unchecked Sendable {
    private let continuation: AsyncStream<@Sendable () -> Void>.Continuation
    private let condition = NSCondition()
    private var pending = 0

    public init(_ scheduler: any RequestScheduler) {
        let (jobs, continuation) = AsyncStream.makeStream(of: (@Sendable () -> Void).self)
        self.continuation = continuation
        Task { [condition] in
            for await job in jobs {
                _ = try? await scheduler.perform { _ in job() }
                condition.withLock { self.pending -= 1; condition.broadcast() }
            }
        }
    }

    public func run(_ job: @escaping @Sendable () -> Void) {
        condition.withLock { pending += 1 }
        if case .terminated = continuation.yield(job) { condition.withLock { pending -= 1; condition.broadcast() } }
    }

    public func wait() { condition.withLock { while pending > 0 { condition.wait() } } }

    public func stop() { continuation.finish() }
}

/// One thread that runs closures in order (the model's work wants a big stack and no thread hopping).
final class SerialWorker: LiveExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var busy = false
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    func run(_ job: @escaping @Sendable () -> Void) {
        condition.withLock {
            guard !stopped else { return }
            jobs.append(job)
            condition.broadcast()
        }
    }

    func wait() {
        condition.withLock { while !jobs.isEmpty || busy { condition.wait() } }
    }

    func stop() {
        condition.withLock {
            stopped = true
            condition.broadcast()
        }
    }

    private func loop() {
        while true {
            let job: (@Sendable () -> Void)? = condition.withLock {
                while jobs.isEmpty && !stopped { condition.wait() }
                if jobs.isEmpty { return nil }
                busy = true
                return jobs.removeFirst()
            }
            guard let job else { return }
            job()
            condition.withLock {
                busy = false
                condition.broadcast()
            }
        }
    }
}
