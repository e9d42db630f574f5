import Foundation

/// `audio_config` of MiniCPM-o's config.json (a WhisperConfig; only the encoder is used) plus the
/// top-level audio fields. Defaults are whisper-medium's and MiniCPM-o 2.6's.
public struct AudioConfig: Sendable, Equatable {
    public var dModel = 1024
    public var encoderLayers = 24
    public var encoderAttentionHeads = 16
    public var encoderFFNDim = 4096
    public var numMelBins = 80
    public var maxSourcePositions = 1500
    public var activation = "gelu"
    /// Encoder attention chunk in seconds (50 encoder frames per second); ≤ 0 disables the chunk mask.
    public var chunkLength = 1.0
    /// Average-pooling step after the projector (2 for MiniCPM-o 2.6: 25 embeddings per second).
    public var poolStep = 2
    /// Placeholders in 1-second chunks of 25 `<unk>` (true in every MiniCPM-o 2.6 chat path).
    public var chunkInput = true
    /// LLM width: the projector's output.
    public var embedDim: Int

    struct Whisper: Decodable {
        var dModel: Int?, encoderLayers: Int?, encoderAttentionHeads: Int?, encoderFfnDim: Int?
        var numMelBins: Int?, maxSourcePositions: Int?, activationFunction: String?
        enum CodingKeys: String, CodingKey {
            case dModel = "d_model", encoderLayers = "encoder_layers", encoderAttentionHeads = "encoder_attention_heads"
            case encoderFfnDim = "encoder_ffn_dim", numMelBins = "num_mel_bins", maxSourcePositions = "max_source_positions"
            case activationFunction = "activation_function"
        }
    }

    struct Fields: Decodable {
        var audioConfig: Whisper?
        var audioChunkLength: Double?
        var audioPoolStep: Int?
        var chunkInput: Bool?
        var initAudio: Bool?
        enum CodingKeys: String, CodingKey {
            case audioConfig = "audio_config", audioChunkLength = "audio_chunk_length", audioPoolStep = "audio_pool_step"
            case chunkInput = "chunk_input", initAudio = "init_audio"
        }
    }

    public var headDim: Int { dModel / max(encoderAttentionHeads, 1) }
    /// Encoder frames per attention chunk.
    public var chunkFrames: Int { chunkLength > 0 ? Int(chunkLength * 50) : 0 }

    public init(embedDim: Int) { self.embedDim = embedDim }

    /// The audio settings of a MiniCPM-o config, or nil when the checkpoint has no audio encoder.
    public static func decode(_ config: ModelConfig, source: String = "config.json") throws -> AudioConfig? {
        guard config.kind == .minicpmo else { return nil }
        let f = try config.section(Fields.self, source: source)
        if f.initAudio == false { return nil }
        var a = AudioConfig(embedDim: config.llm.hiddenSize)
        if let w = f.audioConfig {
            a.dModel = w.dModel ?? a.dModel
            a.encoderLayers = w.encoderLayers ?? a.encoderLayers
            a.encoderAttentionHeads = w.encoderAttentionHeads ?? a.encoderAttentionHeads
            a.encoderFFNDim = w.encoderFfnDim ?? a.encoderFFNDim
            a.numMelBins = w.numMelBins ?? a.numMelBins
            a.maxSourcePositions = w.maxSourcePositions ?? a.maxSourcePositions
            a.activation = w.activationFunction ?? a.activation
        }
        a.chunkLength = f.audioChunkLength ?? a.chunkLength
        a.poolStep = f.audioPoolStep ?? a.poolStep
        a.chunkInput = f.chunkInput ?? a.chunkInput
        try a.validate()
        return a
    }

    func validate() throws {
        var problems: [String] = []
        if dModel <= 0 || encoderAttentionHeads <= 0 || dModel % encoderAttentionHeads != 0 {
            problems.append("audio_config.d_model \(dModel) is not a positive multiple of encoder_attention_heads \(encoderAttentionHeads)")
        }
        if encoderFFNDim <= 0 || encoderLayers < 0 || numMelBins <= 0 || maxSourcePositions <= 0 {
            problems.append("audio_config sizes are invalid")
        }
        if activation != "gelu" { problems.append("audio_config.activation_function '\(activation)' is not supported (expected gelu)") }
        if poolStep < 1 { problems.append("audio_pool_step must be at least 1") }
        if !problems.isEmpty { throw ConfigError.invalid(problems) }
    }
}
