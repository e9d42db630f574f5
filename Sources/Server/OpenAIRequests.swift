import Foundation

/// `POST /v1/chat/completions`, the fields this server reads (others, such as `user` or
/// `metadata`, are accepted and ignored).
struct ChatCompletionRequest: Decodable {
    var model: String?
    var messages: [Message]
    var stream: Bool?
    var streamOptions: StreamOptions?
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var stop: OneOrMany?
    var seed: Int64?
    var repetitionPenalty: Double?
    var frequencyPenalty: Double?
    var presencePenalty: Double?
    var n: Int?
    var responseFormat: ResponseFormat?
    var modalities: [String]?
    var audio: AudioOptions?
    var tools: [AnyJSON]?
    var logprobs: Bool?
    /// Extension (as vLLM names it): the answer's token ids in each choice.
    var returnTokenIds: Bool?

    enum CodingKeys: String, CodingKey {
        case model, messages, stream, temperature, seed, stop, n, modalities, audio, tools, logprobs, returnTokenIds = "return_token_ids"
        case streamOptions = "stream_options", topP = "top_p", topK = "top_k", maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens", repetitionPenalty = "repetition_penalty"
        case frequencyPenalty = "frequency_penalty", presencePenalty = "presence_penalty", responseFormat = "response_format"
    }

    struct StreamOptions: Decodable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    struct ResponseFormat: Decodable { var type: String }

    struct AudioOptions: Decodable {
        var voice: String?
        var format: String?
    }

    struct Message: Decodable {
        var role: String
        var content: Content?
        var audio: AssistantAudio?

        struct AssistantAudio: Decodable { var id: String }
    }

    /// A message's content: a string, or a list of typed parts.
    enum Content: Decodable {
        case text(String)
        case parts([Part])

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .text(s); return }
            if let p = try? c.decode([Part].self) { self = .parts(p); return }
            // decode again to surface the precise error (a bad part's path and type)
            do { self = .parts(try c.decode([Part].self)) } catch let e as DecodingError {
                if case .typeMismatch = e, (try? c.decode([AnyJSON].self)) == nil {
                    throw DecodingError.typeMismatch(String.self, .init(codingPath: decoder.codingPath,
                                                                        debugDescription: "a string or an array of content parts"))
                }
                throw e
            }
        }
    }

    enum Part: Decodable {
        case text(String)
        case imageURL(String)
        case inputAudio(data: String, format: String)

        enum CodingKeys: String, CodingKey {
            case type, text, imageURL = "image_url", inputAudio = "input_audio"
        }
        struct ImageURL: Decodable { var url: String }
        struct InputAudio: Decodable { var data: String; var format: String? }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let type = try c.decode(String.self, forKey: .type)
            switch type {
            case "text":
                self = .text(try c.decode(String.self, forKey: .text))
            case "image_url":
                // OpenAI's shape is {"url": …}; a bare string is accepted too
                if let s = try? c.decode(String.self, forKey: .imageURL) { self = .imageURL(s) } else {
                    self = .imageURL(try c.decode(ImageURL.self, forKey: .imageURL).url)
                }
            case "input_audio":
                let a = try c.decode(InputAudio.self, forKey: .inputAudio)
                self = .inputAudio(data: a.data, format: a.format ?? "wav")
            default:
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [CodingKeys.type],
                                                        debugDescription: "unknown content part type '\(type)' (this server reads text, image_url and input_audio)"))
            }
        }
    }
}

/// `stop`: a string or a list of strings.
struct OneOrMany: Decodable {
    var values: [String]
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { values = [s] } else { values = try c.decode([String].self) }
    }
}

/// `POST /v1/audio/speech`.
struct SpeechRequestBody: Decodable {
    var model: String?
    var input: String
    var voice: String?
    var responseFormat: String?
    var speed: Double?
    enum CodingKeys: String, CodingKey { case model, input, voice, speed, responseFormat = "response_format" }
}

/// Any JSON value, not looked into (for fields that are only checked for presence).
struct AnyJSON: Decodable {
    init(from decoder: Decoder) throws {}
}
