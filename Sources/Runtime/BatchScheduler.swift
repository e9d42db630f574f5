import Foundation
import MiniCPMO

/// Serves many conversations at once for about the price of one: the text answers that are running
/// advance together, one token each per step, with every weight read once for all of them
/// (`LanguageSession.step(_:sessions:)`). A new request joins between steps. Its prompt is prefilled
/// one chunk per step, each sized to take about `stepSeconds` while others are being written, so a long
/// prompt delays their next token by one chunk at a time and does not freeze them. A spoken answer's text
/// is written in the batch too, and its speech (`SpeechBatch`) goes on between steps, the TTS steps of all
/// answers being spoken taken together. Other work (`perform`) runs whole, between steps.
///
/// With q8/q4 weights every answer's tokens are exactly those it gets alone (and its speech too, where
/// the TTS's weights have a GEMM with the GEMV's arithmetic); with float weights the batched arithmetic
/// differs in rounding only.
public final class BatchScheduler: RequestScheduler, @unchecked Sendable {
    public let engine: Engine
    public let maxQueue: Int
    public let maxBatch: Int
    public let prefillBudget: Int

    private enum Work: QueuedWork {
        /// A text answer, batched.
        case chat(ChatJob, CancellationFlag, AsyncThrowingStream<ChatEvent, Error>.Continuation)
        /// Anything else, run whole: returns whether it ran to its end.
        case whole(CancellationFlag, run: () -> Bool, abandon: (Error) -> Void)

        var flag: CancellationFlag {
            switch self {
            case let .chat(_, f, _): return f
            case let .whole(f, _, _): return f
            }
        }

        func abandon(_ error: Error) {
            switch self {
            case let .chat(_, _, c): c.finish(throwing: error)
            case let .whole(_, _, a): a(error)
            }
        }
    }

    /// A text answer in the batch.
    private final class Active {
        let flag: CancellationFlag
        let events: AsyncThrowingStream<ChatEvent, Error>.Continuation
        let prompt: Prompt
        let session: LanguageSession
        var stream: TokenStream
        var fed: Int
        /// Prompt tokens found cached when it arrived (where its first chunk starts).
        let reused: Int
        var prefillSeconds = 0.0
        /// The token to feed at the next step (nil while the prompt is still going in).
        var next: Int?
        /// What goes into the cache: the prompt, and after a preemption also the tokens written so far.
        var input: Prompt
        /// Preempted while writing: the token to feed once `input` is back in.
        var resumeNext: Int?
        /// Preempted: it waits until more than this many answers have left the batch.
        var waitFor: Int?
        /// Its speech, when it is spoken.
        let voice: Voice?

        init(flag: CancellationFlag, events: AsyncThrowingStream<ChatEvent, Error>.Continuation, prompt: Prompt,
             session: LanguageSession, stream: TokenStream, voice: Voice?) {
            self.voice = voice
            self.flag = flag
            self.events = events
            self.prompt = prompt
            self.session = session
            self.stream = stream
            input = prompt
            fed = min(session.reusableLength(for: prompt), prompt.tokens.count - 1)
            reused = fed
        }
    }

    private let condition = NSCondition()
    private var queue: [Work] = []
    private var active: [Active] = []
    private var runningWhole = 0
    /// Answers whose text is written and whose speech goes on.
    private var speakingAfterText = 0
    private let speech = SpeechBatch()
    private var completed = 0
    private var cancelledCount = 0
    private var stopped = false
    /// Prompt tokens per second of recent prefill chunks (a first guess until one is measured).
    private var prefillRate = 128.0
    /// How long a prefill chunk may hold up the answers being written.
    public let stepSeconds: Double
    private var largest = 0
    private var steps = 0
    private var preempted = 0
    /// Answers that have left the batch (finished, failed or cancelled): a preempted one resumes after one.
    private var left = 0

    /// Answers set aside (their KV pages given back, recomputed later) because the KV pool ran out.
    public var preemptions: Int { condition.withLock { preempted } }

