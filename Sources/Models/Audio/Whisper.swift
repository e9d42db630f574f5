import Foundation
import Kernels
import Weights

/// The Whisper encoder of MiniCPM-o (`apm.*`, spec §4.2), one mel row at a time:
///   x = gelu(conv1(mel));  x = gelu(conv2(x)) (stride 2);  x += positions[0 ..< T']
///   per layer:  x += out(MHA(LN₁(x)) under the chunk mask);  x += fc2(gelu(fc1(LN₂(x))))
///   x = LN(x)
/// Query frame i sees key frames j < min(T', (i / chunk + 1) · chunk): 1-second blocks, causal
/// between blocks, as MiniCPM-o's non-streaming path masks them.
public final class WhisperEncoder: @unchecked Sendable {
    public let config: AudioConfig
    let conv1, conv2: WeightMatrix          // [d, mel·3], [d, d·3]
    let conv1Bias, conv2Bias: [Float]
    let positions: WeightMatrix             // [1500, d]
    public internal(set) var layers: [EncoderLayer]
    let norm: (weight: [Float], bias: [Float])
    static let eps: Float = 1e-5

    public init(config: AudioConfig, reader r: WeightReader) {
        self.config = config
        let d = config.dModel
        conv1 = r.matrix("conv1.weight", shape: [d, config.numMelBins, 3])
        conv1Bias = r.vector("conv1.bias", count: d)
        conv2 = r.matrix("conv2.weight", shape: [d, d, 3])
        conv2Bias = r.vector("conv2.bias", count: d)
        positions = r.matrix("embed_positions.weight", rows: config.maxSourcePositions, cols: d)
        layers = (0..<config.encoderLayers).map {
            EncoderLayer(reader: r.scoped("layers.\($0)"), names: .whisper, width: d, inner: config.encoderFFNDim,
                         heads: config.encoderAttentionHeads, eps: Self.eps, gelu: .erf)
        }
        norm = (r.vector("layer_norm.weight", count: d), r.vector("layer_norm.bias", count: d))
    }

    /// Encoder frames for `frames` mel frames: (T − 1) / 2 + 1.
    public static func outputFrames(_ frames: Int) -> Int { (frames - 1) / 2 + 1 }

    /// What a streaming encoder keeps between the pieces of one utterance (spec §4.5): every layer's
    /// keys and values so far. Positions continue from `frames`.
    public final class StreamingState: @unchecked Sendable {
        var layers: [EncoderLayer.History]
        let width: Int
        public var frames: Int { (layers.first?.keys.count ?? 0) / width }
        /// The position the last piece started at.
        public internal(set) var lastOffset = 0
        public init(layers: Int, width: Int) {
            self.layers = (0..<layers).map { _ in EncoderLayer.History() }
            self.width = width
        }
        public func reset() { layers = layers.map { _ in EncoderLayer.History() } }
    }

    public func makeStreamingState() -> StreamingState { StreamingState(layers: layers.count, width: config.dModel) }

    /// Hidden states [T', d] after the final LayerNorm for a mel row [mel, T] (bins × frames). With a
    /// streaming state the piece is encoded as the reference's streaming path does: positions after the
    /// state's frames, every earlier frame and every frame of the piece visible (no mask), and the piece
    /// joins the state. A state that would reach the position table's end is cleared first.
    public func forward(mel: UnsafePointer<Float>, frames t: Int, streaming state: StreamingState? = nil) -> FloatBuffer {
        let d = config.dModel, bins = config.numMelBins
        // the mel row [bins, T] as frames [T, bins], then conv1 (k 3, pad 1) and conv2 (k 3, stride 2, pad 1)
        let frames = FloatBuffer(count: t * bins)
        for c in 0..<bins { for i in 0..<t { frames.pointer[i * bins + c] = mel[c * t + i] } }
        let h1 = FloatBuffer(count: t * d)
        conv1Bias.withUnsafeBufferPointer {
            Conv1d.forward(frames.pointer, frames: t, channels: bins, weight: conv1, bias: $0.baseAddress!, kernel: 3, padding: 1,
                           into: h1.pointer)
        }
        Activation.geluErf(h1.pointer, count: t * d)
        let n = Self.outputFrames(t)
        let x = FloatBuffer(count: n * d)
        conv2Bias.withUnsafeBufferPointer {
            Conv1d.forward(h1.pointer, frames: t, channels: d, weight: conv2, bias: $0.baseAddress!, kernel: 3, padding: 1,
                           stride: 2, into: x.pointer)
        }
        Activation.geluErf(x.pointer, count: n * d)
        if let state, state.frames > 0, state.frames + n >= positions.rows { state.reset() }
        let offset = state?.frames ?? 0
        state?.lastOffset = offset
        let pos = FloatBuffer(count: d)
        for i in 0..<n {
            // past the table the last row repeats, as the reference does
            positions.readRow(min(offset + i, positions.rows - 1), into: pos.pointer)
            axpy(1, pos.pointer, x.pointer + i * d, d)
        }
        let chunk = config.chunkFrames
        let visible: (Int) -> Int = { i in chunk > 0 ? min(n, (i / chunk + 1) * chunk) : n }
        let scratch = EncoderLayer.Scratch(width: d, inner: layers.first?.fc1.rows ?? config.encoderFFNDim, tokens: n)
        for (l, layer) in layers.enumerated() {
            layer.forward(x.pointer, tokens: n, visibleKeys: state == nil ? visible : nil, history: state?.layers[l], scratch: scratch)
        }
        layerNorm(x.pointer, n, d, norm, Self.eps, into: x.pointer)
        return x
    }
}

