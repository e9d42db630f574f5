import Foundation
import Kernels
import Weights

/// MiniCPM-o's ConditionalChatTTS (`tts.*`, spec §5.2–5.4): a 20-layer Llama over
///   [Stts] [spk_emb] text…(300 slots) [Ptts] | audio frames…
/// where [spk_emb]'s embedding is the L2-normalised projection of the LLM's hidden state at <|spk|>,
/// text slots embed `emb_text`, a frame embeds Σ_q emb_code[q][code_q], and four weight-normalised
/// heads give each frame's codes.
public final class ConditionalChatTTS: @unchecked Sendable {
    public let config: TTSConfig
    let projector: (w1: WeightMatrix, b1: [Float], w2: WeightMatrix, b2: [Float])
    let embText: WeightMatrix
    let embCode: [WeightMatrix]
    /// Heads with the weight norm folded: W[o] = g[o] · v[o] / ‖v[o]‖.
    let heads: [WeightMatrix]
    private(set) var layers: [Qwen2DecoderLayer]
    let norm: [Float]
    let rope: RoPE
    let shape: AttentionShape

    public init(config c: TTSConfig, reader r: WeightReader) {
        config = c
        let d = c.hiddenSize
        let p = r.scoped("projector")
        projector = (p.matrix("linear1.weight", rows: d, cols: c.llmDim), p.vector("linear1.bias", count: d),
                     p.matrix("linear2.weight", rows: d, cols: d), p.vector("linear2.bias", count: d))
        embText = r.matrix("emb_text.weight", rows: c.numTextTokens, cols: d)
        embCode = (0..<c.numVQ).map { r.matrix("emb_code.\($0).weight", rows: c.numAudioTokens, cols: d) }
        heads = (0..<c.numVQ).map { Self.foldedHead(r.scoped("head_code.\($0)"), rows: c.numAudioTokens, cols: d) }
        let dc = c.decoder
        layers = (0..<c.numHiddenLayers).map { Qwen2DecoderLayer(config: dc, reader: r.scoped("model.layers.\($0)")) }
        norm = r.vector("model.norm.weight", count: d)
        rope = RoPE(dim: c.headDim, theta: dc.ropeTheta)
        shape = AttentionShape(heads: c.numAttentionHeads, kvHeads: c.numAttentionHeads, headDim: c.headDim)
    }

    /// Binds and validates the `tts.*` tensors (DVAE excluded). With `quantize`, the transformer's
    /// linear weights are block-quantized at load: each frame streams them all once, like LLM decode.
    public static func load(_ checkpoint: Checkpoint, config: TTSConfig, quantize: WeightFormat? = nil) throws -> ConditionalChatTTS {
        let reader = checkpoint.reader(prefix: "tts.")
        let model = ConditionalChatTTS(config: config, reader: reader)
        try reader.validate()
        model.layers = model.layers.map { layer in layer.mapWeights { $0.forDecode(quantizing: quantize) } }
        return model
    }

    /// Both spellings of PyTorch's weight norm: `parametrizations.weight.original0/1` (current) and
    /// `weight_g`/`weight_v` (older checkpoints).
    static func foldedHead(_ r: WeightReader, rows: Int, cols: Int) -> WeightMatrix {
        let modern = r.contains("parametrizations.weight.original0")
        let g = r.matrix(modern ? "parametrizations.weight.original0" : "weight_g", shape: [rows, 1]).toFloats()
        var v = r.matrix(modern ? "parametrizations.weight.original1" : "weight_v", rows: rows, cols: cols).toFloats()
        guard g.count == rows, v.count == rows * cols else { return WeightMatrix(rows: 0, cols: cols, values: []) }
        for o in 0..<rows {
            var ss: Double = 0
            for i in 0..<cols { ss += Double(v[o * cols + i]) * Double(v[o * cols + i]) }
            let s = Float(Double(g[o]) / ss.squareRoot())
            for i in 0..<cols { v[o * cols + i] *= s }
        }
        return WeightMatrix(rows: rows, cols: cols, values: v)
    }

    /// The speaker vector: linear2(relu(linear1(h))), L2-normalised. h: the LLM's final-norm hidden
    /// state at <|spk|> (llmDim values).
    public func projectSpeaker(_ h: [Float]) -> [Float] {
        let d = config.hiddenSize
        precondition(h.count == config.llmDim)
        var mid = [Float](repeating: 0, count: d), out = [Float](repeating: 0, count: d)
        linear(h, 1, projector.w1, projector.b1, into: &mid)
        for i in 0..<d where mid[i] < 0 { mid[i] = 0 }
        linear(mid, 1, projector.w2, projector.b2, into: &out)
        let n = max(out.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot(), 1e-12)  // F.normalize's eps
        return out.map { $0 / n }
    }

