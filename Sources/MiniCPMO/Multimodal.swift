import Foundation
import Media

/// An image ready for a prompt: the resampler embeddings of its source image and slices.
public struct EncodedImage: @unchecked Sendable {
    /// Slicing grid (columns × rows); nil when the image is not sliced.
    public let grid: SliceGrid?
    /// [queryNum, hidden] per model image: the source first, then the slices row by row.
    public let embeddings: [FloatBuffer]
    /// Identifies the pixels, so that a cached prefix is reused only for the same image.
    public let key: UInt64
    /// Original size, for messages.
    public let width: Int, height: Int
}

/// One part of a message's content.
public enum ContentPart: Sendable {
    case text(String)
    case image(EncodedImage)
    case audio(EncodedAudio)

    var isAudio: Bool { if case .audio = self { true } else { false } }
    var isImage: Bool { if case .image = self { true } else { false } }
}

/// A conversation turn with images (and later audio) among its text.
public struct MultimodalMessage: Sendable {
    public var role: ChatMessage.Role
    public var parts: [ContentPart]

    public init(role: ChatMessage.Role, parts: [ContentPart]) {
        self.role = role
        self.parts = parts
    }

    public static func user(_ parts: [ContentPart]) -> MultimodalMessage { .init(role: .user, parts: parts) }
    public static func system(_ text: String) -> MultimodalMessage { .init(role: .system, parts: [.text(text)]) }
    public static func assistant(_ text: String) -> MultimodalMessage { .init(role: .assistant, parts: [.text(text)]) }
}

public enum MultimodalError: Error, CustomStringConvertible {
    case missingToken(String)
    case placeholderMismatch(expected: Int, found: Int)
    case audioPlaceholderMismatch(expected: Int, found: Int)

    public var description: String {
        switch self {
        case let .missingToken(t): return "the tokenizer has no '\(t)' token, which image prompts need"
        case let .placeholderMismatch(e, f):
            return "the prompt has \(f) image placeholders but \(e) encoded images and slices (does the text contain <image> or <slice> markers?)"
        case let .audioPlaceholderMismatch(e, f):
            return "the prompt has \(f) audio placeholder positions but the audio needs \(e) (does the text contain <|audio_start|> markers?)"
        }
    }
}

extension MiniCPMOModel {
    /// Slices, encodes and resamples an image (spec §3). `maxSliceNums` overrides the config's.
    public func encodeImage(_ image: RGBImage, maxSliceNums: Int? = nil) throws -> EncodedImage {
        let vision = try vision()
        let vc = vision.config
        let slices = vc.sliceMode ? (maxSliceNums ?? vc.slice.maxSliceNums) : 1
        let pre = try ImagePreprocessor(config: SliceConfig(maxSliceNums: max(1, slices), scaleResolution: vc.slice.scaleResolution,
                                                            patchSize: vc.slice.patchSize)).preprocess(image)
        let embeddings = pre.images.map { strip in
            strip.pixels.withUnsafeBufferPointer {
                vision.forward(strip: $0.baseAddress!, rows: strip.tgtRows, cols: strip.tgtCols).embeddings
            }
        }
        var hash = Hasher64()
        hash.add(UInt64(image.width)); hash.add(UInt64(image.height)); hash.add(UInt64(slices))
        hash.add(image.pixels)
        return EncodedImage(grid: pre.grid, embeddings: embeddings, key: hash.value, width: image.width, height: image.height)
    }

    /// Decodes (PNG/JPEG) and encodes an image file.
    public func encodeImage(contentsOf url: URL, maxSliceNums: Int? = nil) throws -> EncodedImage {
        try encodeImage(try ImageDecoder.decode(contentsOf: url), maxSliceNums: maxSliceNums)
    }

