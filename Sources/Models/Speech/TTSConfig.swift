import Foundation

/// `tts_config` of MiniCPM-o's config.json (ConditionalChatTTS, spec §1.1, §5). Defaults are the real
/// model's.
public struct TTSConfig: Sendable, Equatable {
    public var llmDim = 3584
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var numAttentionHeads = 12
    public var numHiddenLayers = 20
    public var maxPositionEmbeddings = 4096
    public var numAudioTokens = 626
    public var numTextTokens = 21178
    public var numMelBins = 100
    public var numVQ = 4
    public var spkEmbTokenID = 21143
    public var audioBosTokenID = 21132
    public var textEosTokenID = 21133
    public var streamingTextChunkSize = 10
    public var streamingTextReservedLength = 300
    public var streamingAudioChunkSize = 50
    public var topP: Float = 0.7
    public var topK = 20
    public var repetitionPenalty: Float = 1.0

    /// The EOS class of every codebook (the last of num_audio_tokens).
    public var eosCode: Int { numAudioTokens - 1 }
    /// [Stts] + [spk_emb] + reserved text + [Ptts].
    public var conditionLength: Int { streamingTextReservedLength + 3 }
    public var headDim: Int { hiddenSize / max(numAttentionHeads, 1) }

    struct Fields: Decodable {
        var llmDim: Int?, hiddenSize: Int?, intermediateSize: Int?, numAttentionHeads: Int?, numHiddenLayers: Int?
        var maxPositionEmbeddings: Int?, numAudioTokens: Int?, numTextTokens: Int?, numMelBins: Int?, numVq: Int?
        var spkEmbTokenId: Int?, audioBosTokenId: Int?, textEosTokenId: Int?, streamingTextChunkSize: Int?
        var streamingTextReservedLen: Int?, streamingAudioChunkSize: Int?, topP: Float?, topK: Int?, repetitionPenalty: Float?
        var useSpeakerEmbedding: Bool?, useLlmHiddenState: Bool?, useText: Bool?, useMlp: Bool?, numSpkEmbs: Int?
        enum CodingKeys: String, CodingKey {
            case llmDim = "llm_dim", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
            case numAttentionHeads = "num_attention_heads", numHiddenLayers = "num_hidden_layers"
            case maxPositionEmbeddings = "max_position_embeddings", numAudioTokens = "num_audio_tokens"
            case numTextTokens = "num_text_tokens", numMelBins = "num_mel_bins", numVq = "num_vq"
            case spkEmbTokenId = "spk_emb_token_id", audioBosTokenId = "audio_bos_token_id", textEosTokenId = "text_eos_token_id"
            case streamingTextChunkSize = "streaming_text_chunk_size", streamingTextReservedLen = "streaming_text_reserved_len"
            case streamingAudioChunkSize = "streaming_audio_chunk_size", topP = "top_p", topK = "top_k"
            case repetitionPenalty = "repetition_penalty", useSpeakerEmbedding = "use_speaker_embedding"
            case useLlmHiddenState = "use_llm_hidden_state", useText = "use_text", useMlp = "use_mlp", numSpkEmbs = "num_spk_embs"
        }
    }

    struct Top: Decodable {
        var ttsConfig: Fields?
        var initTts: Bool?
        enum CodingKeys: String, CodingKey { case ttsConfig = "tts_config", initTts = "init_tts" }
    }

    public init() {}

    /// The TTS settings of a MiniCPM-o config, or nil when it has no speech output.
    public static func decode(_ config: ModelConfig, source: String = "config.json") throws -> TTSConfig? {
        guard config.kind == .minicpmo else { return nil }
        let top = try config.section(Top.self, source: source)
        if top.initTts == false { return nil }
        var c = TTSConfig()
        c.llmDim = config.llm.hiddenSize
        if let f = top.ttsConfig {
            c.llmDim = f.llmDim ?? c.llmDim
            c.hiddenSize = f.hiddenSize ?? c.hiddenSize
            c.intermediateSize = f.intermediateSize ?? c.intermediateSize
            c.numAttentionHeads = f.numAttentionHeads ?? c.numAttentionHeads
            c.numHiddenLayers = f.numHiddenLayers ?? c.numHiddenLayers
            c.maxPositionEmbeddings = f.maxPositionEmbeddings ?? c.maxPositionEmbeddings
            c.numAudioTokens = f.numAudioTokens ?? c.numAudioTokens
            c.numTextTokens = f.numTextTokens ?? c.numTextTokens
            c.numMelBins = f.numMelBins ?? c.numMelBins
            c.numVQ = f.numVq ?? c.numVQ
            c.spkEmbTokenID = f.spkEmbTokenId ?? c.spkEmbTokenID
            c.audioBosTokenID = f.audioBosTokenId ?? c.audioBosTokenID
            c.textEosTokenID = f.textEosTokenId ?? c.textEosTokenID
            c.streamingTextChunkSize = f.streamingTextChunkSize ?? c.streamingTextChunkSize
            c.streamingTextReservedLength = f.streamingTextReservedLen ?? c.streamingTextReservedLength
            c.streamingAudioChunkSize = f.streamingAudioChunkSize ?? c.streamingAudioChunkSize
            c.topP = f.topP ?? c.topP
            c.topK = f.topK ?? c.topK
            c.repetitionPenalty = f.repetitionPenalty ?? c.repetitionPenalty
            var problems: [String] = []
            if f.useLlmHiddenState == true { problems.append("tts_config.use_llm_hidden_state true is not supported") }
            if f.useSpeakerEmbedding == false || (f.numSpkEmbs ?? 1) != 1 { problems.append("tts_config must use one speaker embedding") }
            if f.useMlp == false { problems.append("tts_config.use_mlp false is not supported") }
            if !problems.isEmpty { throw ConfigError.invalid(problems) }
        }
        if c.hiddenSize % max(c.numAttentionHeads, 1) != 0 || c.headDim % 2 != 0 || c.numVQ < 1 || c.numAudioTokens < 2 {
            throw ConfigError.invalid(["tts_config sizes are invalid"])
        }
        return c
    }

    /// The Llama decoder's hyper-parameters (LlamaConfig defaults beyond what tts_config sets).
    var decoder: Qwen2Config {
        var q = Qwen2Config(vocabSize: 32000, hiddenSize: hiddenSize, intermediateSize: intermediateSize,
                            numHiddenLayers: numHiddenLayers, numAttentionHeads: numAttentionHeads,
                            numKeyValueHeads: numAttentionHeads, rmsNormEps: 1e-6, ropeTheta: 10000,
                            maxPositionEmbeddings: maxPositionEmbeddings)
        q.attentionBias = false
        return q
    }
}
