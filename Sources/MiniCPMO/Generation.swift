import Foundation
import Text

public enum FinishReason: String, Sendable, Codable {
    /// An end-of-turn token or a stop string.
    case stop
    /// The token budget (or the context window) ran out.
    case length
    /// The consumer stopped listening.
    case cancelled
}

public enum GenerationError: Error, CustomStringConvertible {
    case emptyPrompt
    case promptTooLong(tokens: Int, context: Int)
    case invalidParameters(String)
    case noTokenizer(String)
    /// `GenerationOptions.shouldStop` said so during the prefill.
    case stopped

    public var description: String {
        switch self {
        case .emptyPrompt: return "the prompt is empty"
        case let .promptTooLong(t, c): return "the prompt has \(t) tokens but the context window holds \(c)"
        case let .invalidParameters(s): return "invalid generation parameters: \(s)"
        case let .noTokenizer(s): return "no tokenizer: \(s)"
        case .stopped: return "stopped before the prompt was in"
        }
    }
}

public struct GenerationOptions: Sendable {
    public var sampling = SamplingParameters()
    public var maxTokens = 2048
    /// Generation stops before the first occurrence of any of these strings.
    public var stopStrings: [String] = []
    /// Prompt tokens per forward pass during prefill.
    public var prefillChunk = 512
    /// A prompt position whose final-norm hidden state is returned in the result (the `<|spk|>`
    /// token's, which conditions the speech output).
    public var captureHiddenAt: Int?
    /// Called with that hidden state as soon as the prompt is in (before the first token), so that a
    /// speech stream can start while the answer is being written.
    public var onCapturedHidden: (@Sendable ([Float]) -> Void)?
    /// Asked between prefill chunks: true abandons a long prompt (GenerationError.stopped) instead
    /// of finishing it for a listener who left. The cache keeps the chunks already in.
    public var shouldStop: (@Sendable () -> Bool)?

    public init(sampling: SamplingParameters = SamplingParameters(), maxTokens: Int = 2048, stopStrings: [String] = [],
                prefillChunk: Int = 512) {
        self.sampling = sampling
        self.maxTokens = maxTokens
        self.stopStrings = stopStrings
        self.prefillChunk = prefillChunk
    }
}

public struct GenerationTimings: Sendable, Codable {
    public var promptTokens = 0
    /// Prompt tokens whose keys and values were already cached (prefix reuse) and not recomputed.
    public var cachedTokens = 0
    public var generatedTokens = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0

    public var prefillTokensPerSecond: Double {
        prefillSeconds > 0 ? Double(promptTokens - cachedTokens) / prefillSeconds : 0
    }
    /// Decode rate over the tokens after the first (which comes from the prefill's logits).
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 ? Double(max(generatedTokens - 1, 0)) / decodeSeconds : 0
    }
}

public struct GenerationResult: Sendable {
    public var text: String
    public var tokenIds: [Int]
    public var finishReason: FinishReason
    public var timings: GenerationTimings
    /// The hidden state asked for by `GenerationOptions.captureHiddenAt`.
    public var capturedHidden: [Float]?
}

/// What a streaming generation yields: text as it becomes final, then the result.
public enum GenerationEvent: Sendable {
    case text(String)
    case finished(GenerationResult)
}

/// Embedding rows that replace the token embeddings of prompt positions start ..< start + count
/// (an image's resampler output over its `<unk>` placeholders, or an audio segment's).
public struct EmbeddingSpan: @unchecked Sendable {
    public var start: Int
    public var count: Int
    /// [count, hidden] rows.
    public var rows: FloatBuffer
    /// Identifies the content (e.g. a hash of the image's pixels): cached positions are reused only
    /// when both the token and this key match.
    public var key: UInt64

    public init(start: Int, count: Int, rows: FloatBuffer, key: UInt64) {
        self.start = start
        self.count = count
        self.rows = rows
        self.key = key
    }
}

/// A prompt: token ids, some of whose embeddings are replaced by media embeddings.
public struct Prompt: Sendable {
    public var tokens: [Int]
    public var spans: [EmbeddingSpan]

    public init(tokens: [Int], spans: [EmbeddingSpan] = []) {
        self.tokens = tokens
        self.spans = spans.sorted { $0.start < $1.start }
    }

    /// What identifies each position's input for prefix reuse.
    struct PositionKey: Equatable {
        var token: Int
        var media: UInt64
    }

