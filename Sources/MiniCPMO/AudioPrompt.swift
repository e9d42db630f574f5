import Foundation

/// Audio ready for a prompt: LLM embeddings at 25 per second, all pieces of the clip concatenated.
public struct EncodedAudio: @unchecked Sendable {
    /// [tokens, hidden].
    public let embeddings: FloatBuffer
    public let tokens: Int
    /// Samples at 16 kHz (the placeholder length is computed from the whole clip).
    public let samples: Int
    public let key: UInt64
    public var seconds: Double { Double(samples) / 16000 }
}

/// Placeholder text and token counts of spec §4.4.
public enum AudioPlaceholder {
    /// LLM tokens for a clip of `samples` at 16 kHz: mel frames f = ⌈N/160⌉, encoder frames
    /// c = (f − 1)/2 + 1, pooled n = (c − step)/step + 1.
    public static func tokens(samples: Int, poolStep: Int = 2) -> Int {
        let f = (samples + 159) / 160
        let c = (f - 1) / 2 + 1
        return AudioModel.pooledTokens(encoderFrames: c, step: poolStep)
    }

    /// `<|audio_start|>` + `<unk>`×k + `<|audio_end|>` per chunk of `chunkSeconds` (k = 25 for 1 s at
    /// pool step 2), or a single run of all tokens without chunking.
    public static func text(samples: Int, poolStep: Int = 2, chunked: Bool = true, chunkSeconds: Double = 1) -> String {
        let n = tokens(samples: samples, poolStep: poolStep)
        func chunk(_ k: Int) -> String { "<|audio_start|>" + String(repeating: "<unk>", count: k) + "<|audio_end|>" }
        guard chunked else { return chunk(n) }
        // as the reference: ⌈n / per⌉ chunks, so a clip too short for one token gets no placeholder
        let per = max(tokens(samples: Int(chunkSeconds * 16000), poolStep: poolStep), 1)
        return stride(from: 0, to: n, by: per).map { chunk(min(per, n - $0)) }.joined()
    }
}

extension MiniCPMOModel {
    /// The audio encoder and projector, bound on first use.
    public func audio() throws -> AudioModel {
        try lazily(\.audioResult) {
            guard let config = try AudioConfig.decode(config, source: directory + "/config.json") else {
                throw ModelLoadError.noAudio(directory)
            }
            try PreprocessorConfig.check(directory: directory, vision: nil)
            try checkpoint.requirePart("apm.", "audio encoder weights (apm.*)", for: "hear audio")
            return try AudioModel.load(checkpoint, config: config, quantize: encoderFormat)
        }
    }

    /// Encodes log-mel pieces of one clip (each [mel, frames], at most 30 s) into its embeddings:
    /// each piece keeps its first (T' − 2)/2 + 1 pooled rows, pieces are concatenated in order.
    /// With a streaming state, the pieces are encoded as the next pieces of that stream (a live call's units).
    public func encodeAudio(melPieces: [(values: [Float], frames: Int)], samples: Int,
                            streaming: WhisperEncoder.StreamingState? = nil) throws -> EncodedAudio {
        let audio = try audio()
        let h = audio.config.embedDim
        var rows: [Float] = []
        var hash = Hasher64()
        hash.add(UInt64(samples))
        for piece in melPieces {
            let keep = audio.tokens(frames: piece.frames)
            let pooled = piece.values.withUnsafeBufferPointer {
                audio.forward(mel: $0.baseAddress!, frames: piece.frames, streaming: streaming).pooled
            }
            rows += UnsafeBufferPointer(start: pooled.pointer, count: min(keep, pooled.count / h) * h)
            piece.values.withUnsafeBytes { hash.add(bytes: $0) }
        }
        return EncodedAudio(embeddings: FloatBuffer(rows), tokens: rows.count / h, samples: samples, key: hash.value)
    }

    /// The positions strictly between each `<|audio_start|>` and the next `<|audio_end|>`, in order.
    static func audioBounds(_ tokens: [Int], tokenizer: Qwen2Tokenizer) throws -> [Range<Int>] {
        guard let start = tokenizer.id(of: "<|audio_start|>") else { throw MultimodalError.missingToken("<|audio_start|>") }
        guard let end = tokenizer.id(of: "<|audio_end|>") else { throw MultimodalError.missingToken("<|audio_end|>") }
        var bounds: [Range<Int>] = []
        var open: Int?
        for (i, t) in tokens.enumerated() {
            if t == start { open = i + 1 } else if t == end, let s = open { bounds.append(s..<i); open = nil }
        }
        return bounds
    }

    /// Spans pouring the audio embeddings, concatenated in order, into consecutive audio bounds (as the
    /// reference fills them). Bounds beyond the available rows keep their `<unk>` embeddings.
    static func audioSpans(_ audios: [EncodedAudio], bounds: [Range<Int>], hidden: Int) -> [EmbeddingSpan] {
        var spans: [EmbeddingSpan] = []
        var source = audios.makeIterator()
        var current = source.next(), offset = 0
        for bound in bounds {
            var pos = bound.lowerBound
            while pos < bound.upperBound, let audio = current {
                let take = min(bound.upperBound - pos, audio.tokens - offset)
                if take > 0 {
                    let rows = FloatBuffer(count: take * hidden)
                    rows.pointer.update(from: audio.embeddings.pointer + offset * hidden, count: take * hidden)
                    spans.append(EmbeddingSpan(start: pos, count: take, rows: rows, key: audio.key &+ UInt64(offset)))
                    pos += take
                    offset += take
                }
                if offset >= audio.tokens { current = source.next(); offset = 0 }
            }
        }
        return spans
    }
}
