import Foundation
import Kernels
import Media
import Models
import Text

/// A live call with the model (MiniCPM-o's `streaming_prefill` / `streaming_generate`, spec §4.5, §6.2):
/// what the user says arrives in units of about a second (16 kHz audio, optionally one video frame) and
/// each is prefilled as it comes, so that an answer can start as soon as the user stops.
///
/// The prompt grows as the reference's does:
/// - `start` prefills the system message (with a voice to clone, if given) through the speech template;
/// - each unit is `<unit>` + the frame's placeholder + the audio's; a turn's first unit opens the user
///   message, closing the answer before it (`<|im_end|>\n`, or `<|tts_eos|><|im_end|>\n` when that
///   answer was interrupted);
/// - the units of a turn go through the Whisper encoder one at a time with its keys and values kept:
///   positions continue and every earlier frame of the turn is visible; that state is dropped when it
///   would pass the position table, and when an answer starts;
/// - `answer` appends `<|im_end|>\n<|im_start|>assistant\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>`
///   and writes, speaking as it writes; every token written stays in the conversation.
public final class OmniSession: @unchecked Sendable {
    public static let defaultSystemPrompt =
        "You are a helpful assistant. You can accept video, audio and text input and output voice and text. "
    public static let cloningSystemPrompt =
        "You are a helpful assistant. You can accept video, audio and text input and output voice and text. "
        + "Clone the voice in the provided audio prompt."
    public static let cloningSuffix = "As an assistant, you will speak using this voice style."
    static let answerPrefix = "<|im_end|>\n<|im_start|>assistant\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>"
    /// The reference's LLM writes 3 tokens per call and re-reads the spoken text after each call.
    static let tokensPerSpeechUpdate = 3
    /// Frames of the first audio chunk of an answer (of 25 per text chunk): the sooner it plays, the
    /// sooner the caller hears the answer. The codes do not depend on it.
    public var firstChunkFrames = 10
    /// The longest unit the encoder takes in one piece.
    public static let maxUnitSamples = 30 * 16000

    /// One piece of what the user says and shows.
    public struct Unit: Sendable {
        public var audio: [Float]
        public var frame: RGBImage?
        public init(audio: [Float], frame: RGBImage? = nil) {
            self.audio = audio
            self.frame = frame
        }
    }

    /// What one prefill put into the conversation.
    public struct Prefilled: Sendable {
        /// The prompt's own tokens (the last token of the answer before, which decode does not feed,
        /// goes in ahead of them).
        public var tokens: [Int]
        /// The unit's audio embeddings [rows, hidden], and the encoder position they started at.
        public var audioRows: [Float]
        public var audioOffset: Int
        /// Seconds encoding the unit's audio and frame, and in all (with the language model's prefill).
        public var encodeSeconds: Double
        public var seconds: Double
    }

    public enum Event: Sendable {
        case text(String)
        case audio(SpeechChunk)
    }

    public struct Answer: Sendable {
        public var text: String
        public var tokenIds: [Int]
        public var finishReason: FinishReason
        public var interrupted: Bool
        /// The speech codes [frames][4] (empty without speech).
        public var codes: [[Int]]
        public var speakerHidden: [Float]
        /// Seconds from the call to answer(): encoding the unit heard with the header, the prefill,
        /// the first token, text, audio.
        public var encodeSeconds: Double
        public var prefillSeconds: Double
        public var firstTokenAfter: Double?
        public var firstTextAfter: Double?
        public var firstAudioAfter: Double?
        public var seconds: Double
    }

    public let model: MiniCPMOModel
    public let tokenizer: Qwen2Tokenizer
    public let language: LanguageSession
    /// Frames go through the slicer with at most this many slices (1; the reference's "HD" video uses 6).
    public var maxSliceNums = 1
    public var prefillChunk = 512
    private let audio: AudioModel
    private let whisper: WhisperEncoder.StreamingState
    private let generator: TextGenerator
    private var started = false
    private var newUserMessage = true
    private var answered = false
    private var answerCompleted = false
    /// Tokens written but not yet in the cache (the last one of an answer is never fed by decode).
    private var unfed: [Int] = []
    private let stopFlag = CancellationFlag()

    public init(model: MiniCPMOModel, tokenizer: Qwen2Tokenizer, pool: KVPagePool? = nil) throws {
        self.model = model
        self.tokenizer = tokenizer
        audio = try model.audio()
        whisper = audio.encoder.makeStreamingState()
        generator = TextGenerator(model: model.llm, tokenizer: tokenizer)
        language = LanguageSession(model: model.llm, pool: pool)
        for t in ["<unit>", "<|audio_start|>", "<|audio_end|>", "<|spk|>", "<|tts_eos|>"] where tokenizer.id(of: t) == nil {
            throw OmniError.missingToken(t)
        }
    }