    /// The most answers one step has advanced together, and the steps taken.
    public var largestBatch: Int { condition.withLock { largest } }
    public var batchedSteps: Int { condition.withLock { steps } }
    /// The most spoken answers one TTS step has advanced together, and the TTS steps taken.
    public var largestSpeechBatch: Int { condition.withLock { speechLargest } }
    public var speechSteps: Int { condition.withLock { speechStepCount } }
    private var speechLargest = 0, speechStepCount = 0
    /// How long the last batched step of the text answers took.
    private var lastStepSeconds = 0.0

    /// - maxBatch: answers decoded together; more wait in the queue.
    /// - prefillBudget: prompt tokens a joining request prefills per step.
    /// - stepSeconds: how long a joining prompt's chunk may delay the running answers' next token.
    /// - onSpeechStep: runs on the scheduler's thread after each batched TTS step, with the number of
    ///   spoken answers it advanced (for metrics; it must not block).
    public init(engine: Engine, maxQueue: Int = 64, maxBatch: Int = 8, prefillBudget: Int = 512, stepSeconds: Double = 0.4,
                onSpeechStep: (@Sendable (Int) -> Void)? = nil) {
        self.engine = engine
        self.stepSeconds = stepSeconds
        self.maxQueue = max(0, maxQueue)
        self.maxBatch = max(1, maxBatch)
        self.prefillBudget = max(1, prefillBudget)
        speech.afterStep = { [weak self] n in
            guard let self else { return }
            condition.withLock {
                speechLargest = max(speechLargest, n)
                speechStepCount += 1
            }
            onSpeechStep?(n)
        }
        let thread = Thread { self.loop() }
        thread.name = "minicpmo-batch"
        thread.stackSize = 8 << 20
        thread.start()
    }

    public var status: SchedulerStatus {
        condition.withLock {
            SchedulerStatus(queued: queue.count, running: active.count + runningWhole + speakingAfterText, maxQueue: maxQueue, completed: completed,
                            cancelled: cancelledCount)
        }
    }

    private func enqueue(_ work: Work) throws {
        try condition.withLock {
            if stopped { throw RuntimeError.stopped }
            if queue.count >= maxQueue && (!active.isEmpty || runningWhole > 0 || !queue.isEmpty) {
                throw RuntimeError.queueFull(depth: queue.count)
            }
            queue.append(work)
            condition.signal()
        }
    }

    public func submit(_ job: ChatJob) throws -> Submission {
        let flag = CancellationFlag()
        let (stream, continuation) = AsyncThrowingStream<ChatEvent, Error>.makeStream(bufferingPolicy: .unbounded)
        continuation.onTermination = { _ in flag.cancel() }
        try enqueue(.chat(job, flag, continuation))
        return Submission(events: stream, flag: flag)
    }

    public func perform<T: Sendable>(_ work: @escaping @Sendable (Engine) throws -> T) async throws -> T {
        try await performQueued(engine, work) { try enqueue(.whole($0, run: $1, abandon: $2)) }
    }

    public func shutdown() {
        stopQueue(condition) {
            stopped = true
            defer { queue = [] }
            return queue
        }
    }

    // MARK: - the worker

    private func loop() {
        while true {
            // take new work: whole jobs run now, text answers join the batch while there is room
            var taken: [Work] = []
            let quit: Bool = condition.withLock {
                while queue.isEmpty && active.isEmpty && speech.isEmpty && !stopped { condition.wait() }
                if queue.isEmpty && active.isEmpty && speech.isEmpty && stopped { return true }
                var room = maxBatch - active.count
                while let w = queue.first {
                    if case .chat = w {
                        guard room > 0 else { break }
                        room -= 1
                    }
                    taken.append(queue.removeFirst())
                }
                return false
            }
            if quit { return }
            for work in taken { start(work) }
            dropCancelled()
            prefillOne()
            step()
            speak()
        }
    }

