import Foundation
import MiniCPMO

/// A spoken answer's speech, on a thread of its own that runs only while the scheduler's thread waits for
/// it (a coroutine): it goes on until it needs a TTS step or more of the answer's text, then parks. So the
/// speech code keeps its plain loops, nothing runs beside the scheduler on the two cores, and the
/// scheduler can take the steps that several answers wait for in one batched TTS step.
final class SpeechFiber: @unchecked Sendable {
    enum Input {
        /// The answer's text so far.
        case text(String)
        /// The text is complete (or the answer was called off).
        case end
    }

    private let go = DispatchSemaphore(value: 0), parked = DispatchSemaphore(value: 0)
    // Written by one side while the other waits on a semaphore: the hand-off orders the accesses.
    /// The context whose step the fiber waits for.
    private(set) var pending: ConditionalChatTTS.Context?
    private var logits: [Float]?
    private var inbox: [Input] = []
    private var started = false
    private(set) var done = false

    init(name: String, body: @escaping @Sendable (SpeechFiber) -> Void) {
        let thread = Thread { [self] in
            go.wait()
            body(self)
            done = true
            parked.signal()
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    // MARK: the scheduler's side

    /// Whether `resume` would let it do something: it has not started, or has input to read.
    var runnable: Bool { !done && pending == nil && (!started || !inbox.isEmpty) }

    func send(_ input: Input) { inbox.append(input) }

    /// Runs it until it parks again (or ends).
    func resume() {
        started = true
        go.signal()
        parked.wait()
    }

    /// The logits of the step it waits for; runs it on to its next park.
    func deliver(_ l: [Float]) {
        logits = l
        pending = nil
        resume()
    }

    // MARK: the fiber's side

    /// A TTS step, taken by the scheduler with the other answers' steps.
    func step(_ ctx: ConditionalChatTTS.Context) -> [Float] {
        pending = ctx
        parked.signal()
        go.wait()
        defer { logits = nil }
        return logits!
    }

    /// The next input, waiting for the scheduler to send it.
    func next() -> Input {
        while inbox.isEmpty {
            parked.signal()
            go.wait()
        }
        return inbox.removeFirst()
    }
}

/// One answer's speech in a batching scheduler: the speaker vector taken at `<|spk|>` as its prompt goes
/// in, then either the text spoken while it is written (each piece sent to the fiber as it comes), or the
/// finished answer spoken at once, as `Engine.run` speaks it alone.
final class Voice: @unchecked Sendable {
    let request: SpeechRequest
    let stack: SpeechModel
    /// Where the speaker vector is read; nil once it has been.
    private(set) var capture: Int?
    private(set) var fiber: SpeechFiber?
    private var written = ""
    var wave: [Float] = []
    var frames = 0
    /// Runs once the speech has ended (the answer's last event).
    var onDone: (() -> Void)?

    init(_ request: SpeechRequest, engine: Engine, prompt: Prompt) throws {
        self.request = request
        do { stack = try engine.model.speech() } catch { throw RuntimeError.unavailable("this model cannot speak: \(error)") }
        capture = try prompt.speakerPosition(tokenizer: engine.generator.tokenizer)
    }

    private var hidden: [Float]?

    /// The hidden state at `<|spk|>`: speaking while writing starts now.
    func heard(_ h: [Float], flag: CancellationFlag, events: AsyncThrowingStream<ChatEvent, Error>.Continuation) {
        capture = nil
        hidden = h
        guard request.streaming else { return }
        let (stack, request) = (stack, request)
        fiber = SpeechFiber(name: "minicpmo-speech") { [self] f in
            let streamer = SpeechStreamer(speech: stack, speakerHidden: h, sampler: request.sampler, maxFrames: request.maxFrames) { chunk in
                self.wave += chunk.samples
                events.yield(.audio(chunk))
            }
            streamer.shouldStop = { flag.isCancelled }
            streamer.stepper = f.step
            while case let .text(t) = f.next() { streamer.update(text: t) }
            streamer.finish()
            frames = streamer.codes.count
        }
    }

    /// A piece of the answer's text, as it is written.
    func write(_ piece: String) {
        guard let fiber else { return }
        written += piece
        fiber.send(.text(written))
    }

    /// The text is complete: the rest is spoken (or, not streaming, all of `spoken`); false if there is
    /// nothing to speak with (no speaker vector).
    func textEnded(spoken: String, flag: CancellationFlag) -> Bool {
        if let fiber {
            fiber.send(.end)
            return true
        }
        guard let hidden, !flag.isCancelled else { return false }
        let (stack, request) = (stack, request)
        fiber = SpeechFiber(name: "minicpmo-speech") { [self] f in
            var sampler = request.sampler
            let out = stack.speak(text: spoken, speakerHidden: hidden, sampler: &sampler, maxFrames: request.maxFrames,
                                  stepper: f.step, shouldStop: { flag.isCancelled })
            wave = out.wave
            frames = out.codes.count
        }
        return true
    }
}

/// The voices of a batching scheduler whose speech is running: each one's fiber is run until it waits for
/// a TTS step, and the steps they wait for are taken in one batched step (each TTS weight read once for
/// all of them). Used by the scheduler's thread only.
final class SpeechBatch {
    private(set) var voices: [Voice] = []
    /// Runs after each batched step with the number of utterances it advanced.
    var afterStep: ((Int) -> Void)?

    var isEmpty: Bool { voices.isEmpty }

    func add(_ v: Voice) {
        if !voices.contains(where: { $0 === v }) { voices.append(v) }
    }

    /// Runs the voices' speech for about `seconds` (at least one step of each that waits for one), then
    /// ends those that are done.
    func run(for seconds: Double) {
        guard let tts = voices.first?.stack.tts else { return }
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            for v in voices where v.fiber?.runnable == true { v.fiber!.resume() }
            let ready = voices.filter { $0.fiber?.pending != nil }
            if ready.isEmpty { break }
            precondition(ready.allSatisfy { $0.stack.tts === tts }, "one speech model per batch")
            let logits = tts.step(ready.map { $0.fiber!.pending! })
            for (v, l) in zip(ready, logits) { v.fiber!.deliver(l) }
            afterStep?(ready.count)
        } while Date() < deadline
        let done = voices.filter { $0.fiber?.done == true }
        voices.removeAll { $0.fiber?.done == true }
        for v in done { v.onDone?() }
    }
}
