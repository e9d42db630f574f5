import Foundation

/// One answer's sampling state, a token at a time: the loop of `TextGenerator.decode`, made resumable so
/// that a scheduler can advance many answers in one batched step. Each call samples after the logits
/// of the token fed last and says which token to feed next, or that the answer has ended.
public struct TokenStream {
    let stopTokens: Set<Int>
    let silentTokens: Set<Int>
    let budget: Int
    var sampler: Sampler
    var decoder: StreamingDecoder
    var stops: StopStringMatcher
    public private(set) var generated: [Int] = []
    public private(set) var text = ""
    public private(set) var reason = FinishReason.length
    public private(set) var finished = false
    let started = Date()

    public init(generator: TextGenerator, options: GenerationOptions, budget: Int) throws {
        try options.sampling.validate()
        stopTokens = generator.stopTokens
        silentTokens = generator.silentTokens
        self.budget = max(budget, 0)
        sampler = Sampler(options.sampling)
        decoder = generator.tokenizer.streamingDecoder(skipSpecial: false)
        stops = StopStringMatcher(options.stopStrings)
    }

    /// Samples the next token from `logits`. `onToken` sees it before its text and returns false to stop
    /// after it; `onText` gets the text that became final and returns false to stop. Returns the token to
    /// feed, or nil when the answer is over (its held-back text then flushed).
    public mutating func advance(_ logits: [Float], onToken: (Int) -> Bool = { _ in true },
                                 onText: (String) -> Bool = { _ in true }) -> Int? {
        guard !finished else { return nil }
        guard generated.count < budget else { end(onText); return nil }
        let token = sampler.sample(logits, previous: generated)
        if stopTokens.contains(token) {
            reason = .stop
            end(onText)
            return nil
        }
        generated.append(token)
        let go = onToken(token)
        let (ready, stopped) = stops.push(silentTokens.contains(token) ? "" : decoder.push(token))
        if !emit(ready, onText) || !go { reason = .cancelled; end(onText); return nil }
        if stopped { reason = .stop; end(onText); return nil }
        if generated.count == budget { end(onText); return nil }
        return token
    }

    /// Ends the answer now (a listener that went away): nothing more is sampled.
    public mutating func cancel() {
        reason = .cancelled
        finished = true
    }

    private mutating func emit(_ piece: String, _ onText: (String) -> Bool) -> Bool {
        guard !piece.isEmpty else { return true }
        text += piece
        return onText(piece)
    }

    private mutating func end(_ onText: (String) -> Bool) {
        if reason != .stop {
            let (ready, _) = stops.push(decoder.flush())
            _ = emit(ready + stops.finish(), onText)
        }
        finished = true
    }

    public var result: GenerationResult {
        var timings = GenerationTimings()
        timings.generatedTokens = generated.count
        timings.decodeSeconds = Date().timeIntervalSince(started)
        return GenerationResult(text: text, tokenIds: generated, finishReason: reason, timings: timings, capturedHidden: nil)
    }
}