    private func start(_ work: Work) {
        if work.flag.isCancelled {
            count(ended: false)
            work.abandon(RuntimeError.cancelled)
            return
        }
        switch work {
        case let .whole(_, run, _):
            condition.withLock { runningWhole += 1 }
            let ended = run()
            condition.withLock { runningWhole -= 1 }
            count(ended: ended)
        case let .chat(job, flag, events):
            do {
                let (prompt, options) = try engine.prepare(job)
                let stream = try TokenStream(generator: engine.generator, options: options, budget: options.maxTokens)
                let voice = try job.speech.map { try Voice($0, engine: engine, prompt: prompt) }
                let a = Active(flag: flag, events: events, prompt: prompt, session: engine.checkout(for: prompt), stream: stream,
                               voice: voice)
                condition.withLock { active.append(a) }
            } catch {
                count(ended: false)
                events.finish(throwing: error)
            }
        }
    }

    private func count(ended: Bool) {
        condition.withLock { if ended { completed += 1 } else { cancelledCount += 1 } }
    }

    private func remove(_ a: Active) {
        condition.withLock {
            active.removeAll { $0 === a }
            left += 1
        }
    }

    private func dropCancelled() {
        for a in condition.withLock({ active }) where a.flag.isCancelled {
            fail(a, RuntimeError.cancelled)
        }
    }

    private func fail(_ a: Active, _ error: Error) {
        remove(a)
        engine.release(a.session, keep: false)
        let events = a.events
        endSpeech(a, cancelled: true) { events.finish(throwing: error) }
    }

    /// Once an answer's speech has ended (at once where there is none), counts the answer and runs `last`
    /// (a cancelled or failed answer's speech stops where it is).
    private func endSpeech(_ a: Active, cancelled: Bool, spoken: String = "", last: @escaping () -> Void) {
        if cancelled { a.flag.cancel() }
        guard let voice = a.voice, voice.textEnded(spoken: spoken, flag: a.flag) else {
            count(ended: !cancelled)
            return last()
        }
        condition.withLock { speakingAfterText += 1 }
        voice.onDone = { [self] in
            condition.withLock { speakingAfterText -= 1 }
            if !cancelled && a.flag.isCancelled {  // the listener left while it spoke
                count(ended: false)
                return a.events.finish(throwing: RuntimeError.cancelled)
            }
            count(ended: !cancelled)
            last()
        }
        speech.add(voice)
    }

    /// The speech of the spoken answers: while text answers are being written, for about as long as their
    /// last step took (text and speech take turns of equal time, and answers that start speaking a little
    /// apart are spoken together), else for up to two steps' time.
    private func speak() {
        guard !speech.isEmpty else { return }
        let writing = condition.withLock { !active.isEmpty }
        speech.run(for: writing ? min(stepSeconds, max(lastStepSeconds, 0.02)) : 2 * stepSeconds)
    }

    /// The next chunk of the oldest prompt still going in; its first token once it is all in. While
    /// other answers are being written the chunk is sized from the prefill rate seen so far to take
    /// about `stepSeconds`, so that they keep their pace; alone it takes the whole budget.
    private func prefillOne() {
        let (found, othersWriting) = condition.withLock { () -> (Active?, Bool) in
            (active.first { $0.next == nil && !$0.stream.finished && ($0.waitFor.map { left > $0 } ?? true) },
             active.contains { $0.next != nil })
        }
        guard let a = found else { return }
        let t0 = Date()
        let size = othersWriting ? max(16, min(prefillBudget, Int(prefillRate * stepSeconds))) : prefillBudget
        let total = a.input.tokens.count, target = min(total, a.fed + size)
        do {
            // the speaker vector of a spoken answer, in the chunk that holds <|spk|>
            let at = a.voice?.capture.flatMap { $0 < target ? $0 : nil }
            let r = try a.session.prefill(a.input.prefix(target), chunk: prefillBudget, hiddenAt: at)
            if let h = r.hidden { a.voice?.heard(h, flag: a.flag, events: a.events) }
            let seconds = Date().timeIntervalSince(t0)
            if target - a.fed >= 16 { prefillRate = 0.5 * prefillRate + 0.5 * Double(target - a.fed) / max(seconds, 1e-4) }
            a.fed = target
            a.prefillSeconds += seconds
            guard target == total else { return }
            a.waitFor = nil
            if let next = a.resumeNext {
                a.next = next  // back where it was: what it wrote is in again
                a.resumeNext = nil
            } else {
                advance(a, r.logits)
            }
        } catch KVCacheError.outOfPages {
            // no room for this prompt now: the kept conversations go first (it goes on at the next
            // step), else it waits for an answer to end
            if engine.prefixes.count > 0 {
                engine.clearPrefixCache()
            } else if condition.withLock({ active.count }) == 1 {
                fail(a, RuntimeError.unavailable("the prompt does not fit in the KV cache (\(engine.kvPages.max ?? 0) pages)"))
            } else {
                preempt(a)
            }
        } catch {
            fail(a, error)
        }
    }

