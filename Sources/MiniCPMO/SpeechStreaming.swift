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
/// frames of left context and cross-faded (2048 samples) into the audio before it, so only the last
/// 2048 samples wait for the next batch. With the whole text at once it samples the same codes as the
/// non-streaming schedule. An answer longer than 120 tokens is cut at its next sentence end into a new
/// segment, primed with the last 5 text tokens and 50 frames of the previous one (so the 300 text slots
/// never run out).
public final class SpeechStreamer: @unchecked Sendable {
    let speech: SpeechModel
    var ctx: ConditionalChatTTS.Context
    var sampler: CodeSampler
    let onChunk: (SpeechChunk) -> Void
    let start = Date()
    let maxFrames: Int
    let speaker: [Float]
    var chunk = 0            // condition chunks prefilled in this segment
    var rendered = 0         // frames of this segment already turned into audio
    var carried = 0          // frames this segment took over from the previous one
    var previous: [Float]?   // audio waiting for the next cross-fade
    var emitted = 0
    var textIDs: [Int] = []
    var finishedCodes: [[Int]] = []
    var primeText = ""       // the text that opens this segment (previous tokens + what followed the cut)
    var read = SpokenText()  // the answer as `append(call:)` feeds it, normalized
    var consumed = 0         // characters of the answer before this segment's own text
    var seen = 0             // characters of the answer seen so far
    var latest = ""          // the answer's text as last given
    public private(set) var finished = false
    /// Asked between frame batches: true stops the speech where it is (a listener who left).
    public var shouldStop: () -> Bool = { false }
    /// Takes the TTS steps (to batch them with other answers'); nil: the TTS's own.
    public var stepper: ConditionalChatTTS.Stepper?
    public private(set) var segments = 1
    /// Text tokens at which a segment is cut at the next sentence end (300 − 180).
    static let segmentThreshold = 120
    /// Frames after which the first audio is rendered (the reference waits for a whole call's 25; fewer
    /// start the sound sooner, with the same codes).
    public var firstChunkFrames = 25

    public init(speech: SpeechModel, speakerHidden: [Float], sampler: CodeSampler, maxFrames: Int = 2048,
                onChunk: @escaping (SpeechChunk) -> Void) {
        self.speech = speech
        self.sampler = sampler
        self.onChunk = onChunk
        self.maxFrames = maxFrames
        speaker = speech.tts.projectSpeaker(speakerHidden)
        ctx = speech.tts.makeStreamingContext(specials: speech.specials, speaker: speaker, maxFrames: maxFrames)
    }

    /// Every frame spoken so far, across segments.
    public var codes: [[Int]] { finishedCodes + ctx.frames.dropFirst(carried) }

    /// One call's text of the language model (3 tokens), read as the reference's streaming speech reads
    /// it (`SpokenText`: digits spelled, `*` dropped); the chat path gives the whole text to `update`.
    public func append(call: String) {
        read.append(call)
        update(text: read.text, written: call)
    }

    /// The answer's text so far (the whole of it; re-tokenized each time as the reference does).
    /// `written`: the newest part as the language model wrote it, where the text is normalized: the
    /// reference looks for a sentence end in that.
    public func update(text: String, written: String? = nil) {
        guard !finished else { return }
        latest = text
        let newest = written ?? String(text.dropFirst(seen))
        seen = text.count
        var segment = primeText + String(text.dropFirst(consumed))
        textIDs = Array(speech.tokenizer.encode(segment).prefix(speech.tts.config.streamingTextReservedLength))
        if textIDs.count >= Self.segmentThreshold, let end = Self.sentenceEnd(newest), let cut = segment.lastIndex(of: end) {
            let leftover = String(segment[segment.index(after: cut)...])
            segment = String(segment[...cut])
            textIDs = Array(speech.tokenizer.encode(segment).prefix(speech.tts.config.streamingTextReservedLength))
            completeSegment()
            startSegment(primeIDs: Array(textIDs.suffix(5)), leftover: leftover)
            consumed = text.count
            return
        }
        let step = speech.tts.config.streamingTextChunkSize
        while !ctx.finished && textIDs.count >= step * (chunk + 1) { advance(final: false) }
    }