    /// One utterance's state: the condition (text slots and their mask), the KV cache of 302 text slots
    /// followed by audio positions, and the frames generated so far.
    public final class Context: @unchecked Sendable {
        public internal(set) var ids: [Int]         // the 303 condition ids
        public internal(set) var textMask: [Bool]   // streaming_tts_text_mask
        public internal(set) var textTokens: Int    // n
        let speaker: [Float]
        let keys: [FloatBuffer], values: [FloatBuffer]
        public let capacity: Int
        /// Positions whose keys and values are in the cache: 302 text slots, then fed frames.
        public private(set) var length: Int
        /// Frames sampled so far (EOS frames are not kept).
        public private(set) var frames: [[Int]] = []
        /// Whether a frame with EOS was sampled.
        public private(set) var finished = false
        /// Sampled but not yet fed (the next step's input); nil before the first (BOS) step.
        var pending: [Int]?
        var bosFed = false

        init(ids: [Int], textMask: [Bool], textTokens: Int, speaker: [Float], layers: Int, width: Int, capacity: Int) {
            self.ids = ids
            self.textMask = textMask
            self.textTokens = textTokens
            self.speaker = speaker
            self.capacity = capacity
            // only the condition slots start as zeros (the reference's zero cache); every later position is
            // written before it is read, so the rest of the (large) buffers is never touched in advance
            let zeroed = (ids.count - 1) * width
            func buffer() -> FloatBuffer {
                let b = FloatBuffer(count: capacity * width)
                b.pointer.initialize(repeating: 0, count: zeroed)
                return b
            }
            keys = (0..<layers).map { _ in buffer() }
            values = (0..<layers).map { _ in buffer() }
            length = ids.count - 1
        }

        func appendFrame(_ codes: [Int], eos: Int) {
            if codes.contains(eos) { finished = true } else { frames.append(codes) }
            pending = codes
        }

        func advance() { length += 1 }

        /// Frames carried over from a previous segment: already heard, and the last one is fed next.
        func prime(frames carried: [[Int]], pending last: [Int]) {
            frames = carried
            pending = last
        }
    }

    /// The condition of spec §5.2 for `text` (ChatTTS tokenizer ids, at most 300 are used):
    /// [Stts] [spk_emb] text [Etts] [PAD]… [Ptts], with the text mask over [0, n + 3) and the last slot.
    public func makeContext(text: [Int], specials: (stts: Int, etts: Int, pad: Int, ptts: Int), speaker: [Float],
                            maxFrames: Int = 2048) -> Context {
        let reserved = config.streamingTextReservedLength
        let t = Array(text.prefix(reserved))
        var ids = [specials.stts, config.spkEmbTokenID] + t
        if t.count < reserved { ids += [specials.etts] + Array(repeating: specials.pad, count: reserved - t.count - 1) }
        ids.append(specials.ptts)
        var mask = [Bool](repeating: false, count: ids.count)
        for i in 0..<min(t.count + 3, ids.count) { mask[i] = true }
        mask[ids.count - 1] = true
        return Context(ids: ids, textMask: mask, textTokens: t.count, speaker: speaker, layers: layers.count,
                       width: config.hiddenSize, capacity: ids.count + maxFrames + 64)
    }

    /// A condition whose text is not known yet (streaming): [Stts] [spk_emb] [PAD]… [Ptts], text mask
    /// on the first two slots and the last; `setText` fills it in as the answer is written.
    public func makeStreamingContext(specials: (stts: Int, etts: Int, pad: Int, ptts: Int), speaker: [Float],
                                     maxFrames: Int = 2048) -> Context {
        let ctx = makeContext(text: [], specials: specials, speaker: speaker, maxFrames: maxFrames)
        ctx.ids[2] = specials.pad
        ctx.textMask[2] = false  // no [Etts] until the text is complete
        return ctx
    }

    /// Puts the text known so far into the condition (and [Etts] after it once `complete`).
    public func setText(_ ctx: Context, _ text: [Int], complete: Bool, specials: (stts: Int, etts: Int, pad: Int, ptts: Int)) {
        let reserved = config.streamingTextReservedLength
        let t = Array(text.prefix(reserved))
        for i in 0..<reserved {
            ctx.ids[2 + i] = i < t.count ? t[i] : (i == t.count && complete ? specials.etts : specials.pad)
            ctx.textMask[2 + i] = i < t.count || (i == t.count && complete)
        }
        ctx.textTokens = t.count
    }

