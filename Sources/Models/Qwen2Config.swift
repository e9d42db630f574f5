import Foundation

/// The language model's hyper-parameters, decoded from a Qwen2/Qwen2.5 `config.json` or from the top
/// level of MiniCPM-o's (which subclasses Qwen2Config). Defaults are Qwen2Config's.
public struct Qwen2Config: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var hiddenAct: String
    public var bosTokenId: Int?
    public var eosTokenId: [Int]
    /// q/k/v projections carry biases (Qwen2); Llama-style decoders (the TTS transformer) have none.
    public var attentionBias = true

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeParameters = "rope_parameters", ropeScaling = "rope_scaling"
        case maxPositionEmbeddings = "max_position_embeddings", tieWordEmbeddings = "tie_word_embeddings"
        case hiddenAct = "hidden_act", bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
    }

    struct RopeParameters: Codable {
        var ropeTheta: Float?
        var ropeType: String?
        var type: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type", type }
    }

    public init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int, headDim: Int? = nil, rmsNormEps: Float = 1e-6,
                ropeTheta: Float = 10000, maxPositionEmbeddings: Int = 32768, tieWordEmbeddings: Bool = false,
                hiddenAct: String = "silu", bosTokenId: Int? = nil, eosTokenId: [Int] = []) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.headDim = headDim ?? hiddenSize / max(numAttentionHeads, 1)
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.hiddenAct = hiddenAct
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 151936
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 4096
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 22016
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 32
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 32
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? hiddenSize / max(numAttentionHeads, 1)
        rmsNormEps = try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? 1e-6
        // Newer transformers write rope_parameters.rope_theta instead of rope_theta.
        let params = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? params?.ropeTheta ?? 10000
        let scaling = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeScaling)
        for kind in [params?.ropeType, params?.type, scaling?.ropeType, scaling?.type].compactMap({ $0 })
        where kind != "default" {
            throw DecodingError.dataCorruptedError(forKey: .ropeScaling, in: c,
                debugDescription: "rope scaling '\(kind)' is not supported (only plain RoPE)")
        }
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 32768
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        if let one = try? c.decodeIfPresent(Int.self, forKey: .eosTokenId) {
            eosTokenId = [one]
        } else {
            eosTokenId = try c.decodeIfPresent([Int].self, forKey: .eosTokenId) ?? []
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        try c.encode(eosTokenId, forKey: .eosTokenId)
    }

    /// Geometry that the code cannot run is a configuration error, not a crash later.
    public func validate() throws {
        var problems: [String] = []
        for (name, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                          ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                          ("num_key_value_heads", numKeyValueHeads), ("head_dim", headDim),
                          ("max_position_embeddings", maxPositionEmbeddings)] where v <= 0 {
            problems.append("\(name) must be positive (is \(v))")
        }
        if numKeyValueHeads > 0, numAttentionHeads % numKeyValueHeads != 0 {
            problems.append("num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        if headDim > 0, headDim % 2 != 0 { problems.append("head_dim \(headDim) must be even for RoPE") }
        if hiddenAct != "silu" { problems.append("hidden_act '\(hiddenAct)' is not supported (silu)") }
        if !(ropeTheta > 0) { problems.append("rope_theta must be positive") }
        if !problems.isEmpty { throw ConfigError.invalid(problems) }
    }
}

public enum ConfigError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case invalid([String])
    case unsupportedArchitecture(String)

    public var description: String {
        switch self {
        case let .unreadable(p, r): return "\(p): \(r)"
        case let .invalid(p): return "invalid config: " + p.joined(separator: "; ")
        case let .unsupportedArchitecture(a): return "unsupported architecture '\(a)' (expected Qwen2ForCausalLM or MiniCPMO)"
        }
    }
}