    /// The text is complete: the rest of it and [Etts] go in, frames run until EOS, and the held audio
    /// is flushed.
    public func finish() {
        guard !finished else { return }
        // the text after a segment cut has not been tokenized yet
        let segment = primeText + String(latest.dropFirst(consumed))
        textIDs = Array(speech.tokenizer.encode(segment).prefix(speech.tts.config.streamingTextReservedLength))
        completeSegment()
        if let prev = previous { send(prev, last: true) } else if emitted > 0 { send([], last: true) }
        previous = nil
        finished = true
    }

    /// The first sentence end in `text` (`.` right after a digit does not count).
    static func sentenceEnd(_ text: String) -> Character? {
        var before: Character?
        for c in text {
            if "。!?！？".contains(c) || (c == "." && !(before?.isNumber ?? false)) { return c }
            before = c
        }
        return nil
    }

    /// Prefills condition chunk `chunk` (with the text known now) and generates its frames.
    func advance(final: Bool) {
        let tts = speech.tts, step = tts.config.streamingTextChunkSize, last = ctx.ids.count - 1
        tts.setText(ctx, textIDs, complete: final, specials: speech.specials)
        let begin = chunk == 0 ? 0 : chunk * step + 2, end = min((chunk + 1) * step + 2, last)
        if end > begin { tts.prefillText(ctx, begin: begin, end: end) }
        tts.generate(ctx, maxNew: 25, sampler: &sampler, stepper: stepper) { [self] in
            if shouldStop() { return false }
            if emitted == 0 && previous == nil && ctx.frames.count - rendered >= firstChunkFrames { renderNew() }
            return true
        }
        chunk += 1
        renderNew()
    }

    /// All of this segment's text in, then frames until EOS.
    func completeSegment() {
        let tts = speech.tts, step = tts.config.streamingTextChunkSize
        let chunks = (ctx.ids.count + step - 1) / step
        while !ctx.finished && chunk < chunks && !shouldStop() { advance(final: true) }
        while !ctx.finished && codes.count <= maxFrames && ctx.length < ctx.capacity && !shouldStop() {
            tts.generate(ctx, maxNew: 25, sampler: &sampler, stepper: stepper)
            renderNew()
        }
    }

    /// A new condition for the rest of a long answer, primed like the reference's next segment.
    func startSegment(primeIDs: [Int], leftover: String) {
        let tts = speech.tts
        let frames = Array(ctx.frames.suffix(50))
        finishedCodes += ctx.frames.dropFirst(carried)
        ctx = tts.makeStreamingContext(specials: speech.specials, speaker: speaker, maxFrames: maxFrames)
        tts.setText(ctx, primeIDs, complete: false, specials: speech.specials)
        tts.prefillText(ctx, begin: 0, end: primeIDs.count + 2)
        tts.prefillAudio(ctx, frames: frames)
        carried = frames.count
        rendered = frames.count
        chunk = primeIDs.count / tts.config.streamingTextChunkSize
        primeText = speech.tokenizer.decode(primeIDs) + leftover
        read.startSegment(opening: primeText)
        textIDs = primeIDs
        segments += 1
    }

    /// Renders frames not yet heard with 4 frames of left context: all but the last 2048 samples are
    /// final once cross-faded with what came before.
    func renderNew() {
        let frames = ctx.frames
        guard frames.count > rendered else { return }
        let from = max(rendered - 4, 0)
        // the left context renders again the last 4 frames: that is the cross-fade's overlap
        let wave = speech.render(Array(frames[from...])).wave
        rendered = frames.count
        if let prev = previous {
            let (emit, keep) = CrossFade.join(prev, wave)
            send(emit, last: false)
            previous = keep
        } else {
            let cut = max(wave.count - CrossFade.overlap, 0)
            send(Array(wave[..<cut]), last: false)
            previous = Array(wave[cut...])
        }
    }

    func send(_ samples: [Float], last: Bool) {
        guard !shouldStop() else { return }  // not a sample more once the listener has stopped it
        onChunk(SpeechChunk(index: emitted, samples: samples, readyAfter: Date().timeIntervalSince(start), isLast: last))
        emitted += 1
    }
}