    /// Runs condition slots begin ..< end (causal over the cache prefix) and writes their keys and
    /// values; returns their final-norm hidden states [end − begin, D].
    @discardableResult
    public func prefillText(_ ctx: Context, begin: Int, end: Int) -> [Float] {
        let d = config.hiddenSize, n = end - begin
        precondition(begin >= 0 && end <= ctx.ids.count - 1 && n > 0)
        let x = FloatBuffer(count: n * d)
        for i in 0..<n {
            let slot = begin + i
            if slot == 1 {
                ctx.speaker.withUnsafeBufferPointer { (x.pointer + i * d).update(from: $0.baseAddress!, count: d) }
            } else {
                embText.readRow(ctx.ids[slot], into: x.pointer + i * d)
            }
        }
        run(x, positions: Array(begin..<end), ctx: ctx, kvLength: end, mask: nil)
        return Array(UnsafeBufferPointer(start: x.pointer, count: n * d))
    }

    /// One generation step at position P = ctx.length: feeds the audio BOS (first step) or the last
    /// sampled frame and returns the raw head logits [numVQ × numAudioTokens].
    public func step(_ ctx: Context) -> [Float] {
        let d = config.hiddenSize, p = ctx.length
        precondition(p < ctx.capacity, "TTS context is full")
        let x = FloatBuffer(zeros: d)
        embedInput(ctx, into: x.pointer)
        let mask = stepMask(ctx)
        mask.withUnsafeBufferPointer { run(x, positions: [p], ctx: ctx, kvLength: p + 1, mask: $0.baseAddress!) }
        ctx.advance()
        return headLogits(x.pointer)
    }

    /// One step of several utterances together (several spoken answers at once): each weight of the
    /// transformer is read once for all of them, and each context's logits are those `step` gives it alone
    /// wherever the CPU has a GEMM with the GEMV's arithmetic for the weights (q8/q4; bf16 with AVX-512),
    /// else equal up to rounding.
    public func step(_ contexts: [Context]) -> [[Float]] {
        precondition(Set(contexts.map(ObjectIdentifier.init)).count == contexts.count, "one step per context")
        if contexts.count <= 1 { return contexts.map { step($0) } }
        let d = config.hiddenSize, n = contexts.count
        let positions = contexts.map(\.length)
        for (c, p) in zip(contexts, positions) { precondition(p < c.capacity, "TTS context is full") }
        let x = FloatBuffer(zeros: n * d)
        for (i, c) in contexts.enumerated() { embedInput(c, into: x.pointer + i * d) }
        // the mask rows, one after another in one buffer
        let rows = contexts.map(stepMask)
        let offsets = rows.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        let masks = FloatBuffer(count: offsets.last!)
        for (r, o) in zip(rows, offsets) { r.withUnsafeBufferPointer { (masks.pointer + o).update(from: $0.baseAddress!, count: r.count) } }
        let maskRows: [UnsafePointer<Float>?] = offsets.dropLast().map { UnsafePointer(masks.pointer + $0) }
        let (cos, sin) = rope.table(positions: positions)
        let scratch = Qwen2DecoderLayer.Scratch(config: config.decoder, tokens: n)
        for (l, layer) in layers.enumerated() {
            cos.withUnsafeBufferPointer { cp in
                sin.withUnsafeBufferPointer { sp in
                    layer.decodeBatch(x.pointer, n: n, positions: positions, cos: cp.baseAddress!, sin: sp.baseAddress!, rope: rope, shape: shape,
                                      keys: contexts.map { KVRows(contiguous: $0.keys[l].pointer, heads: shape.kvHeads, headDim: shape.headDim) },
                                      values: contexts.map { KVRows(contiguous: $0.values[l].pointer, heads: shape.kvHeads, headDim: shape.headDim) },
                                      masks: maskRows, scratch: scratch)
                }
            }
        }
        withExtendedLifetime(masks) {}
        norm.withUnsafeBufferPointer { Norm.rms(x.pointer, rows: n, dim: d, weight: $0.baseAddress!, eps: 1e-6, into: x.pointer) }
        for c in contexts { c.advance() }
        // the heads are small (4 × 626 rows): read per context, by the GEMV `step` uses
        return (0..<n).map { headLogits(x.pointer + $0 * d) }
    }

