import Foundation
import Kernels
import Weights

/// Qwen2 decoder (spec §2):
///   h = embed[ids]
///   per layer:  h += o_proj(attn(rope(q_proj(rms(h))), rope(k_proj(rms(h))), v_proj(rms(h))))
///               h += down(silu(gate(rms(h))) ⊙ up(rms(h)))
///   h = rms(h);  logits = h · lm_headᵀ
public final class Qwen2Model: @unchecked Sendable {
    public let config: Qwen2Config
    public let embedTokens: WeightMatrix
    public let layers: [Qwen2DecoderLayer]
    public let norm: [Float]
    public let lmHead: WeightMatrix
    let rope: RoPE
    let shape: AttentionShape

    /// Binds weights from a reader scoped at the Qwen2ForCausalLM root (`""` or `"llm."`).
    /// Problems are recorded in the reader; call `reader.validate()` before use.
    public init(config: Qwen2Config, reader: WeightReader) {
        self.config = config
        let h = config.hiddenSize
        embedTokens = reader.matrix("model.embed_tokens.weight", rows: config.vocabSize, cols: h)
        layers = (0..<config.numHiddenLayers).map {
            Qwen2DecoderLayer(config: config, reader: reader.scoped("model.layers.\($0)"))
        }
        norm = reader.vector("model.norm.weight", count: h)
        if config.tieWordEmbeddings && !reader.contains("lm_head.weight") {
            lmHead = embedTokens
        } else {
            lmHead = reader.matrix("lm_head.weight", rows: config.vocabSize, cols: h)
        }
        rope = RoPE(dim: config.headDim, theta: config.ropeTheta)
        shape = AttentionShape(heads: config.numAttentionHeads, kvHeads: config.numKeyValueHeads, headDim: config.headDim)
    }

    /// Loads and validates: one error lists every missing or misshapen tensor. With `quantize`, the
    /// linear layers and the LM head are block-quantized at load (the embedding table stays as stored:
    /// decode reads one row of it per token). Quantized weights take the decode layout either way.
    public static func load(_ checkpoint: Checkpoint, config: ModelConfig, quantize: WeightFormat? = nil) throws -> Qwen2Model {
        let reader = checkpoint.reader(prefix: config.kind.llmPrefix)
        let model = Qwen2Model(config: config.llm, reader: reader)
        try reader.validate()
        return model.mapLinearWeights { $0.forDecode(quantizing: quantize) }
    }

    private init(config: Qwen2Config, embedTokens: WeightMatrix, layers: [Qwen2DecoderLayer], norm: [Float], lmHead: WeightMatrix) {
        self.config = config
        self.embedTokens = embedTokens
        self.layers = layers
        self.norm = norm
        self.lmHead = lmHead
        rope = RoPE(dim: config.headDim, theta: config.ropeTheta)
        shape = AttentionShape(heads: config.numAttentionHeads, kvHeads: config.numKeyValueHeads, headDim: config.headDim)
    }

    /// The same model with every linear weight (and the LM head) passed through `transform`.
    public func mapLinearWeights(_ transform: (WeightMatrix) -> WeightMatrix) -> Qwen2Model {
        Qwen2Model(config: config, embedTokens: embedTokens, layers: layers.map { $0.mapWeights(transform) },
                   norm: norm, lmHead: transform(lmHead))
    }

    public var weightBytes: Int {
        layers.reduce(0) { $0 + $1.weightBytes } + embedTokens.byteCount
            + (lmHead.data == embedTokens.data ? 0 : lmHead.byteCount) + norm.count * 4
    }

    /// Weight bytes one decode step reads: every linear weight, the LM head and one embedding row.
    public var decodeBytesPerToken: Int {
        layers.reduce(0) { $0 + $1.weightBytes } + lmHead.byteCount + embedTokens.byteCount / max(embedTokens.rows, 1)
            + norm.count * 4
    }

    public func makeCachePool(pageSize: Int = 32, maxPages: Int? = nil) -> KVPagePool {
        KVPagePool(layers: config.numHiddenLayers, kvHeads: config.numKeyValueHeads, headDim: config.headDim,
                   pageSize: pageSize, maxPages: maxPages)
    }