    /// Every token the conversation holds so far.
    public var conversation: [Int] { language.cachedTokens + unfed }

    /// Prefills the system message: `system`, then (when given) the voice to clone and `voiceSuffix`.
    @discardableResult
    public func start(system: String? = nil, voice: [Float]? = nil, voiceSuffix: String = OmniSession.cloningSuffix) throws -> Prefilled {
        guard !started else { throw OmniError.alreadyStarted }
        var content = system ?? (voice == nil ? Self.defaultSystemPrompt : Self.cloningSystemPrompt)
        var clip: [Float]?
        if let voice {
            guard !voice.isEmpty, voice.count <= Self.maxUnitSamples else { throw OmniError.badVoice(voice.count) }
            content += "\u{0}AUDIO\u{0}" + voiceSuffix
            clip = voice
        }
        let p = try prefill(text: "<|im_start|>user\n" + content + "<|im_end|>\n", audio: clip, frame: nil)
        whisper.reset()
        started = true
        return p
    }

    /// Prefills one unit of the user's turn.
    @discardableResult
    public func listen(_ unit: Unit) throws -> Prefilled {
        let (prompt, info) = try prepare(unit)
        return try run(prompt, info)
    }

    /// The unit's prompt (its media encoded), not yet run.
    private func prepare(_ unit: Unit) throws -> (Prompt, Prefilled) {
        guard !unit.audio.isEmpty, unit.audio.count <= Self.maxUnitSamples else { throw OmniError.badUnit(unit.audio.count) }
        if !started { try start() }
        var content = "<unit>" + (unit.frame != nil ? "\u{0}IMAGE\u{0}" : "") + "\u{0}AUDIO\u{0}"
        if newUserMessage {
            let close = answered ? (answerCompleted ? "<|im_end|>\n" : "<|tts_eos|><|im_end|>\n") : ""
            content = close + "<|im_start|>user\n" + content
            newUserMessage = false
        }
        return try prepare(text: content, audio: unit.audio, frame: unit.frame)
    }

    /// Stops the answer being written or spoken, from any thread. The next unit then opens the user's
    /// turn after `<|tts_eos|><|im_end|>`.
    public func interrupt() { stopFlag.cancel() }

    /// Writes (and, given a speech model, speaks) the answer to what was heard. `options.maxTokens` bounds
    /// it; `options.shouldStop`, asked after every token, interrupts it as `interrupt()` does; `onEvent`
    /// receives text and audio as they are ready.
    /// `after`: the turn's last unit, prefilled in the same pass as the answer's header (one pass over
    /// the weights instead of two: the same conversation, sooner).
    public func answer(after last: Unit? = nil, options: GenerationOptions, speech: SpeechModel?,
                       sampler: CodeSampler = CodeSampler(), onEvent: @escaping (Event) -> Void = { _ in }) throws -> Answer {
        if !started { try start() }
        let encodeStart = Date()
        let heard = try last.map { try prepare($0).0 }
        let encodeSeconds = Date().timeIntervalSince(encodeStart)
        stopFlag.reset()
        newUserMessage = true
        answered = true
        answerCompleted = false
        whisper.reset()
        let t0 = Date()
        let prefix = (heard?.tokens ?? unfed) + tokenizer.encode(Self.answerPrefix)
        let spk = tokenizer.id(of: "<|spk|>")!
        let at = prefix.lastIndex(of: spk)!
        let pre = try language.append(Prompt(tokens: prefix, spans: heard?.spans ?? []), chunk: prefillChunk, hiddenAt: at)
        unfed = []
        let prefillSeconds = Date().timeIntervalSince(t0)
        let speakerHidden = pre.hidden ?? []
        var firstText: Double?, firstAudio: Double?, firstToken: Double?
        var streamer: SpeechStreamer?
        if let speech {
            let s = SpeechStreamer(speech: speech, speakerHidden: speakerHidden, sampler: sampler) { chunk in
                if firstAudio == nil, !chunk.samples.isEmpty { firstAudio = Date().timeIntervalSince(t0) }
                onEvent(.audio(chunk))
            }
            s.shouldStop = { [stopFlag] in stopFlag.isCancelled }
            s.firstChunkFrames = firstChunkFrames
            streamer = s
        }
        let ttsEOS = tokenizer.id(of: "<|tts_eos|>")!
        var spoken = "", speaking = true, count = 0
        // the speech reads what each 3-token call wrote, as the reference's streaming speech does
        var fed = 0
        func speak() {
            streamer?.append(call: String(spoken.dropFirst(fed)))
            fed = spoken.count
        }
        let fedBefore = language.cache.length
        let result = try generator.decode(from: pre.logits, session: language, options: options, onToken: { [stopFlag] token in
            // the text of every call of 3 tokens before this one is in
            if count > 0, count % Self.tokensPerSpeechUpdate == 0 { speak() }
            if firstToken == nil { firstToken = Date().timeIntervalSince(t0) }
            count += 1
            if token == ttsEOS { speaking = false }
            if options.shouldStop?() == true { stopFlag.cancel() }
            return !stopFlag.isCancelled
        }, onText: { [stopFlag] piece in
            if firstText == nil { firstText = Date().timeIntervalSince(t0) }
            if speaking { spoken += piece }
            onEvent(.text(piece))
            return !stopFlag.isCancelled
        })
        unfed = Array(result.tokenIds.dropFirst(language.cache.length - fedBefore))
        answerCompleted = !stopFlag.isCancelled
        if let streamer, answerCompleted {
            speak()
            streamer.finish()
        }
        let interrupted = stopFlag.isCancelled
        return Answer(text: result.text, tokenIds: result.tokenIds, finishReason: result.finishReason, interrupted: interrupted,
                      codes: streamer?.codes ?? [], speakerHidden: speakerHidden, encodeSeconds: encodeSeconds,
                      prefillSeconds: prefillSeconds,
                      firstTokenAfter: firstToken, firstTextAfter: firstText,
                      firstAudioAfter: firstAudio, seconds: Date().timeIntervalSince(t0))
    }

