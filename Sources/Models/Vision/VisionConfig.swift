import Foundation

/// `vision_config` of MiniCPM-o's config.json: the NaViT SigLIP encoder. Defaults are the real model's
/// (SigLIP-400M, patch 14, a 70×70 position table).
public struct SiglipConfig: Decodable, Sendable, Equatable {
    public var hiddenSize = 1152
    public var intermediateSize = 4304
    public var numHiddenLayers = 27
    public var numAttentionHeads = 16
    public var patchSize = 14
    public var imageSize = 980
    public var numChannels = 3
    public var layerNormEps: Float = 1e-6
    public var hiddenAct = "gelu_pytorch_tanh"

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", patchSize = "patch_size", imageSize = "image_size"
        case numChannels = "num_channels", layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func field<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let v = try c.decodeIfPresent(T.self, forKey: key) { value = v }
        }
        try field(.hiddenSize, &hiddenSize)
        try field(.intermediateSize, &intermediateSize)
        try field(.numHiddenLayers, &numHiddenLayers)
        try field(.numAttentionHeads, &numAttentionHeads)
        try field(.patchSize, &patchSize)
        try field(.imageSize, &imageSize)
        try field(.numChannels, &numChannels)
        try field(.layerNormEps, &layerNormEps)
        try field(.hiddenAct, &hiddenAct)
    }

    /// Position slots per side of the learned table (980 / 14 = 70).
    public var positionsPerSide: Int { imageSize / max(patchSize, 1) }
    public var headDim: Int { hiddenSize / max(numAttentionHeads, 1) }
    /// Values per patch: channels × patch × patch, flattened (c, y, x) like the convolution kernel.
    public var patchValues: Int { numChannels * patchSize * patchSize }
}

/// The image part of MiniCPM-o's config.json: encoder, resampler and slicing settings (spec §1.1, §3).
public struct VisionConfig: Sendable, Equatable {
    public var siglip: SiglipConfig
    /// Learned resampler queries: visual tokens per image or slice.
    public var queryNum: Int
    /// The class default drops SigLIP's last layer; MiniCPM-o 2.6's config keeps all 27.
    public var dropVisionLastLayer: Bool
    /// Resampler width = the LLM's hidden size.
    public var embedDim: Int
    public var slice: SliceSettings
    public var useImageID: Bool
    public var sliceMode: Bool

    public struct SliceSettings: Decodable, Sendable, Equatable {
        public var maxSliceNums = 9
        public var patchSize = 14
        public var scaleResolution = 448
        enum CodingKeys: String, CodingKey {
            case maxSliceNums = "max_slice_nums", patchSize = "patch_size", scaleResolution = "scale_resolution"
        }
        public init() {}
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            maxSliceNums = try c.decodeIfPresent(Int.self, forKey: .maxSliceNums) ?? 9
            patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 14
            scaleResolution = try c.decodeIfPresent(Int.self, forKey: .scaleResolution) ?? 448
        }
    }

    /// Resampler heads: the reference uses embed_dim / 128. Test models narrower than one such head
    /// use a single head of the full width.
    public var resamplerHeads: Int { max(1, embedDim / 128) }
    public var encoderLayers: Int { siglip.numHiddenLayers - (dropVisionLastLayer ? 1 : 0) }

    struct Fields: Decodable {
        var visionConfig: SiglipConfig?
        var queryNum: Int?
        var dropVisionLastLayer: Bool?
        var sliceConfig: SliceSettings?
        var useImageId: Bool?
        var sliceMode: Bool?
        var initVision: Bool?
        enum CodingKeys: String, CodingKey {
            case visionConfig = "vision_config", queryNum = "query_num", dropVisionLastLayer = "drop_vision_last_layer"
            case sliceConfig = "slice_config", useImageId = "use_image_id", sliceMode = "slice_mode"
            case initVision = "init_vision"
        }
    }

    /// The vision settings of a MiniCPM-o config, or nil when the checkpoint has no vision part.
    public static func decode(_ config: ModelConfig, source: String = "config.json") throws -> VisionConfig? {
        guard config.kind == .minicpmo else { return nil }
        let f = try config.section(Fields.self, source: source)
        if f.initVision == false { return nil }
        let v = VisionConfig(siglip: f.visionConfig ?? SiglipConfig(), queryNum: f.queryNum ?? 64,
                             dropVisionLastLayer: f.dropVisionLastLayer ?? true, embedDim: config.llm.hiddenSize,
                             slice: f.sliceConfig ?? SliceSettings(), useImageID: f.useImageId ?? true,
                             sliceMode: f.sliceMode ?? true)
        try v.validate()
        return v
    }

    func validate() throws {
        var problems: [String] = []
        let s = siglip
        if s.hiddenSize <= 0 || s.numAttentionHeads <= 0 || s.hiddenSize % s.numAttentionHeads != 0 {
            problems.append("vision_config.hidden_size \(s.hiddenSize) is not a positive multiple of num_attention_heads \(s.numAttentionHeads)")
        }
        if s.patchSize <= 0 || s.imageSize < s.patchSize { problems.append("vision_config.patch_size/image_size \(s.patchSize)/\(s.imageSize) are invalid") }
        if s.numChannels != 3 { problems.append("vision_config.num_channels must be 3 (RGB), got \(s.numChannels)") }
        if s.intermediateSize <= 0 || encoderLayers < 0 { problems.append("vision_config sizes are invalid") }
        if !["gelu_pytorch_tanh", "gelu_new", "gelu_fast"].contains(s.hiddenAct) {
            problems.append("vision_config.hidden_act '\(s.hiddenAct)' is not supported (expected gelu_pytorch_tanh)")
        }
        if queryNum <= 0 { problems.append("query_num must be positive") }
        if embedDim % 4 != 0 || embedDim % resamplerHeads != 0 { problems.append("hidden_size \(embedDim) must be a multiple of 4 for the resampler") }
        if slice.patchSize != s.patchSize { problems.append("slice_config.patch_size \(slice.patchSize) differs from vision_config.patch_size \(s.patchSize)") }
        if slice.maxSliceNums < 1 || slice.scaleResolution < slice.patchSize { problems.append("slice_config is invalid") }
        if !problems.isEmpty { throw ConfigError.invalid(problems) }
    }
}