    /// Embedding rows for token ids, [ids.count, hidden].
    public func embed(_ ids: [Int]) throws -> FloatBuffer {
        let h = config.hiddenSize
        let out = FloatBuffer(count: ids.count * h)
        for (t, id) in ids.enumerated() {
            guard id >= 0, id < config.vocabSize else { throw ModelError.tokenOutOfRange(id, config.vocabSize) }
            embedTokens.readRow(id, into: out.pointer + t * h)
        }
        return out
    }

    /// Runs `tokens` embedding rows through the decoder at positions cache.length…, appends their keys and
    /// values to `cache`, and returns the final-norm hidden states [tokens, hidden].
    public func forward(_ x: FloatBuffer, tokens: Int, cache: KVSequence) throws -> FloatBuffer {
        precondition(x.count >= tokens * config.hiddenSize)
        let positions = Array(try cache.extend(by: tokens))
        let (cos, sin) = rope.table(positions: positions)
        let scratch = Qwen2DecoderLayer.Scratch(config: config, tokens: tokens)
        for (i, layer) in layers.enumerated() {
            cos.withUnsafeBufferPointer { c in
                sin.withUnsafeBufferPointer { s in
                    layer.forward(x.pointer, tokens: tokens, positions: positions, cos: c.baseAddress!, sin: s.baseAddress!,
                                  rope: rope, shape: shape, keys: cache.keyRows(layer: i), values: cache.valueRows(layer: i),
                                  kvLength: positions[0] + tokens, mask: nil, scratch: scratch)
                }
            }
        }
        norm.withUnsafeBufferPointer { w in
            Norm.rms(x.pointer, rows: tokens, dim: config.hiddenSize, weight: w.baseAddress!, eps: config.rmsNormEps,
                     into: x.pointer)
        }
        return x
    }

    /// One decode step of several sequences together (continuous batching): token i is appended to
    /// caches[i] at its own position. Returns the final-norm hidden states [n, hidden]. With quantized
    /// weights each row equals what `forward` gives that sequence alone, bit for bit; each weight is read
    /// once per step instead of once per sequence.
    public func decodeBatch(_ tokens: [Int], caches: [KVSequence]) throws -> FloatBuffer {
        precondition(tokens.count == caches.count && !tokens.isEmpty)
        precondition(Set(caches.map(ObjectIdentifier.init)).count == caches.count, "one token per sequence")
        let n = tokens.count
        let x = try embed(tokens)
        var positions: [Int] = []
        for c in caches {
            do { positions.append(try c.extend(by: 1).lowerBound) } catch {
                for (done, p) in zip(caches, positions) { done.truncate(to: p) }  // as if the step never began
                throw error
            }
        }
        let (cos, sin) = rope.table(positions: positions)
        let scratch = Qwen2DecoderLayer.Scratch(config: config, tokens: n)
        for (i, layer) in layers.enumerated() {
            cos.withUnsafeBufferPointer { c in
                sin.withUnsafeBufferPointer { s in
                    layer.decodeBatch(x.pointer, n: n, positions: positions, cos: c.baseAddress!, sin: s.baseAddress!, rope: rope,
                                      shape: shape, keys: caches.map { $0.keyRows(layer: i) }, values: caches.map { $0.valueRows(layer: i) },
                                      scratch: scratch)
                }
            }
        }
        norm.withUnsafeBufferPointer { w in
            Norm.rms(x.pointer, rows: n, dim: config.hiddenSize, weight: w.baseAddress!, eps: config.rmsNormEps, into: x.pointer)
        }
        return x
    }

    /// logits [n, vocab] of `decodeBatch`'s hidden states, with decode's arithmetic for a quantized LM head.
    public func batchLogits(_ hidden: FloatBuffer, rows n: Int) -> FloatBuffer {
        let out = FloatBuffer(count: n * config.vocabSize)
        withExtendedLifetime(hidden) { product(hidden.pointer, n, lmHead, nil, into: out.pointer, true) }
        return out
    }