    private func prefill(text: String, audio clip: [Float]?, frame: RGBImage?) throws -> Prefilled {
        let (prompt, info) = try prepare(text: text, audio: clip, frame: frame)
        return try run(prompt, info)
    }

    private func run(_ prompt: Prompt, _ info: Prefilled) throws -> Prefilled {
        let t0 = Date()
        _ = try language.append(prompt, chunk: prefillChunk, logits: false)
        unfed = []
        var info = info
        info.seconds += Date().timeIntervalSince(t0)
        return info
    }

    /// Tokenizes `text` (with `\0AUDIO\0` / `\0IMAGE\0` marking where the media go) and encodes the media: the
    /// prompt to append, the unfed token first.
    private func prepare(text: String, audio clip: [Float]?, frame: RGBImage?) throws -> (Prompt, Prefilled) {
        let t0 = Date()
        let h = model.llm.config.hiddenSize
        var text = text
        var image: EncodedImage?
        if let frame {
            let vision = try model.vision()
            let encoded = try model.encodeImage(frame, maxSliceNums: maxSliceNums)
            text = text.replacingOccurrences(of: "\u{0}IMAGE\u{0}", with: ImagePreprocessor.placeholderText(
                imageIndex: 0, grid: encoded.grid, queryNum: vision.config.queryNum, useImageID: false))
            image = encoded
        }
        var clips: [EncodedAudio] = [], offset = 0
        if let clip {
            clips = [try model.encodeAudio(melPieces: [WhisperFeatures.logMel(samples16k: clip)], samples: clip.count, streaming: whisper)]
            offset = whisper.lastOffset
            text = text.replacingOccurrences(of: "\u{0}AUDIO\u{0}", with: AudioPlaceholder.text(
                samples: clip.count, poolStep: audio.config.poolStep, chunked: true, chunkSeconds: 1))
        }
        let own = tokenizer.encode(text), tokens = unfed + own
        let spans = try model.mediaSpans(tokens, images: image.map { [$0] } ?? [], audios: clips, tokenizer: tokenizer)
        let rows = clips.first.map { Array(UnsafeBufferPointer(start: $0.embeddings.pointer, count: $0.tokens * h)) } ?? []
        return (Prompt(tokens: tokens, spans: spans),
                Prefilled(tokens: own, audioRows: rows, audioOffset: offset, encodeSeconds: Date().timeIntervalSince(t0),
                          seconds: Date().timeIntervalSince(t0)))
    }
}

public enum OmniError: Error, CustomStringConvertible {
    case missingToken(String)
    case alreadyStarted
    case badUnit(Int)
    case badVoice(Int)

    public var description: String {
        switch self {
        case let .missingToken(t): return "the tokenizer has no \(t) token: this checkpoint cannot hold a live call"
        case .alreadyStarted: return "the live session has already started"
        case let .badUnit(n): return "a live unit must hold 1 to \(OmniSession.maxUnitSamples) samples of 16 kHz audio, not \(n)"
        case let .badVoice(n): return "a voice reference must hold 1 to \(OmniSession.maxUnitSamples) samples of 16 kHz audio, not \(n)"
        }
    }
}