/// Whisper encoder + projector (linear → ReLU → linear) + average pooling: a mel row → LLM embeddings
/// at 25 per second (spec §4.3).
public final class AudioModel: @unchecked Sendable {
    public let config: AudioConfig
    public let encoder: WhisperEncoder
    let linear1, linear2: WeightMatrix
    let bias1, bias2: [Float]

    public init(config: AudioConfig, reader: WeightReader) {
        self.config = config
        encoder = WhisperEncoder(config: config, reader: reader.scoped("apm"))
        let p = reader.scoped("audio_projection_layer")
        let inDim = config.encoderFFNDim / 4  // the reference's rule; equals d_model for Whisper
        linear1 = p.matrix("linear1.weight", rows: config.embedDim, cols: inDim)
        bias1 = p.vector("linear1.bias", count: config.embedDim)
        linear2 = p.matrix("linear2.weight", rows: config.embedDim, cols: config.embedDim)
        bias2 = p.vector("linear2.bias", count: config.embedDim)
        if inDim != config.dModel {
            reader.record("audio projector input \(inDim) (encoder_ffn_dim / 4) differs from d_model \(config.dModel)")
        }
    }

    /// `quantize`: the encoder layers' linear weights block-quantized at load (for the int8 GEMM).
    public static func load(_ checkpoint: Checkpoint, config: AudioConfig, quantize: WeightFormat? = nil) throws -> AudioModel {
        let reader = checkpoint.reader(prefix: "")
        let model = AudioModel(config: config, reader: reader)
        try reader.validate()
        if let quantize { model.encoder.layers = model.encoder.layers.map { $0.quantized(quantize) } }
        return model
    }

    /// LLM embeddings kept per piece of `frames` mel frames: (T' − 2) // 2 + 1.
    public func tokens(frames: Int) -> Int { Self.pooledTokens(encoderFrames: WhisperEncoder.outputFrames(frames), step: config.poolStep) }

    /// (c − step) // step + 1 with Python's floor division (0 for a single encoder frame).
    public static func pooledTokens(encoderFrames c: Int, step: Int) -> Int {
        let d = c - step
        return (d >= 0 ? d / step : -((-d + step - 1) / step)) + 1
    }

    /// Encoder output [T', d], projected [T', H] and pooled [T' / step, H] for one mel row [mel, T]
    /// (a piece of a stream when given the stream's state).
    public func forward(mel: UnsafePointer<Float>, frames: Int, streaming: WhisperEncoder.StreamingState? = nil)
        -> (hidden: FloatBuffer, projected: FloatBuffer, pooled: FloatBuffer) {
        let hidden = encoder.forward(mel: mel, frames: frames, streaming: streaming)
        let n = WhisperEncoder.outputFrames(frames), h = config.embedDim
        let mid = FloatBuffer(count: n * h)
        linear(hidden.pointer, n, linear1, bias1, into: mid.pointer)
        for i in 0..<(n * h) where mid.pointer[i] < 0 { mid.pointer[i] = 0 }
        let projected = FloatBuffer(count: n * h)
        linear(mid.pointer, n, linear2, bias2, into: projected.pointer)
        let step = config.poolStep, m = n / step
        let pooled = FloatBuffer(zeros: m * h)
        for i in 0..<m {
            let o = pooled.pointer + i * h
            for s in 0..<step { axpy(1 / Float(step), projected.pointer + (i * step + s) * h, o, h) }
        }
        return (hidden, projected, pooled)
    }
}