    var positionKeys: [PositionKey] {
        var keys = tokens.map { PositionKey(token: $0, media: 0) }
        for span in spans {
            for i in 0..<span.count where span.start + i < keys.count {
                // mix the row index in so that swapping rows of one image is not a match
                keys[span.start + i].media = span.key &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i) &+ 1
            }
        }
        return keys
    }

    /// The first `k` tokens, with the media rows that fall among them (a prompt prefilled in pieces).
    public func prefix(_ k: Int) -> Prompt {
        guard k < tokens.count else { return self }
        let clipped = spans.compactMap { s -> EmbeddingSpan? in
            s.start >= k ? nil : EmbeddingSpan(start: s.start, count: min(s.count, k - s.start), rows: s.rows, key: s.key)
        }
        return Prompt(tokens: Array(tokens.prefix(k)), spans: clipped)
    }

    func validate(hidden: Int) throws {
        var end = 0
        for span in spans {
            guard span.start >= end, span.count > 0, span.start + span.count <= tokens.count,
                  span.rows.count >= span.count * hidden else {
                throw GenerationError.invalidParameters("embedding span \(span.start)..<\(span.start + span.count) does not fit the prompt")
            }
            end = span.start + span.count
        }
    }
}

/// A language-model conversation state: the KV cache of one sequence and the inputs it holds.
/// A new prompt that starts with the cached inputs only prefills the rest (multi-turn prefix reuse).
public final class LanguageSession: @unchecked Sendable {
    public let model: Qwen2Model
    public let cache: KVSequence
    private var cachedKeys: [Prompt.PositionKey] = []
    public var cachedTokens: [Int] { cachedKeys.map(\.token) }

    public init(model: Qwen2Model, pool: KVPagePool? = nil) {
        self.model = model
        cache = KVSequence(pool: pool ?? model.makeCachePool())
    }

    /// A new conversation that starts with the first `length` cached positions of `source`, holding
    /// `source`'s KV pages rather than copies (copy-on-write): two chats with the same system prompt or
    /// image keep one copy of it. `source` is left as it is.
    public init(sharing source: LanguageSession, length: Int) {
        precondition(length <= source.cache.length)
        model = source.model
        cache = KVSequence(pool: source.cache.pool)
        cache.share(source.cache, length: length)
        cachedKeys = Array(source.cachedKeys.prefix(length))
    }

    public func reset() {
        cache.truncate(to: 0)
        cachedKeys = []
    }

    /// Whether everything this session holds is also the start of what `other` holds.
    public func isPrefix(of other: LanguageSession) -> Bool {
        cachedKeys.count <= other.cachedKeys.count && other.commonPrefix(cachedKeys) == cachedKeys.count
    }

    /// Positions cached now whose inputs (tokens, and media by content) equal the prompt's first ones.
    public func reusableLength(for prompt: Prompt) -> Int {
        commonPrefix(prompt.positionKeys)
    }

    func commonPrefix(_ keys: [Prompt.PositionKey]) -> Int {
        var common = 0
        while common < min(keys.count, cachedKeys.count) && keys[common] == cachedKeys[common] { common += 1 }
        return common
    }

    /// Makes the cache hold `tokens` and returns the logits after the last one, reusing the longest
    /// cached prefix. Returns the number of reused tokens too.
    public func prefill(_ tokens: [Int], chunk: Int) throws -> (logits: [Float], reused: Int) {
        try prefill(Prompt(tokens: tokens), chunk: chunk)
    }

    /// The same for a prompt with media embeddings.
    public func prefill(_ prompt: Prompt, chunk: Int) throws -> (logits: [Float], reused: Int) {
        let r = try prefill(prompt, chunk: chunk, hiddenAt: nil)
        return (r.logits, r.reused)
    }

    /// The same, also returning the final-norm hidden state at position `hiddenAt` (recomputed even
    /// when it lies in the cached prefix).
    public func prefill(_ prompt: Prompt, chunk: Int, hiddenAt: Int?,
                        shouldStop: (() -> Bool)? = nil) throws -> (logits: [Float], reused: Int, hidden: [Float]?) {
        let tokens = prompt.tokens
        precondition(!tokens.isEmpty)
        let h = model.config.hiddenSize
        try prompt.validate(hidden: h)
        let keys = prompt.positionKeys
        var common = commonPrefix(keys)
        common = min(common, tokens.count - 1)  // the last token must run to produce logits
        if let at = hiddenAt, at >= 0, at < tokens.count { common = min(common, at) }
        cache.truncate(to: common)
        cachedKeys.removeLast(cachedKeys.count - common)
        let r = try feed(prompt, keys: keys, from: common, chunk: chunk, hiddenAt: hiddenAt, shouldStop: shouldStop)
        return (r.logits, common, r.hidden)
    }

