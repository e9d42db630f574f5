import ArgumentParser
import Foundation
import Media
import MiniCPMO
import Runtime

/// Flags for spoken answers, shared by `generate` and `chat`.
struct SpeechOptions: ParsableArguments {
    @Option(name: .long, help: "Also speak the answer: write it to this WAV file (24 kHz; chat writes NAME-1.wav, NAME-2.wav, … per turn).")
    var speechOut: String?

    @Option(name: .long, help: "A WAV recording whose voice the spoken answers imitate (MiniCPM-o's voice-cloning prompt).")
    var voice: String?

    @Option(name: .long, help: "MiniCPM-o's speech system prompt: assistant (with --voice: speak in that voice; without: the built-in voice), roleplay (with --voice: play the character of the recording), default (a general voice assistant). Default: assistant with --voice, none without.")
    var voiceMode: VoiceMode?

    @Flag(name: .long, help: "Pick the most likely audio codes instead of sampling them (reproducible speech).")
    var speechGreedy = false

    @Option(name: .long, help: "Random seed of the speech sampler.")
    var speechSeed: UInt64 = 0

    @Option(name: .long, help: "Most audio frames per answer (a frame is 1/46.875 s).")
    var maxSpeechFrames: Int = 2048

    @Option(name: .long, help: "Speak while the answer is written: write chunk-NNN.wav files into this directory as they are ready.")
    var streamSpeech: String?

    @Flag(name: .long, help: "Replace existing --speech-out files.")
    var overwrite = false

    var enabled: Bool { speechOut != nil || streamSpeech != nil }

    func validate() throws {
        if (voice != nil || voiceMode != nil) && !enabled { throw ValidationError("--voice and --voice-mode need --speech-out or --stream-speech") }
        if voiceMode == .roleplay && voice == nil { throw ValidationError("--voice-mode roleplay needs --voice") }
        if maxSpeechFrames < 1 { throw ValidationError("--max-speech-frames must be at least 1") }
        if let out = speechOut, !out.lowercased().hasSuffix(".wav") { throw ValidationError("--speech-out must name a .wav file") }
    }

    var sampler: CodeSampler { CodeSampler(seed: speechSeed, greedy: speechGreedy) }

    enum VoiceMode: String, ExpressibleByArgument, CaseIterable { case assistant, roleplay, `default` }

    /// The turn that opens the conversation: voice cloning from a recording, role-play, the built-in
    /// voice, or the default prompt.
    func voiceMessage(model: MiniCPMOModel) throws -> MultimodalMessage? {
        let mode = voiceMode ?? (voice != nil ? .assistant : nil)
        switch (mode, voice) {
        case (nil, _), (.roleplay?, nil):  // the latter is refused by validate()
            return nil
        case (.default?, _):
            return VoicePrompt.generalAssistant.message
        case (.assistant?, nil):
            return VoicePrompt.builtIn.message
        case let (.assistant?, path?):
            return VoicePrompt.clone(try encodeAudioFile(path, model: model)).message
        case let (.roleplay?, path?):
            return VoicePrompt.rolePlay(try encodeAudioFile(path, model: model)).message
        }
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
    let text = SpeechModel.spokenText(result.tokenIds, tokenizer: tokenizer)
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

/// A speech stream fed by the answer's text as it is written (`--stream-speech DIR`).
final class StreamingSpeaker: @unchecked Sendable {
    let model: MiniCPMOModel
    let options: SpeechOptions
    let directory: URL
    var streamer: SpeechStreamer?
    var text = ""
    var all: [Float] = []
    let lock = NSLock()

    init(model: MiniCPMOModel, options: SpeechOptions, directory: String) throws {
        self.model = model
        self.options = options
        self.directory = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasPrefix("chunk-") } ?? []
        if !existing.isEmpty && !options.overwrite {
            throw AudioError.io(path: directory, reason: "it already holds chunk files (choose another directory, or allow overwriting)")
        }
    }

    /// Starts the stream once the speaker vector is known.
    func start(hidden: [Float]) {
        lock.withLock {
            guard let speech = try? model.speech() else { return }
            streamer = SpeechStreamer(speech: speech, speakerHidden: hidden, sampler: options.sampler,
                                      maxFrames: options.maxSpeechFrames) { [self] chunk in write(chunk) }
        }
    }

    func push(_ piece: String) {
        lock.withLock {
            text += piece
            streamer?.update(text: text)
        }
    }

    func finish() -> [Float] {
        lock.withLock {
            streamer?.finish()
            return all
        }
    }

    var codes: [[Int]] { streamer?.codes ?? [] }

    private func write(_ chunk: SpeechChunk) {
        all += chunk.samples
        let url = directory.appendingPathComponent(String(format: "chunk-%03d.wav", chunk.index))
        do {
            try WAVWriter.write(chunk.samples, sampleRate: SpeechOutput.sampleRate, to: url, overwrite: true)
            note(String(format: "[speech chunk %d: %.2f s of audio ready after %.2f s%@]", chunk.index,
                        Double(chunk.samples.count) / Double(SpeechOutput.sampleRate), chunk.readyAfter, chunk.isLast ? ", last" : ""))
        } catch {
            note("error: \(error)")
        }
    }
}
