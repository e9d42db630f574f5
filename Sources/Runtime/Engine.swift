import Foundation
import Media
import MiniCPMO

/// One turn of a conversation as a client sends it: text and still-encoded media (PNG/JPEG, WAV).
public struct ChatInput: Sendable {
    public enum Part: Sendable {
        case text(String)
        case image(Data)
        case audio(Data)
    }
    public var role: ChatMessage.Role
    public var parts: [Part]

    public init(role: ChatMessage.Role, parts: [Part]) {
        self.role = role
        self.parts = parts
    }
}

/// How an answer is spoken.
public struct SpeechRequest: Sendable {
    /// The opening voice turn; nil speaks with the model's own default.
    public var voice: VoicePrompt?
    /// Speak while writing (cross-faded chunks as they are ready, like `--stream-speech`), or speak
    /// the finished answer at once (like `--speech-out`).
    public var streaming: Bool
    public var sampler: CodeSampler
    public var maxFrames: Int

    public init(voice: VoicePrompt? = nil, streaming: Bool = false, sampler: CodeSampler = CodeSampler(), maxFrames: Int = 2048) {
        self.voice = voice
        self.streaming = streaming
        self.sampler = sampler
        self.maxFrames = maxFrames
    }
}

/// A generation request.
public struct ChatJob: Sendable {
    public var messages: [ChatInput]
    public var options: GenerationOptions
    public var speech: SpeechRequest?
    public var maxSliceNums: Int?

    public init(messages: [ChatInput], options: GenerationOptions, speech: SpeechRequest? = nil, maxSliceNums: Int? = nil) {
        self.messages = messages
        self.options = options
        self.speech = speech
        self.maxSliceNums = maxSliceNums
    }
}

/// What a running request reports.
public enum ChatEvent: Sendable {
    case text(String)
    case audio(SpeechChunk)
    case finished(ChatOutcome)
}

public struct ChatOutcome: Sendable {
    public var result: GenerationResult
    /// The spoken answer (24 kHz), when speech was asked for.
    public var wave: [Float]?
    /// The text the speech says.
    public var spokenText: String?
    public var speechFrames: Int = 0
}

public enum RuntimeError: Error, CustomStringConvertible, Equatable {
    case badMedia(String)
    case contextExceeded(tokens: Int, context: Int)
    case unavailable(String)
    case queueFull(depth: Int)
    case cancelled
    case stopped

    public var description: String {
        switch self {
        case let .badMedia(s): return s
        case let .contextExceeded(t, c):
            return "the prompt has \(t) tokens but the context window holds \(c); shorten the conversation"
        case let .unavailable(s): return s
        case let .queueFull(d): return "the server is busy (\(d) requests waiting); try again shortly"
        case .cancelled: return "the request was cancelled"
        case .stopped: return "the server is shutting down"
        }
    }
}

/// The model and what requests share: the prefix cache and the encoded-media caches. Everything here
/// runs on the scheduler's worker thread, one request at a time.
public final class Engine: @unchecked Sendable {
    public let model: MiniCPMOModel
    public let generator: TextGenerator
    /// Positions one sequence may hold.
    public let contextLength: Int
    let pool: KVPagePool
    let prefixes: PrefixCache
    private let images = MediaCache<EncodedImage>(capacity: 8)
    private let clips = MediaCache<EncodedAudio>(capacity: 8)
    private let statsLock = NSLock()
    private var stats = CacheStats()

    public struct CacheStats: Sendable {
        public var kvPagesInUse = 0
        public var kvBytesInUse = 0
        public var cachedSessions = 0
        public var cachedBytes = 0
        public var prefixHits = 0
        public var prefixMisses = 0
    }