    /// Prefills a prompt after what the cache holds, whatever that is (a conversation that goes on turn
    /// by turn: a live call). Positions in `prompt` (spans, `hiddenAt`) count from its first token.
    /// `logits: false` skips the LM head (the prompt goes on before anything is sampled).
    public func append(_ prompt: Prompt, chunk: Int, hiddenAt: Int? = nil, logits: Bool = true) throws -> (logits: [Float], hidden: [Float]?) {
        precondition(!prompt.tokens.isEmpty)
        try prompt.validate(hidden: model.config.hiddenSize)
        let context = model.config.maxPositionEmbeddings
        guard cache.length + prompt.tokens.count < context else {
            throw GenerationError.promptTooLong(tokens: cache.length + prompt.tokens.count, context: context)
        }
        return try feed(prompt, keys: prompt.positionKeys, from: 0, chunk: chunk, hiddenAt: hiddenAt, shouldStop: nil, logits: logits)
    }

    /// Runs the prompt's tokens from `first` on (the cache holding the ones before), in chunks.
    private func feed(_ prompt: Prompt, keys: [Prompt.PositionKey], from first: Int, chunk: Int, hiddenAt: Int?,
                      shouldStop: (() -> Bool)?, logits wantLogits: Bool = true) throws -> (logits: [Float], hidden: [Float]?) {
        let tokens = prompt.tokens, h = model.config.hiddenSize
        var captured: [Float]?
        var logits: [Float] = []
        var start = first
        let step = max(1, chunk)
        while start < tokens.count {
            if start > first, shouldStop?() == true { throw GenerationError.stopped }
            let end = min(tokens.count, start + step)
            let x = try model.embed(Array(tokens[start..<end]))
            for span in prompt.spans {
                let lo = max(span.start, start), hi = min(span.start + span.count, end)
                guard lo < hi else { continue }
                (x.pointer + (lo - start) * h).update(from: span.rows.pointer + (lo - span.start) * h, count: (hi - lo) * h)
            }
            let hidden = try withExtendedLifetime(prompt.spans) {
                try model.forward(x, tokens: end - start, cache: cache)
            }
            cachedKeys += keys[start..<end]
            if let at = hiddenAt, at >= start, at < end {
                captured = Array(UnsafeBufferPointer(start: hidden.pointer + (at - start) * h, count: h))
            }
            if end == tokens.count && wantLogits { logits = model.logits(hidden, row: end - start - 1) }
            start = end
        }
        return (logits, captured)
    }

    /// Feeds one token to each of several sessions of one model in a single batched step (each weight read
    /// once for all) and returns each one's next logits.
    public static func step(_ tokens: [Int], sessions: [LanguageSession]) throws -> [[Float]] {
        precondition(tokens.count == sessions.count && !sessions.isEmpty)
        let model = sessions[0].model
        precondition(sessions.allSatisfy { $0.model === model }, "one model per batch")
        if sessions.count == 1 { return [try sessions[0].step(tokens[0])] }
        let hidden = try model.decodeBatch(tokens, caches: sessions.map(\.cache))
        for (s, t) in zip(sessions, tokens) { s.cachedKeys.append(Prompt.PositionKey(token: t, media: 0)) }
        let logits = model.batchLogits(hidden, rows: tokens.count), v = model.config.vocabSize
        return (0..<tokens.count).map { Array(UnsafeBufferPointer(start: logits.pointer + $0 * v, count: v)) }
    }

    /// Feeds one token and returns the next logits.
    public func step(_ token: Int) throws -> [Float] {
        let hidden = try model.forward(try model.embed([token]), tokens: 1, cache: cache)
        cachedKeys.append(Prompt.PositionKey(token: token, media: 0))
        return model.logits(hidden, row: 0)
    }
}

/// Prompt → tokens, with sampling, stop tokens and strings, and streamed text.
public struct TextGenerator: Sendable {
    public let model: Qwen2Model
    public let tokenizer: Qwen2Tokenizer
    /// Tokens that end a turn: `<|im_end|>`, `<|endoftext|>` and the config's eos ids.
    public let stopTokens: Set<Int>
    /// Tokens kept in `tokenIds` but left out of the text: `<|tts_eos|>`, which ends the spoken part
    /// of an answer (the reference strips it from the returned text).
    public let silentTokens: Set<Int>

    public init(model: Qwen2Model, tokenizer: Qwen2Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
        var stops = Set(model.config.eosTokenId)
        for t in ["<|im_end|>", "<|endoftext|>"] { if let id = tokenizer.id(of: t) { stops.insert(id) } }
        stopTokens = stops.filter { $0 >= 0 && $0 < model.config.vocabSize }
        silentTokens = Set(["<|tts_eos|>"].compactMap { tokenizer.id(of: $0) })
    }

