import Foundation

/// One turn of a conversation.
public struct ChatMessage: Sendable, Equatable {
    public enum Role: String, Sendable {
        case system, user, assistant
    }

    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: .system, content: content) }
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: .user, content: content) }
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(role: .assistant, content: content) }
}

/// ChatML as MiniCPM-o's chat template renders it. Unlike Qwen2's own template it adds no default
/// system message, and no BOS token: the model was trained on exactly these strings, so any extra
/// text shifts its behaviour.
public enum ChatTemplate {
    public static let imStart = "<|im_start|>"
    public static let imEnd = "<|im_end|>"

    /// What follows the messages, i.e. what the model is asked to continue.
    public enum GenerationPrompt: Sendable, Equatable {
        /// Nothing: the rendered conversation is complete (e.g. for scoring or training data).
        case none
        /// `<|im_start|>assistant\n`: the model writes the assistant's text reply.
        case assistant
        /// The assistant header followed by the speaker/TTS markers, so that the model's reply is
        /// conditioned to be spoken by the TTS head.
        case assistantSpeech
    }

    /// The string that opens a speech reply (`GenerationPrompt.assistantSpeech`).
    public static let speechPrompt = "<|im_start|>assistant\n<|spk_bos|><|spk|><|spk_eos|><|tts_bos|>"

    /// Renders `messages` as `<|im_start|>{role}\n{content}<|im_end|>\n` each, then the prompt.
    public static func render(_ messages: [ChatMessage], generationPrompt: GenerationPrompt = .assistant) -> String {
        var text = ""
        for message in messages {
            text += imStart + message.role.rawValue + "\n" + message.content + imEnd + "\n"
        }
        switch generationPrompt {
        case .none: break
        case .assistant: text += imStart + "assistant\n"
        case .assistantSpeech: text += speechPrompt
        }
        return text
    }

    /// Renders with a checkpoint's own template (tokenizer_config.json's `chat_template`) when it has
    /// one. The speech prompt keeps the built-in ChatML: MiniCPM-o's chat() switches to its own TTS
    /// template for spoken answers, whatever the tokenizer's template is.
    public static func render(_ messages: [ChatMessage], generationPrompt: GenerationPrompt = .assistant,
                              template: CheckpointTemplate?) throws -> String {
        guard let template, generationPrompt != .assistantSpeech else { return render(messages, generationPrompt: generationPrompt) }
        var context: [String: JValue] = [
            "messages": .array(messages.map { .object([("role", .string($0.role.rawValue)), ("content", .string($0.content))]) }),
            "add_generation_prompt": .bool(generationPrompt == .assistant),
        ]
        for (k, v) in template.specialTokens { context[k] = .string(v) }
        return try template.template.render(context)
    }
}

/// A checkpoint's chat template with the special tokens templates may name (`bos_token`, …).
public struct CheckpointTemplate: Sendable {
    public let template: JinjaTemplate
    public let specialTokens: [String: String]

    /// From `tokenizer_config.json`: nil when it has no `chat_template`; an error when the template
    /// uses what this renderer does not support. A list of named templates gives its "default" one.
    public init?(tokenizerConfig url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path),
              let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        var source = config["chat_template"] as? String
        if source == nil, let named = config["chat_template"] as? [[String: Any]] {
            source = named.first { $0["name"] as? String == "default" }?["template"] as? String
        }
        guard let source else { return nil }
        template = try JinjaTemplate(source)
        var tokens: [String: String] = [:]
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let s = config[key] as? String { tokens[key] = s }
            else if let o = config[key] as? [String: Any], let s = o["content"] as? String { tokens[key] = s }
        }
        specialTokens = tokens
    }
}
