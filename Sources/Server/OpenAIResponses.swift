import Foundation

/// Response bodies, in OpenAI's field names.
struct Usage: Encodable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int { promptTokens + completionTokens }
    var cachedTokens: Int

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(completionTokens, forKey: .completionTokens)
        try c.encode(totalTokens, forKey: .totalTokens)
        try c.encode(Details(cachedTokens: cachedTokens), forKey: .details)
    }
    struct Details: Encodable {
        var cachedTokens: Int
        enum CodingKeys: String, CodingKey { case cachedTokens = "cached_tokens" }
    }
    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
        case details = "prompt_tokens_details"
    }
}

struct AudioPayload: Encodable {
    var id: String
    var data: String?
    var transcript: String?
    var expiresAt: Int?
    enum CodingKeys: String, CodingKey { case id, data, transcript, expiresAt = "expires_at" }
}

/// What a choice carries: the whole message (`message`) or a stream chunk's piece of it (`delta`).
protocol ChoiceBody: Encodable {
    static var key: String { get }
}

struct Choice<Body: ChoiceBody>: Encodable {
    var index = 0
    var body: Body
    var finishReason: String?
    /// The `return_token_ids` extension.
    var tokenIds: [Int]?

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(index, forKey: Key("index"))
        try c.encode(body, forKey: Key(Body.key))
        try c.encodeNil(forKey: Key("logprobs"))
        try c.encode(finishReason, forKey: Key("finish_reason"))  // null until the last chunk
        try c.encodeIfPresent(tokenIds, forKey: Key("token_ids"))
    }

    struct Key: CodingKey {
        var stringValue: String
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }
}

struct ChatCompletion: Encodable {
    var id: String
    var object = "chat.completion"
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: Usage
    var systemFingerprint: String

    typealias Choice = Server.Choice<Message>
    struct Message: ChoiceBody {
        static let key = "message"
        var role = "assistant"
        var content: String?
        var audio: AudioPayload?
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(role, forKey: .role)
            try c.encode(content, forKey: .content)  // null with audio, as OpenAI sends it
            try c.encodeIfPresent(audio, forKey: .audio)
        }
        enum CodingKeys: String, CodingKey { case role, content, audio }
    }
    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage, systemFingerprint = "system_fingerprint"
    }
}

struct ChatCompletionChunk: Encodable {
    var id: String
    var object = "chat.completion.chunk"
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: Usage?
    var systemFingerprint: String

    typealias Choice = Server.Choice<Delta>
    struct Delta: ChoiceBody {
        static let key = "delta"
        var role: String?
        var content: String?
        var audio: AudioPayload?
    }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        try c.encode(systemFingerprint, forKey: .systemFingerprint)
        if let usage { try c.encode(usage, forKey: .usage) } else if choices.isEmpty { try c.encodeNil(forKey: .usage) }
    }
    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage, systemFingerprint = "system_fingerprint"
    }
}

struct ModelList: Encodable {
    var object = "list"
    var data: [ModelInfo]
}

struct ModelInfo: Encodable {
    var id: String
    var object = "model"
    var created: Int
    var ownedBy = "minicpmo"
    enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by" }
}

struct Transcription: Encodable { var text: String }

struct VoiceInfo: Encodable {
    var id: String
    var object = "voice"
    var created: Int
    var seconds: Double
}

struct VoiceList: Encodable {
    var object = "list"
    var data: [VoiceInfo]
}

struct HealthBody: Encodable {
    var status: String
    var message: String?
}