    /// Whether `step(_ contexts:)` gives each context exactly the logits `step` gives it alone on this CPU.
    public var stepsExactlyInBatches: Bool { layers.allSatisfy { $0.linearWeights.allSatisfy(Linear.hasGemvArithmeticGEMM) } }

    /// A step's input: the audio BOS (first step) or the sum of the last sampled frame's code embeddings.
    private func embedInput(_ ctx: Context, into x: UnsafeMutablePointer<Float>) {
        let d = config.hiddenSize
        if let codes = ctx.pending {
            x.initialize(repeating: 0, count: d)
            let row = FloatBuffer(count: d)
            for (q, code) in codes.enumerated() {
                embCode[q].readRow(code, into: row.pointer)
                axpy(1, row.pointer, x, d)
            }
        } else {
            embText.readRow(config.audioBosTokenID, into: x)
            ctx.bosFed = true
        }
    }

    /// The additive mask row [P + 1] of a step at P: keys past the visible text (10 more per 50 frames)
    /// or outside the text mask are hidden; the BOS slot (last condition slot) is never seen; audio
    /// positions always are.
    private func stepMask(_ ctx: Context) -> [Float] {
        let p = ctx.length, cond = ctx.ids.count
        let unlocked = min(Int((Double(p - config.streamingTextReservedLength) / Double(config.streamingAudioChunkSize)).rounded(.up))
                           * config.streamingTextChunkSize, config.streamingTextReservedLength) + 2
        var mask = [Float](repeating: 0, count: p + 1)
        for j in 0..<min(cond, p + 1) where j >= unlocked || !ctx.textMask[j] { mask[j] = -.infinity }
        return mask
    }

    /// The four heads' logits [numVQ × numAudioTokens] of one final-norm hidden state.
    private func headLogits(_ h: UnsafePointer<Float>) -> [Float] {
        var logits = [Float](repeating: 0, count: config.numVQ * config.numAudioTokens)
        for q in 0..<config.numVQ {
            logits.withUnsafeMutableBufferPointer {
                Linear.forward(h, tokens: 1, weight: heads[q], bias: nil, into: $0.baseAddress! + q * config.numAudioTokens)
            }
        }
        return logits
    }

    /// Takes one step of a context, as `step(_:)` does: how an utterance's steps reach a batch.
    public typealias Stepper = (Context) -> [Float]

    /// Up to `maxNew` frames (one `generate()` call of the reference: EOS is suppressed for its first
    /// `minNew` steps). Stops at the first frame with EOS in any codebook.
    /// `afterFrame` runs after each frame is sampled (to render audio before the call ends); false
    /// stops the call there.
    /// `stepper` takes the steps in place of `step` (e.g. to batch them with other utterances').
    public func generate(_ ctx: Context, maxNew: Int, minNew: Int = 10, sampler: inout CodeSampler, stepper: Stepper? = nil,
                         afterFrame: () -> Bool = { true }) {
        var i = 0
        while i < maxNew && !ctx.finished && ctx.length < ctx.capacity {
            let bos = ctx.pending == nil
            take(stepper?(ctx) ?? step(ctx), into: ctx, bos: bos, suppressEOS: i < minNew, sampler: &sampler)
            i += 1
            if !afterFrame() { return }
        }
    }

    /// Samples a step's frame from its logits and appends it (`bos`: whether the step's input was BOS).
    private func take(_ logits: [Float], into ctx: Context, bos: Bool, suppressEOS: Bool, sampler: inout CodeSampler) {
        ctx.appendFrame(sampler.sample(logits, config: config, bos: bos, suppressEOS: suppressEOS, history: ctx.frames), eos: config.eosCode)
    }

    /// `generate` for several utterances in lockstep: each step is one batched `step(_:)` of those not yet
    /// finished (each weight read once for all of them), and each samples with its own sampler.
    public func generate(_ contexts: [Context], maxNew: Int, minNew: Int = 10, samplers: inout [CodeSampler]) {
        precondition(samplers.count == contexts.count, "one sampler per utterance")
        for i in 0..<maxNew {
            let live = contexts.indices.filter { !contexts[$0].finished && contexts[$0].length < contexts[$0].capacity }
            if live.isEmpty { return }
            let bos = live.map { contexts[$0].pending == nil }
            let logits = step(live.map { contexts[$0] })
            for (k, j) in live.enumerated() { take(logits[k], into: contexts[j], bos: bos[k], suppressEOS: i < minNew, sampler: &samplers[j]) }
        }
    }