    /// - contextLength: positions per sequence (nil: the model's max_position_embeddings).
    /// - cacheBytes: memory the prefix cache may keep between requests.
    /// - kvPages: the most KV pages (32 positions of every layer each) all sequences may hold together
    ///   (nil: no bound). The batching scheduler preempts answers when they run out.
    public init(model: MiniCPMOModel, contextLength: Int? = nil, cacheBytes: Int = 512 << 20, kvPages: Int? = nil) throws {
        self.model = model
        generator = try model.textGenerator()
        let maxContext = model.llm.config.maxPositionEmbeddings
        self.contextLength = min(max(contextLength ?? maxContext, 2), maxContext)
        pool = model.llm.makeCachePool(maxPages: kvPages)
        prefixes = PrefixCache(model: model.llm, pool: pool, budgetBytes: cacheBytes)
        updateStats()
    }

    public var cacheStats: CacheStats { statsLock.withLock { stats } }

    private func updateStats(hit: Bool? = nil) {
        let pages = pool.pagesInUse, per = pool.bytesPerPage
        let sessions = prefixes.count, bytes = prefixes.bytes
        statsLock.withLock {
            stats.kvPagesInUse = pages
            stats.kvBytesInUse = pages * per
            stats.cachedSessions = sessions
            stats.cachedBytes = bytes
            if let hit { if hit { stats.prefixHits += 1 } else { stats.prefixMisses += 1 } }
        }
    }

    /// Decodes and encodes an image, or returns the encoding of the same bytes kept from before.
    public func encodeImage(_ data: Data, maxSliceNums: Int?) throws -> EncodedImage {
        try images.value(for: contentKey(data, salt: UInt64(maxSliceNums ?? 0))) {
            let image: RGBImage
            do { image = try ImageDecoder.decode(data: data) } catch { throw RuntimeError.badMedia("the image could not be decoded: \(error)") }
            return try model.encodeImage(image, maxSliceNums: maxSliceNums)
        }
    }

    /// Decodes (WAV, resampled to 16 kHz) and encodes a recording, or returns the kept encoding.
    public func encodeAudio(_ data: Data) throws -> EncodedAudio {
        try clips.value(for: contentKey(data)) {
            let samples: [Float]
            do { samples = try WAVDecoder().load16k(data) } catch { throw RuntimeError.badMedia("the audio could not be decoded: \(error)") }
            // a clip too short for one audio token would vanish from the prompt without a trace
            guard AudioPlaceholder.tokens(samples: samples.count) > 0 else {
                throw RuntimeError.badMedia(String(format: "the audio is too short to encode (%.1f ms)", Double(samples.count) / 16))
            }
            return try model.encodeAudio(samples16k: samples)
        }
    }

    /// The prompt of a request: its media encoded, the voice turn first when speaking, MiniCPM-o's
    /// template (the speech one when speaking or when audio is in the conversation).
    public func prompt(for job: ChatJob) throws -> Prompt {
        do {
            var messages: [MultimodalMessage] = []
            if let voice = job.speech?.voice { messages.append(voice.message) }
            for m in job.messages {
                let parts = try m.parts.map { part -> ContentPart in
                    switch part {
                    case let .text(t): return .text(t)
                    case let .image(d): return .image(try encodeImage(d, maxSliceNums: job.maxSliceNums))
                    case let .audio(d): return .audio(try encodeAudio(d))
                    }
                }
                messages.append(MultimodalMessage(role: m.role, parts: parts))
            }
            return try model.prompt(messages, tokenizer: generator.tokenizer, generationPrompt: job.speech != nil ? .assistantSpeech : nil)
        } catch let e as ModelLoadError {
            throw RuntimeError.unavailable("\(e)")
        } catch let e as MissingPartError {  // e.g. an image for a checkpoint without vision weights
            throw RuntimeError.unavailable("\(e)")
        } catch let e as ConfigError {
            throw RuntimeError.unavailable("\(e)")
        }
    }

