@_exported import Kernels
@_exported import Models
@_exported import Text
@_exported import Weights
import Foundation

/// A loaded checkpoint: a plain Qwen2 causal LM or MiniCPM-o 2.6 (whose language model is Qwen2).
/// Weights stay memory-mapped in their stored dtype.
public final class MiniCPMOModel: @unchecked Sendable {
    public let directory: String
    public let config: ModelConfig
    public let checkpoint: Checkpoint
    public let llm: Qwen2Model
    private var tokenizerResult: Result<Qwen2Tokenizer, Error>?
    var visionResult: Result<VisionModel, Error>?
    var audioResult: Result<AudioModel, Error>?
    var speechResult: Result<SpeechModel, Error>?
    var dvaeResult: Result<DVAEDecoder, Error>?
    var vocosResult: Result<Vocos, Error>?
    var templateResult: Result<CheckpointTemplate?, Error>?
    /// The `quantize` format given at load.
    public let quantization: WeightFormat?
    /// The TTS transformer's format: the language model's, whether quantized at load or stored so by
    /// `minicpmo quantize` (each frame reads every TTS weight once, as a decode step does).
    var speechQuantization: WeightFormat? {
        if let quantization { return quantization }
        let stored = llm.layers.first?.linearWeights.first?.format
        return stored?.isQuantized == true ? stored : nil
    }
    /// The encoders' linear layers' format, decided at load (`encoderQuantization(for:)`).
    let encoderFormat: WeightFormat?
    let lock = NSLock()

    /// - quantize: block-quantize the language model's linear weights at load (q8_0 or q4_0);
    ///   nil keeps the stored dtype (and uses pre-quantized weights as they are).
    /// - progress: called with human-readable loading steps (the CLI prints them on stderr).
    public init(directory: String, quantize: WeightFormat? = nil, progress: (String) -> Void = { _ in }) throws {
        self.directory = directory
        quantization = quantize
        encoderFormat = Self.encoderQuantization(for: Linear.effectivePrefillPrecision)
        progress("reading \(directory)/config.json")
        config = try ModelConfig(directory: directory)
        progress("mapping safetensors")
        checkpoint = try Checkpoint(directory: directory)
        progress("binding \(config.llm.numHiddenLayers)-layer \(config.kind == .minicpmo ? "MiniCPM-o" : "Qwen2") language model")
        if let quantize { progress("quantizing the language model to \(quantize.rawValue)") }
        llm = try Qwen2Model.load(checkpoint, config: config, quantize: quantize)
        progress("loaded: \(String(format: "%.2f", Double(checkpoint.byteCount) / 1e9)) GB of weights mapped")
    }

    /// The checkpoint's tokenizer, loaded on first use (probe never needs it); a clear error when the
    /// directory has none or it is broken.
    public func tokenizer() throws -> Qwen2Tokenizer {
        let result = lock.withLock {
            if tokenizerResult == nil {
                let dir = URL(fileURLWithPath: directory)
                tokenizerResult = Result { try Qwen2Tokenizer(directory: dir) }
            }
            return tokenizerResult!
        }
        do { return try result.get() } catch { throw GenerationError.noTokenizer("\(error)") }
    }

    /// The image encoder and resampler, bound on first use (text-only work never touches them); a
    /// clear error when the checkpoint has no vision part or its tensors are missing.
    public func vision() throws -> VisionModel {
        try lazily(\.visionResult) {
            guard let config = try VisionConfig.decode(config, source: directory + "/config.json") else {
                throw ModelLoadError.noVision(directory)
            }
            try PreprocessorConfig.check(directory: directory, vision: config)
            try checkpoint.requirePart("vpm.", "vision weights (vpm.*)", for: "see images")
            try checkpoint.requirePart("resampler.", "resampler weights (resampler.*)", for: "see images")
            return try VisionModel.load(checkpoint, config: config, quantize: encoderFormat)
        }
    }

    /// The encoders' weights for a prefill precision: under int8 their linear layers are block-quantized
    /// to Q8_0 (when first bound), so that they run on the int8 GEMM too. q8 whatever the language model's
    /// format: 4 bits would cost the encoders' accuracy for little time.
    static func encoderQuantization(for precision: Linear.PrefillPrecision) -> WeightFormat? {
        precision == .int8 && Quant.int8GEMMAvailable ? .q8_0 : nil
    }

    /// A component built once, on first use, under the lock; its failure is kept and reported again.
    func lazily<T>(_ slot: ReferenceWritableKeyPath<MiniCPMOModel, Result<T, Error>?>, _ make: () throws -> T) throws -> T {
        try lock.withLock {
            if self[keyPath: slot] == nil { self[keyPath: slot] = Result { try make() } }
            return self[keyPath: slot]!
        }.get()
    }

    /// The checkpoint's own chat template (tokenizer_config.json), nil when it has none (prompts then
    /// use the built-in ChatML, which is what MiniCPM-o's template renders).
    public func chatTemplate() throws -> CheckpointTemplate? {
        try lazily(\.templateResult) {
            try CheckpointTemplate(tokenizerConfig: URL(fileURLWithPath: directory).appendingPathComponent("tokenizer_config.json"))
        }
    }

    /// A generator over this model's language model and tokenizer.
    public func textGenerator() throws -> TextGenerator {
        TextGenerator(model: llm, tokenizer: try tokenizer())
    }
}

public enum ModelLoadError: Error, CustomStringConvertible {
    case noVision(String)
    case noAudio(String)
    public var description: String {
        switch self {
        case let .noAudio(d): return "\(d) holds no audio encoder (not a MiniCPM-o checkpoint, or init_audio is false)"
        case let .noVision(d): return "\(d) holds no vision encoder (not a MiniCPM-o checkpoint, or init_vision is false)"
        }
    }
}