    /// Sets an answer aside: its pages go back to the pool, and once another answer has left the batch
    /// its prompt and the tokens it wrote are prefilled again and it goes on where it stopped.
    private func preempt(_ a: Active) {
        a.session.reset()
        a.fed = 0
        if let next = a.next {
            a.input = Prompt(tokens: a.prompt.tokens + a.stream.generated.dropLast(), spans: a.prompt.spans)  // `next` is not fed yet
            a.resumeNext = next
            a.next = nil
        }
        condition.withLock {
            a.waitFor = left
            preempted += 1
        }
    }

    /// One token for every answer past its prompt, in one batched forward pass.
    private func step() {
        let ready = condition.withLock { active.filter { $0.next != nil } }
        guard !ready.isEmpty else { return }
        condition.withLock {
            largest = max(largest, ready.count)
            steps += 1
        }
        var batch = ready
        let t0 = Date()
        defer { lastStepSeconds = Date().timeIntervalSince(t0) }
        while !batch.isEmpty {
            do {
                let logits = try LanguageSession.step(batch.map { $0.next! }, sessions: batch.map(\.session))
                for (a, l) in zip(batch, logits) { advance(a, l) }
                return
            } catch KVCacheError.outOfPages {
                // the step left every sequence as it was: make room (kept conversations, then the newest answer)
                if engine.prefixes.count > 0 {
                    engine.clearPrefixCache()
                    continue
                }
                let newest = batch.removeLast()
                if batch.isEmpty {
                    fail(newest, RuntimeError.unavailable("the answer no longer fits in the KV cache (\(engine.kvPages.max ?? 0) pages)"))
                } else {
                    preempt(newest)
                }
            } catch {
                for a in batch { fail(a, error) }
                return
            }
        }
    }

    private func advance(_ a: Active, _ logits: [Float]) {
        let flag = a.flag, events = a.events
        a.next = a.stream.advance(logits, onText: { piece in
            guard !flag.isCancelled else { return false }
            events.yield(.text(piece))
            a.voice?.write(piece)
            return !flag.isCancelled
        })
        guard a.next == nil else { return }
        remove(a)
        var result = a.stream.result
        result.timings.promptTokens = a.prompt.tokens.count
        result.timings.cachedTokens = a.reused
        result.timings.prefillSeconds = a.prefillSeconds
        let cancelled = result.finishReason == .cancelled || flag.isCancelled
        engine.release(a.session, keep: !cancelled, hit: cancelled ? nil : a.reused > 0)
        let spoken = a.voice == nil ? "" : SpeechModel.spokenText(result.tokenIds, tokenizer: engine.generator.tokenizer)
        // counted before the stream ends, so that a client that sees the end sees the count
        endSpeech(a, cancelled: cancelled, spoken: spoken) {
            if cancelled { return events.finish(throwing: RuntimeError.cancelled) }
            var outcome = ChatOutcome(result: result)
            if let voice = a.voice {
                outcome.spokenText = spoken
                outcome.wave = voice.wave
                outcome.speechFrames = voice.frames
            }
            events.yield(.finished(outcome))
            events.finish()
        }
    }
}