    /// The request's prompt and its options, its answer bounded by what the context has left.
    func prepare(_ job: ChatJob) throws -> (Prompt, GenerationOptions) {
        let prompt = try self.prompt(for: job)
        guard prompt.tokens.count < contextLength else {
            throw RuntimeError.contextExceeded(tokens: prompt.tokens.count, context: contextLength)
        }
        var options = job.options
        options.maxTokens = min(options.maxTokens, contextLength - prompt.tokens.count)
        return (prompt, options)
    }

    /// The cached conversation that shares the longest prefix with `prompt`, or a new one.
    func checkout(for prompt: Prompt) -> LanguageSession { prefixes.checkout(for: prompt) }

    /// A finished conversation is kept for reuse; a cancelled or failed one gives its pages back at once.
    func release(_ session: LanguageSession, keep: Bool, hit: Bool? = nil) {
        if keep { prefixes.checkin(session) } else { session.reset() }
        updateStats(hit: hit)
    }

    /// Runs one request to the end (or until `cancelled` says so), reporting as it goes.
    public func run(_ job: ChatJob, cancelled: @escaping @Sendable () -> Bool, emit: @escaping @Sendable (ChatEvent) -> Void) throws -> ChatOutcome {
        var (prompt, options) = try prepare(job)
        let speaker = SpeakerBox()
        if let speech = job.speech {
            let stack: SpeechModel
            do { stack = try model.speech() } catch { throw RuntimeError.unavailable("this model cannot speak: \(error)") }
            options.captureHiddenAt = try prompt.speakerPosition(tokenizer: generator.tokenizer)
            if speech.streaming {
                options.onCapturedHidden = { hidden in
                    let streamer = SpeechStreamer(speech: stack, speakerHidden: hidden, sampler: speech.sampler,
                                                  maxFrames: speech.maxFrames) { chunk in
                        speaker.wave += chunk.samples
                        emit(.audio(chunk))
                    }
                    streamer.shouldStop = cancelled
                    speaker.streamer = streamer
                }
            }
        }
        let session = checkout(for: prompt)
        var keep = false
        defer { release(session, keep: keep) }
        options.shouldStop = cancelled
        var written = ""
        let result: GenerationResult
        do {
            result = try generator.generate(prompt: prompt, session: session, options: options) { piece in
                guard !cancelled() else { return false }
                emit(.text(piece))
                if let s = speaker.streamer {
                    written += piece
                    s.update(text: written)
                }
                return !cancelled()
            }
        } catch GenerationError.stopped {
            throw RuntimeError.cancelled
        }
        updateStats(hit: result.timings.cachedTokens > 0)
        if result.finishReason == .cancelled || cancelled() { throw RuntimeError.cancelled }
        var outcome = ChatOutcome(result: result)
        if let speech = job.speech {
            outcome.spokenText = SpeechModel.spokenText(result.tokenIds, tokenizer: generator.tokenizer)
            if let streamer = speaker.streamer {
                streamer.finish()
                if cancelled() { throw RuntimeError.cancelled }
                outcome.wave = speaker.wave
                outcome.speechFrames = streamer.codes.count
            } else if let hidden = result.capturedHidden {
                var sampler = speech.sampler
                let spoken = try model.speech().speak(text: outcome.spokenText ?? "", speakerHidden: hidden, sampler: &sampler,
                                                      maxFrames: speech.maxFrames, shouldStop: cancelled)
                if cancelled() { throw RuntimeError.cancelled }
                outcome.wave = spoken.wave
                outcome.speechFrames = spoken.codes.count
            }
        }
        keep = true
        emit(.finished(outcome))
        return outcome
    }

    /// Pages of the KV pool: in use, and the bound (nil: none).
    var kvPages: (inUse: Int, max: Int?) { (pool.pagesInUse, pool.maxPages) }

    /// Drops every kept conversation.
    public func clearPrefixCache() {
        prefixes.removeAll()
        updateStats()
    }
}

/// The speech stream of a request, made once the speaker vector is known (from inside the prefill).
private final class SpeakerBox: @unchecked Sendable {
    var streamer: SpeechStreamer?
    var wave: [Float] = []
}