    /// logits [rows.count, vocab] for rows of final-norm hidden states [tokens, hidden].
    public func logits(_ hidden: FloatBuffer, rows: Range<Int>) -> FloatBuffer {
        let h = config.hiddenSize
        precondition(rows.upperBound * h <= hidden.count, "logits: rows \(rows) out of range")
        let out = FloatBuffer(count: rows.count * config.vocabSize)
        withExtendedLifetime(hidden) {
            Linear.forward(hidden.pointer + rows.lowerBound * h, tokens: rows.count, weight: lmHead, bias: nil, into: out.pointer)
        }
        return out
    }

    /// logits [vocab] for one row, written straight into the returned array: a decode step would
    /// otherwise allocate, fill and copy 600 KB for them.
    public func logits(_ hidden: FloatBuffer, row: Int) -> [Float] {
        let h = config.hiddenSize
        precondition((row + 1) * h <= hidden.count, "logits: row \(row) out of range")
        return withExtendedLifetime(hidden) {
            Array(unsafeUninitializedCapacity: config.vocabSize) { out, n in
                Linear.forward(hidden.pointer + row * h, tokens: 1, weight: lmHead, bias: nil, into: out.baseAddress!)
                n = config.vocabSize
            }
        }
    }
}

public enum ModelError: Error, CustomStringConvertible {
    case tokenOutOfRange(Int, Int)
    public var description: String {
        switch self {
        case let .tokenOutOfRange(id, v): return "token id \(id) is outside the vocabulary (0..<\(v))"
        }
    }
}

/// One pre-norm decoder block: GQA self-attention with q/k/v biases, then the SwiGLU MLP.
public struct Qwen2DecoderLayer: @unchecked Sendable {
    let inputNorm: [Float]
    let postNorm: [Float]
    var q, k, v, o: WeightMatrix
    /// nil without attention biases (Llama).
    let qBias, kBias, vBias: [Float]?
    var gate, up, down: WeightMatrix
    let eps: Float

    init(config c: Qwen2Config, reader r: WeightReader) {
        let h = c.hiddenSize, qd = c.numAttentionHeads * c.headDim, kvd = c.numKeyValueHeads * c.headDim
        inputNorm = r.vector("input_layernorm.weight", count: h)
        postNorm = r.vector("post_attention_layernorm.weight", count: h)
        q = r.matrix("self_attn.q_proj.weight", rows: qd, cols: h)
        k = r.matrix("self_attn.k_proj.weight", rows: kvd, cols: h)
        v = r.matrix("self_attn.v_proj.weight", rows: kvd, cols: h)
        o = r.matrix("self_attn.o_proj.weight", rows: h, cols: qd)
        qBias = c.attentionBias ? r.vector("self_attn.q_proj.bias", count: qd) : nil
        kBias = c.attentionBias ? r.vector("self_attn.k_proj.bias", count: kvd) : nil
        vBias = c.attentionBias ? r.vector("self_attn.v_proj.bias", count: kvd) : nil
        gate = r.matrix("mlp.gate_proj.weight", rows: c.intermediateSize, cols: h)
        up = r.matrix("mlp.up_proj.weight", rows: c.intermediateSize, cols: h)
        down = r.matrix("mlp.down_proj.weight", rows: h, cols: c.intermediateSize)
        eps = c.rmsNormEps
    }

    /// q, k, v, o, gate, up, down — in checkpoint naming order.
    public var linearWeights: [WeightMatrix] { [q, k, v, o, gate, up, down] }

    func mapWeights(_ f: (WeightMatrix) -> WeightMatrix) -> Qwen2DecoderLayer {
        var l = self
        l.q = f(q); l.k = f(k); l.v = f(v); l.o = f(o)
        l.gate = f(gate); l.up = f(up); l.down = f(down)
        return l
    }

    var weightBytes: Int {
        [q, k, v, o, gate, up, down].reduce(0) { $0 + $1.byteCount } + 4 * (inputNorm.count + postNorm.count
            + (qBias?.count ?? 0) + (kBias?.count ?? 0) + (vBias?.count ?? 0))
    }