    /// Runs to completion; `onText` receives text as it becomes final and returns false to stop early.
    public func generate(prompt: [Int], session: LanguageSession, options: GenerationOptions,
                         onText: (String) -> Bool = { _ in true }) throws -> GenerationResult {
        try generate(prompt: Prompt(tokens: prompt), session: session, options: options, onText: onText)
    }

    /// The same for a prompt with media embeddings.
    public func generate(prompt full: Prompt, session: LanguageSession, options: GenerationOptions,
                         onText: (String) -> Bool = { _ in true }) throws -> GenerationResult {
        try options.sampling.validate()
        let prompt = full.tokens
        guard !prompt.isEmpty else { throw GenerationError.emptyPrompt }
        let context = model.config.maxPositionEmbeddings
        guard prompt.count < context else { throw GenerationError.promptTooLong(tokens: prompt.count, context: context) }
        let budget = min(max(options.maxTokens, 0), context - prompt.count)

        let t0 = Date()
        let pre = try session.prefill(full, chunk: options.prefillChunk, hiddenAt: options.captureHiddenAt, shouldStop: options.shouldStop)
        if let h = pre.hidden { options.onCapturedHidden?(h) }
        let prefillSeconds = Date().timeIntervalSince(t0)
        var result = try decode(from: pre.logits, session: session, options: options, budget: budget, onText: onText)
        result.timings.promptTokens = prompt.count
        result.timings.cachedTokens = pre.reused
        result.timings.prefillSeconds = prefillSeconds
        result.capturedHidden = pre.hidden
        return result
    }

    /// Samples from `logits` (those after the cache's last token) on: the answer, token by token, each
    /// fed to the session but the last. `onToken` sees every token sampled (before its text) and returns
    /// false to stop after it.
    public func decode(from logits: [Float], session: LanguageSession, options: GenerationOptions, budget: Int? = nil,
                       onToken: (Int) -> Bool = { _ in true }, onText: (String) -> Bool = { _ in true }) throws -> GenerationResult {
        let budget = budget ?? min(max(options.maxTokens, 0), model.config.maxPositionEmbeddings - session.cache.length)
        var stream = try TokenStream(generator: self, options: options, budget: budget)
        var logits = logits
        while let token = stream.advance(logits, onToken: onToken, onText: onText) { logits = try session.step(token) }
        return stream.result
    }

    /// The same generation as an async stream (the work runs on its own thread; cancelling the
    /// consuming task stops it after the current token).
    public func stream(prompt: [Int], session: LanguageSession, options: GenerationOptions) -> AsyncThrowingStream<GenerationEvent, Error> {
        stream(prompt: Prompt(tokens: prompt), session: session, options: options)
    }

    public func stream(prompt: Prompt, session: LanguageSession, options: GenerationOptions) -> AsyncThrowingStream<GenerationEvent, Error> {
        AsyncThrowingStream { continuation in
            let cancelled = CancellationFlag()
            continuation.onTermination = { _ in cancelled.cancel() }
            let thread = Thread {
                do {
                    let result = try generate(prompt: prompt, session: session, options: options) { piece in
                        continuation.yield(.text(piece))
                        return !cancelled.isCancelled
                    }
                    continuation.yield(.finished(result))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}

/// A flag one side sets and another polls (a consumer that stopped listening, a worker that checks).
public final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public func cancel() { lock.withLock { value = true } }
    /// Clears it for the next use (a live session's next answer).
    public func reset() { lock.withLock { value = false } }
    public var isCancelled: Bool { lock.withLock { value } }
}

/// Holds back text that might be the start of a stop string, and cuts at the first stop string.
struct StopStringMatcher {
    let stops: [String]
    var pending = ""

    init(_ stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Returns the text that is now final and whether a stop string was reached.
    mutating func push(_ piece: String) -> (String, Bool) {
        guard !stops.isEmpty else { return (piece, false) }
        pending += piece
        if let cut = stops.compactMap({ pending.range(of: $0)?.lowerBound }).min() {
            let out = String(pending[..<cut])
            pending = ""
            return (out, true)
        }
        // keep the longest suffix that is a proper prefix of some stop string
        var keep = 0
        for s in stops {
            for n in stride(from: min(s.count - 1, pending.count), to: 0, by: -1) where n > keep {
                if pending.hasSuffix(String(s.prefix(n))) { keep = n; break }
            }
        }
        let out = String(pending.dropLast(keep))
        pending = String(pending.suffix(keep))
        return (out, false)
    }

    /// Text held back when the generation ends for another reason.
    mutating func finish() -> String {
        defer { pending = "" }
        return pending
    }
}
