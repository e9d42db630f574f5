import ArgumentParser
import Foundation
import Media
import MiniCPMO

/// Flags for spoken answers, shared by `generate` and `chat`.
struct SpeechOptions: ParsableArguments {
    @Option(name: .long, help: "Also speak the answer: write it to this WAV file (24 kHz; chat writes NAME-1.wav, NAME-2.wav, … per turn).")
    var speechOut: String?

    @Option(name: .long, help: "A WAV recording whose voice the spoken answers imitate (MiniCPM-o's voice-cloning prompt).")
    var voice: String?

    @Flag(name: .long, help: "Pick the most likely audio codes instead of sampling them (reproducible speech).")
    var speechGreedy = false

    @Option(name: .long, help: "Random seed of the speech sampler.")
    var speechSeed: UInt64 = 0

    @Option(name: .long, help: "Most audio frames per answer (a frame is 1/46.875 s).")
    var maxSpeechFrames: Int = 2048

    @Flag(name: .long, help: "Replace existing --speech-out files.")
    var overwrite = false

    var enabled: Bool { speechOut != nil }

    func validate() throws {
        if voice != nil && speechOut == nil { throw ValidationError("--voice needs --speech-out") }
        if maxSpeechFrames < 1 { throw ValidationError("--max-speech-frames must be at least 1") }
        if let out = speechOut, !out.lowercased().hasSuffix(".wav") { throw ValidationError("--speech-out must name a .wav file") }
    }

    var sampler: CodeSampler { CodeSampler(seed: speechSeed, greedy: speechGreedy) }

    /// The voice-cloning turn that opens the conversation (spec §6.2, audio_assistant mode).
    func voiceMessage(model: MiniCPMOModel) throws -> MultimodalMessage? {
        guard let voice else { return nil }
        let clip = try encodeAudioFile(voice, model: model)
        return .user([.text("Clone the voice in the provided audio prompt."), .audio(clip),
                      .text("As an assistant, you will speak using this voice style.")])
    }

    /// The file for turn `turn` (nil: the name as given).
    func path(turn: Int?) -> String {
        guard let out = speechOut else { return "" }
        guard let turn else { return out }
        return String(out.dropLast(4)) + "-\(turn).wav"
    }
}

/// Speaks a finished answer: the text before `<|tts_eos|>`, conditioned on the hidden state at
/// `<|spk|>`; writes the WAV and notes its length and speed on stderr.
func speak(_ result: GenerationResult, model: MiniCPMOModel, tokenizer: Qwen2Tokenizer, options: SpeechOptions,
           turn: Int? = nil) throws -> (SpeechOutput, String) {
    guard let hidden = result.capturedHidden else { throw SpeechError.noSpeakerPosition }
    let speech = try model.speech()
    var spoken = result.tokenIds
    if let eos = tokenizer.id(of: "<|tts_eos|>"), let cut = spoken.firstIndex(of: eos) { spoken = Array(spoken[..<cut]) }
    let text = tokenizer.decode(spoken)
    let t0 = Date()
    var sampler = options.sampler
    let output = speech.speak(text: text, speakerHidden: hidden, sampler: &sampler, maxFrames: options.maxSpeechFrames)
    let path = options.path(turn: turn)
    try WAVWriter.write(output.wave, sampleRate: SpeechOutput.sampleRate, to: URL(fileURLWithPath: path), overwrite: options.overwrite)
    let dt = Date().timeIntervalSince(t0)
    note(String(format: "[speech %@: %.2f s of audio, %d frames, in %.2f s (%.2fx real time)]", path, output.seconds,
                output.codes.count, dt, output.seconds / max(dt, 1e-9)))
    return (output, path)
}

/// Where the speaker vector comes from: the last `<|spk|>` of the prompt.
func speakerPosition(_ prompt: Prompt, tokenizer: Qwen2Tokenizer) throws -> Int {
    guard let spk = tokenizer.id(of: "<|spk|>"), let at = prompt.tokens.lastIndex(of: spk) else { throw SpeechError.noSpeakerPosition }
    return at
}