    /// Per-forward activation buffers, shared by all layers.
    final class Scratch {
        let normed, q, k, v, attn, gate, up: FloatBuffer
        init(config c: Qwen2Config, tokens t: Int) {
            let qd = c.numAttentionHeads * c.headDim, kvd = c.numKeyValueHeads * c.headDim
            normed = FloatBuffer(count: t * c.hiddenSize)
            q = FloatBuffer(count: t * qd)
            k = FloatBuffer(count: t * kvd)
            v = FloatBuffer(count: t * kvd)
            attn = FloatBuffer(count: t * max(qd, c.hiddenSize))
            gate = FloatBuffer(count: t * c.intermediateSize)
            up = FloatBuffer(count: t * c.intermediateSize)
        }
    }

    /// h [tokens, hidden] is updated in place. The tokens' keys and values are written at their
    /// positions in `keys`/`values`; they attend causally over keys 0 ..< kvLength (positions[0] + tokens
    /// for a plain prefix), plus an optional additive mask [tokens, kvLength].
    func forward(_ h: UnsafeMutablePointer<Float>, tokens: Int, positions: [Int], cos: UnsafePointer<Float>,
                 sin: UnsafePointer<Float>, rope: RoPE, shape: AttentionShape, keys: KVRows, values: KVRows,
                 kvLength: Int, mask: UnsafePointer<Float>?, causal: Bool = true, scratch s: Scratch) {
        let kvd = k.rows
        project(h, tokens, cos: cos, sin: sin, rope: rope, shape: shape, decodeArithmetic: false, scratch: s)
        for (t, p) in positions.enumerated() {
            keys.store(p, row: s.k.pointer + t * kvd, heads: shape.kvHeads, headDim: shape.headDim)
            values.store(p, row: s.v.pointer + t * kvd, heads: shape.kvHeads, headDim: shape.headDim)
        }
        Attention.forward(q: s.q.pointer, tokens: tokens, queryStart: positions[0], shape: shape, keys: keys,
                          values: values, kvLength: kvLength, causal: causal, mask: mask, into: s.attn.pointer)
        finish(h, tokens, decodeArithmetic: false, scratch: s)
    }

    /// One decode step of several sequences at once: row i of h [n, hidden] is sequence i's token at
    /// positions[i], attending over its own keys and values (under its own additive mask row [p + 1], if
    /// any). Each weight is read once for all n rows, by a
    /// GEMM whose rows equal the one-token GEMV's exactly where the CPU has one (`product`), so a
    /// sequence's logits are those it would get alone.
    func decodeBatch(_ h: UnsafeMutablePointer<Float>, n: Int, positions: [Int], cos: UnsafePointer<Float>,
                     sin: UnsafePointer<Float>, rope: RoPE, shape: AttentionShape, keys: [KVRows], values: [KVRows],
                     masks: [UnsafePointer<Float>?]? = nil, scratch s: Scratch) {
        let kvd = k.rows, qd = q.rows
        project(h, n, cos: cos, sin: sin, rope: rope, shape: shape, decodeArithmetic: true, scratch: s)
        for (i, p) in positions.enumerated() {
            keys[i].store(p, row: s.k.pointer + i * kvd, heads: shape.kvHeads, headDim: shape.headDim)
            values[i].store(p, row: s.v.pointer + i * kvd, heads: shape.kvHeads, headDim: shape.headDim)
            Attention.forward(q: s.q.pointer + i * qd, tokens: 1, queryStart: p, shape: shape, keys: keys[i], values: values[i],
                              kvLength: p + 1, causal: true, mask: masks?[i] ?? nil, into: s.attn.pointer + i * qd)
        }
        finish(h, n, decodeArithmetic: true, scratch: s)
    }