    /// Primes a new segment of a long answer with the previous segment's last frames (the reference's
    /// prefill_audio_ids): the audio BOS and `frames` minus the last go in at positions 302…, under one
    /// mask row shared by all of them as the reference builds it; the last frame is the next step's input.
    public func prefillAudio(_ ctx: Context, frames: [[Int]]) {
        guard let lastFrame = frames.last else { return }
        let d = config.hiddenSize, p0 = ctx.length
        let fed = Array(frames.dropLast())
        let n = fed.count + 1
        let x = FloatBuffer(zeros: n * d), row = FloatBuffer(count: d)
        embText.readRow(config.audioBosTokenID, into: x.pointer)
        for (i, codes) in fed.enumerated() {
            for (q, code) in codes.enumerated() {
                embCode[q].readRow(code, into: row.pointer)
                axpy(1, row.pointer, x.pointer + (i + 1) * d, d)
            }
        }
        let total = p0 + n
        var maskRow = [Float](repeating: 0, count: total)
        let unlocked = min(Int((Double(p0 - config.streamingTextReservedLength) / Double(config.streamingAudioChunkSize)).rounded(.up))
                           * config.streamingTextChunkSize, config.streamingTextReservedLength) + 2
        for j in 0..<min(ctx.ids.count, total) where j >= unlocked || !ctx.textMask[j] { maskRow[j] = -.infinity }
        let mask = (0..<n).flatMap { _ in maskRow }
        mask.withUnsafeBufferPointer { run(x, positions: Array(p0..<total), ctx: ctx, kvLength: total, mask: $0.baseAddress!, causal: false) }
        for _ in 0..<n { ctx.advance() }
        ctx.prime(frames: frames, pending: lastFrame)
    }

    /// Runs embeddings x [positions.count, D] through the decoder in place (final norm applied).
    func run(_ x: FloatBuffer, positions: [Int], ctx: Context, kvLength: Int, mask: UnsafePointer<Float>?, causal: Bool = true) {
        let d = config.hiddenSize, n = positions.count
        let (cos, sin) = rope.table(positions: positions)
        let scratch = Qwen2DecoderLayer.Scratch(config: config.decoder, tokens: n)
        for (i, layer) in layers.enumerated() {
            cos.withUnsafeBufferPointer { c in
                sin.withUnsafeBufferPointer { s in
                    layer.forward(x.pointer, tokens: n, positions: positions, cos: c.baseAddress!, sin: s.baseAddress!, rope: rope,
                                  shape: shape, keys: KVRows(contiguous: ctx.keys[i].pointer, heads: shape.kvHeads, headDim: shape.headDim),
                                  values: KVRows(contiguous: ctx.values[i].pointer, heads: shape.kvHeads, headDim: shape.headDim), kvLength: kvLength,
                                  mask: mask, causal: causal, scratch: scratch)
                }
            }
        }
        norm.withUnsafeBufferPointer { Norm.rms(x.pointer, rows: n, dim: d, weight: $0.baseAddress!, eps: 1e-6, into: x.pointer) }
    }
}

extension ConditionalChatTTS {
    /// The non-streaming schedule of chat() (spec §5.5): text slots enter 10 at a time ([0, 12) first),
    /// each followed by up to `chunkFrames` frames; once all text is in, `chunkFrames`-frame calls run
    /// until EOS or `maxFrames`. Returns the frames (EOS frame dropped). `shouldStop` is asked after
    /// every frame (a listener who left is not spoken to for another call's worth of frames).
    public func synthesize(_ ctx: Context, sampler: inout CodeSampler, chunkFrames: Int = 25, maxFrames: Int = 2048,
                           stepper: Stepper? = nil, shouldStop: () -> Bool = { false }) -> [[Int]] {
        let step = config.streamingTextChunkSize, last = ctx.ids.count - 1
        let chunks = (ctx.ids.count + step - 1) / step
        for c in 0..<chunks {
            let begin = c == 0 ? 0 : c * step + 2, end = min((c + 1) * step + 2, last)
            if end > begin { prefillText(ctx, begin: begin, end: end) }
            generate(ctx, maxNew: chunkFrames, sampler: &sampler, stepper: stepper, afterFrame: { !shouldStop() })
            if ctx.finished || shouldStop() { return ctx.frames }
        }
        while !ctx.finished && ctx.frames.count <= maxFrames && ctx.length < ctx.capacity && !shouldStop() {
            generate(ctx, maxNew: chunkFrames, sampler: &sampler, stepper: stepper, afterFrame: { !shouldStop() })
        }
        return ctx.frames
    }
}
