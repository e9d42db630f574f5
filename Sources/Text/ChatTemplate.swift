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
}
