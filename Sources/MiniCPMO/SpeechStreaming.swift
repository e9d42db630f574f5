import Foundation

/// Linear overlap-add of consecutive waveform chunks (spec §5.5, MiniCPM-o's _linear_overlap_add2_wav):
/// with W = max(LA, LB) + O and triangular weights w_k = 0.5 − |(k + 1)/(W + 1) − 0.5|, A·w[W−LA…] and
/// B·w[0…LB] are added at offsets 0 and LA − O and divided by the summed weights.
public enum CrossFade {
    public static let overlap = 2048

    /// Returns (the part of A's span that is final, the tail to keep as the new "previous").
    public static func join(_ a: [Float], _ b: [Float], overlap o: Int = overlap) -> (emit: [Float], keep: [Float]) {
        let la = a.count, lb = b.count
        guard la >= o, lb >= o else { return (a, b) }  // too short to overlap: play them back to back
        let w = max(la, lb) + o
        let weights = (0..<w).map { k -> Float in Float(0.5 - abs(Double(k + 1) / Double(w + 1) - 0.5)) }
        var out = [Float](repeating: 0, count: la + lb - o), sum = [Float](repeating: 0, count: la + lb - o)
        for i in 0..<la { out[i] += a[i] * weights[w - la + i]; sum[i] += weights[w - la + i] }
        for i in 0..<lb { out[la - o + i] += b[i] * weights[i]; sum[la - o + i] += weights[i] }
        for i in out.indices where sum[i] > 0 { out[i] /= sum[i] }
        return (Array(out[0..<la]), Array(out[la...]))
    }
}

/// One piece of a streamed spoken answer.
public struct SpeechChunk: Sendable {
    public var index: Int
    public var samples: [Float]
    /// Seconds since the stream started when the chunk was ready.
    public var readyAfter: Double
    public var isLast: Bool
}

/// Speaks text while it is being written (spec §5.5, streaming): every 10 ChatTTS tokens of text
/// unlock the next 10 condition slots and 25 more frames; each batch of frames is rendered with 4
/// frames of left context and cross-faded into the previous chunk, which is held back until the next
/// one arrives. With the whole text at once it samples the same codes as the non-streaming schedule.
public final class SpeechStreamer: @unchecked Sendable {
    let speech: SpeechModel
    let ctx: ConditionalChatTTS.Context
    var sampler: CodeSampler
    let onChunk: (SpeechChunk) -> Void
    let start = Date()
    let maxFrames: Int
    var chunk = 0            // condition chunks prefilled
    var rendered = 0         // frames already turned into audio
    var previous: [Float]?   // the held-back chunk
    var emitted = 0
    var textIDs: [Int] = []
    public private(set) var finished = false

    public init(speech: SpeechModel, speakerHidden: [Float], sampler: CodeSampler, maxFrames: Int = 2048,
                onChunk: @escaping (SpeechChunk) -> Void) {
        self.speech = speech
        self.sampler = sampler
        self.onChunk = onChunk
        self.maxFrames = maxFrames
        ctx = speech.tts.makeStreamingContext(specials: speech.specials, speaker: speech.tts.projectSpeaker(speakerHidden),
                                              maxFrames: maxFrames)
    }

    public var codes: [[Int]] { ctx.frames }

    /// The answer's text so far (the whole of it, re-tokenized each time as the reference does).
    public func update(text: String) {
        guard !finished else { return }
        textIDs = Array(speech.tokenizer.encode(text).prefix(speech.tts.config.streamingTextReservedLength))
        let step = speech.tts.config.streamingTextChunkSize
        while !ctx.finished && textIDs.count >= step * (chunk + 1) { advance(final: false) }
    }

    /// The text is complete: the rest of it and [Etts] go in, frames run until EOS, and the held audio
    /// is flushed.
    public func finish() {
        guard !finished else { return }
        let tts = speech.tts, step = tts.config.streamingTextChunkSize
        let chunks = (ctx.ids.count + step - 1) / step
        while !ctx.finished && chunk < chunks { advance(final: true) }
        while !ctx.finished && ctx.frames.count <= maxFrames && ctx.length < ctx.capacity {
            tts.generate(ctx, maxNew: 25, sampler: &sampler)
            renderNew(last: false)
        }
        renderNew(last: true)
        finished = true
    }

    /// Prefills condition chunk `chunk` (with the text known now) and generates its frames.
    func advance(final: Bool) {
        let tts = speech.tts, step = tts.config.streamingTextChunkSize, last = ctx.ids.count - 1
        tts.setText(ctx, textIDs, complete: final, specials: speech.specials)
        let begin = chunk == 0 ? 0 : chunk * step + 2, end = min((chunk + 1) * step + 2, last)
        if end > begin { tts.prefillText(ctx, begin: begin, end: end) }
        tts.generate(ctx, maxNew: 25, sampler: &sampler)
        chunk += 1
        renderNew(last: false)
    }

    /// Renders frames not yet heard with 4 frames of left context and passes on the previous chunk.
    func renderNew(last: Bool) {
        let frames = ctx.frames
        if frames.count > rendered {
            let from = max(rendered - 4, 0)
            // the left context renders again the last 4 frames: that is the cross-fade's overlap
            let wave = speech.render(Array(frames[from...])).wave
            rendered = frames.count
            if let prev = previous {
                let (emit, keep) = CrossFade.join(prev, wave)
                send(emit, last: false)
                previous = keep
            } else {
                previous = wave
            }
        }
        if last, let prev = previous {
            send(prev, last: true)
            previous = nil
        }
    }

    func send(_ samples: [Float], last: Bool) {
        onChunk(SpeechChunk(index: emitted, samples: samples, readyAfter: Date().timeIntervalSince(start), isLast: last))
        emitted += 1
    }
}