    /// Input norm, q/k/v projections and RoPE into the scratch buffers.
    private func project(_ h: UnsafeMutablePointer<Float>, _ tokens: Int, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
                         rope: RoPE, shape: AttentionShape, decodeArithmetic: Bool, scratch s: Scratch) {
        let hidden = o.rows
        inputNorm.withUnsafeBufferPointer { Norm.rms(h, rows: tokens, dim: hidden, weight: $0.baseAddress!, eps: eps, into: s.normed.pointer) }
        if tokens == 1 {
            withBiases(qBias, kBias, vBias) { qb, kb, vb in
                Linear.gemv([(q, qb, s.q.pointer), (k, kb, s.k.pointer), (v, vb, s.v.pointer)], s.normed.pointer)
            }
        } else {
            product(s.normed.pointer, tokens, q, qBias, into: s.q.pointer, decodeArithmetic)
            product(s.normed.pointer, tokens, k, kBias, into: s.k.pointer, decodeArithmetic)
            product(s.normed.pointer, tokens, v, vBias, into: s.v.pointer, decodeArithmetic)
        }
        rope.apply(s.q.pointer, tokens: tokens, heads: shape.heads, cos: cos, sin: sin)
        rope.apply(s.k.pointer, tokens: tokens, heads: shape.kvHeads, cos: cos, sin: sin)
    }

    /// The attention output's projection and residual, then the MLP block (attention output in s.attn).
    private func finish(_ h: UnsafeMutablePointer<Float>, _ tokens: Int, decodeArithmetic: Bool, scratch s: Scratch) {
        let hidden = o.rows
        product(s.attn.pointer, tokens, o, nil, into: s.normed.pointer, decodeArithmetic)
        add(s.normed.pointer, into: h, count: tokens * hidden)
        postNorm.withUnsafeBufferPointer { Norm.rms(h, rows: tokens, dim: hidden, weight: $0.baseAddress!, eps: eps, into: s.normed.pointer) }
        if tokens == 1 {
            Linear.gemv([(gate, nil, s.gate.pointer), (up, nil, s.up.pointer)], s.normed.pointer)
        } else {
            product(s.normed.pointer, tokens, gate, nil, into: s.gate.pointer, decodeArithmetic)
            product(s.normed.pointer, tokens, up, nil, into: s.up.pointer, decodeArithmetic)
        }
        Activation.swiglu(gate: s.gate.pointer, up: s.up.pointer, count: tokens * gate.rows, into: s.gate.pointer)
        product(s.gate.pointer, tokens, down, nil, into: s.normed.pointer, decodeArithmetic)
        add(s.normed.pointer, into: h, count: tokens * hidden)
    }
}

/// Rows through one weight: with `decodeArithmetic`, a GEMM whose rows are the one-token GEMV's bit for bit
/// (`Linear.gemmWithGemvArithmetic`) wherever this CPU has one, whatever the prefill precision; one row is
/// the one-token GEMV anyway.
@inline(__always)
func product(_ x: UnsafePointer<Float>, _ tokens: Int, _ w: WeightMatrix, _ bias: [Float]?, into y: UnsafeMutablePointer<Float>,
             _ decodeArithmetic: Bool) {
    guard decodeArithmetic && tokens > 1 && Linear.hasGemvArithmeticGEMM(w) else { return linear(x, tokens, w, bias, into: y) }
    if let bias {
        bias.withUnsafeBufferPointer { Linear.gemmWithGemvArithmetic(x, tokens: tokens, weight: w, bias: $0.baseAddress!, into: y) }
    } else {
        Linear.gemmWithGemvArithmetic(x, tokens: tokens, weight: w, bias: nil, into: y)
    }
}

@inline(__always)
func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
    axpy(1, x, y, count)
}

/// Pointers to up to three optional bias vectors, for one call.
@inline(__always)
func withBiases<R>(_ a: [Float]?, _ b: [Float]?, _ c: [Float]?,
                   _ body: (UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafePointer<Float>?) -> R) -> R {
    func with(_ v: [Float]?, _ f: (UnsafePointer<Float>?) -> R) -> R {
        guard let v else { return f(nil) }
        return v.withUnsafeBufferPointer { f($0.baseAddress!) }
    }
    return with(a) { pa in with(b) { pb in with(c) { pc in body(pa, pb, pc) } } }
}
