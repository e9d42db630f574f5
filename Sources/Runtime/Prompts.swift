import MiniCPMO

/// MiniCPM-o's ready-made instructions and voice prompts (spec §6.2), shared by the CLI and the server.
public enum TaskPrompt {
    /// Speech recognition; the recording follows the instruction (the model card's ASR example).
    public static let transcribe = "Please listen to the audio snippet carefully and transcribe the content."
    /// Reading text aloud: the model card's text-to-speech example ("Please read the text below." and
    /// the text, joined by "\n", answered with the speech template).
    public static let readAloud = "Please read the text below."
}

/// Who the spoken answers sound like: the turn that opens the conversation (get_sys_prompt of spec
/// §6.2, sent with role user like the reference).
public enum VoicePrompt: Sendable {
    /// MiniCPM-o's general voice-assistant prompt.
    case generalAssistant
    /// The built-in assistant voice (`<reserved_53>`).
    case builtIn
    /// Speak in the voice of a recording.
    case clone(EncodedAudio)
    /// Play the character of a recording.
    case rolePlay(EncodedAudio)
    /// The voice-cloning (TTS) prompt: the recording only, for reading text aloud.
    case voiceCloning(EncodedAudio)

    public var message: MultimodalMessage {
        switch self {
        case .generalAssistant:
            return .user([.text("You are a helpful assistant. You can accept audio and text input and output voice and text.")])
        case .builtIn:
            return .user([.text("Use the <reserved_53> voice."), .text("As an assistant, you will speak using this voice style.")])
        case let .clone(clip):
            return .user([.text("Clone the voice in the provided audio prompt."), .audio(clip),
                          .text("As an assistant, you will speak using this voice style.")])
        case let .rolePlay(clip):
            return .user([.text("Clone the voice in the provided audio prompt."), .audio(clip),
                          .text("Try to role-play the character based on the audio prompt above.")])
        case let .voiceCloning(clip):
            return .user([.text("Clone the voice in the provided audio prompt."), .audio(clip)])
        }
    }
}

extension Prompt {
    /// Where the speaker vector comes from: the last `<|spk|>` of the prompt.
    public func speakerPosition(tokenizer: Qwen2Tokenizer) throws -> Int {
        guard let spk = tokenizer.id(of: "<|spk|>"), let at = tokens.lastIndex(of: spk) else { throw SpeechError.noSpeakerPosition }
        return at
    }
}