    /// Renders a conversation as MiniCPM-o's chat() does and places every image's and audio clip's
    /// embeddings over their `<unk>` placeholders: parts of a message are joined with "\n", each image
    /// becomes its placeholder text (image ids count across the conversation), each clip its audio
    /// chunks, then ChatML. Without an explicit `generationPrompt`, a conversation with audio gets the
    /// speech template (`<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>` after the assistant header), as
    /// chat() switches to it whenever a message holds audio.
    public func prompt(_ messages: [MultimodalMessage], tokenizer: Qwen2Tokenizer,
                       generationPrompt: ChatTemplate.GenerationPrompt? = nil) throws -> Prompt {
        var images: [EncodedImage] = [], audios: [EncodedAudio] = []
        let hasImages = messages.contains { $0.parts.contains(where: \.isImage) }
        let hasAudio = messages.contains { $0.parts.contains(where: \.isAudio) }
        let visionConfig = hasImages ? try vision().config : nil
        let audioConfig = hasAudio ? try audio().config : nil
        let rendered = messages.map { m in
            ChatMessage(role: m.role, content: m.parts.map { part -> String in
                switch part {
                case let .text(t): return t
                case let .image(img):
                    images.append(img)
                    return ImagePreprocessor.placeholderText(imageIndex: images.count - 1, grid: img.grid,
                                                            queryNum: visionConfig?.queryNum ?? 64,
                                                            useImageID: visionConfig?.useImageID ?? true)
                case let .audio(clip):
                    audios.append(clip)
                    let c = audioConfig ?? AudioConfig(embedDim: llm.config.hiddenSize)
                    return AudioPlaceholder.text(samples: clip.samples, poolStep: c.poolStep, chunked: c.chunkInput,
                                                 chunkSeconds: c.chunkLength)
                }
            }.joined(separator: "\n"))
        }
        let template = generationPrompt ?? (hasAudio ? .assistantSpeech : .assistant)
        let tokens = tokenizer.encode(try ChatTemplate.render(rendered, generationPrompt: template, template: try chatTemplate()))
        let spans = try mediaSpans(tokens, images: images, audios: audios, tokenizer: tokenizer)
        return Prompt(tokens: tokens, spans: spans)
    }

    /// Spans placing the images' rows (one per `<image>`/`<slice>` bound, in order) and the clips'
    /// embeddings (poured through the audio bounds) over their placeholders in `tokens`; a placeholder
    /// count that does not match is an error.
    func mediaSpans(_ tokens: [Int], images: [EncodedImage], audios: [EncodedAudio], tokenizer: Qwen2Tokenizer) throws -> [EmbeddingSpan] {
        var spans: [EmbeddingSpan] = []
        let hidden = llm.config.hiddenSize
        if !images.isEmpty {
            let bounds = try Self.imageBounds(tokens, tokenizer: tokenizer)
            let rows = images.flatMap { img in img.embeddings.map { (img.key, $0) } }
            guard bounds.count == rows.count else { throw MultimodalError.placeholderMismatch(expected: rows.count, found: bounds.count) }
            for (k, (bound, row)) in zip(bounds, rows).enumerated() {
                guard row.1.count == bound.count * hidden else {
                    throw MultimodalError.placeholderMismatch(expected: row.1.count / hidden, found: bound.count)
                }
                spans.append(EmbeddingSpan(start: bound.lowerBound, count: bound.count, rows: row.1, key: row.0 &+ UInt64(k)))
            }
        }
        if !audios.isEmpty {
            let bounds = try Self.audioBounds(tokens, tokenizer: tokenizer)
            // the placeholders count from each clip's whole length (a clip cut into 30 s pieces may embed one row more or less)
            let step = try audio().config.poolStep
            let expected = audios.reduce(0) { $0 + AudioPlaceholder.tokens(samples: $1.samples, poolStep: step) }
            let found = bounds.reduce(0) { $0 + $1.count }
            guard found == expected else { throw MultimodalError.audioPlaceholderMismatch(expected: expected, found: found) }
            spans += Self.audioSpans(audios, bounds: bounds, hidden: hidden)
        }
        return spans
    }

    /// The positions strictly between each `<image>`/`<slice>` token and its closing token, in order.
    static func imageBounds(_ tokens: [Int], tokenizer: Qwen2Tokenizer) throws -> [Range<Int>] {
        func id(_ t: String) throws -> Int {
            guard let i = tokenizer.id(of: t) else { throw MultimodalError.missingToken(t) }
            return i
        }
        let starts: Set<Int> = [try id("<image>"), try id("<slice>")]
        let ends: Set<Int> = [try id("</image>"), try id("</slice>")]
        var bounds: [Range<Int>] = []
        var open: Int?
        for (i, t) in tokens.enumerated() {
            if starts.contains(t) { open = i + 1 }
            else if ends.contains(t), let s = open { bounds.append(s..<i); open = nil }
        }
        return bounds
    }
}

/// FNV-1a, 64-bit: a stable content key (Swift's Hasher is seeded per process).
public struct Hasher64 {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}
    public mutating func add(_ v: UInt64) { withUnsafeBytes(of: v) { add(bytes: $0) } }
    public mutating func add(_ bytes: [UInt8]) { bytes.withUnsafeBytes { add(bytes: $0) } }
    public mutating func add(bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        value = h
    }
}
