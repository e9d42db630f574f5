import ArgumentParser
import Foundation
import Media
import MiniCPMO
import Runtime

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Answer one prompt, streaming the text to stdout.")

    @OptionGroup var model: ModelOptions

    @Option(name: .long, help: "The user's message (optional with --task).")
    var prompt: String?

    @Option(name: .long, help: "A ready-made instruction: transcribe (speech recognition of the --audio).")
    var task: Task?

    @Option(name: .long, help: "A system message before the prompt.")
    var system: String?

    @Option(name: .long, help: "An image (PNG or JPEG) placed before the prompt text (repeatable).")
    var image: [String] = []

    @Option(name: .long, help: "Most slices per image (default: the model's, 9); 1 disables slicing.")
    var maxSliceNums: Int?

    @Option(name: .long, help: "A WAV recording placed after the prompt text (repeatable); answers then use MiniCPM-o's speech template.")
    var audio: [String] = []

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var speech: SpeechOptions

    @Flag(name: .long, help: "Print one JSON object (text, token_ids, prompt_tokens, finish_reason, timings) instead of streaming.")
    var json = false

    func validate() throws {
        if task != nil && prompt != nil { throw ValidationError("--task supplies the prompt; leave out --prompt") }
        if task == .transcribe && audio.isEmpty { throw ValidationError("--task transcribe needs --audio") }
        if task == nil && (prompt ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw ValidationError(prompt == nil ? "--prompt is required (or --task)" : "the prompt is empty")
        }
        if let m = maxSliceNums, m < 1 { throw ValidationError("--max-slice-nums must be at least 1") }
    }

    func run() throws {
        let started = Date()
        let loaded = model.load()
        let loadSeconds = Date().timeIntervalSince(started)
        do {
            let requested = Date()
            let generator = try loaded.textGenerator()
            var messages: [MultimodalMessage] = []
            if let system { messages.append(.system(system)) }
            if let voice = try speech.voiceMessage(model: loaded) { messages.append(voice) }
            let images = try image.map { try encodeImageFile($0, model: loaded, maxSliceNums: maxSliceNums) }
            let clips = try audio.map { try encodeAudioFile($0, model: loaded) }
            let encodeSeconds = Date().timeIntervalSince(requested)
            let text = task?.prompt ?? prompt ?? ""
            messages.append(.user(images.map { .image($0) } + [.text(text)] + clips.map { .audio($0) }))
            let ids = try loaded.prompt(messages, tokenizer: generator.tokenizer,
                                        generationPrompt: speech.enabled ? .assistantSpeech : nil)
            var options = sampling.generation
            let streaming = try speech.streamSpeech.map { try StreamingSpeaker(model: loaded, options: speech, directory: $0) }
            if speech.enabled {
                _ = try loaded.speech()  // fail early, before generating, if the checkpoint cannot speak
                options.captureHiddenAt = try ids.speakerPosition(tokenizer: generator.tokenizer)
                if let streaming { options.onCapturedHidden = { streaming.start(hidden: $0) } }
            }
            let session = LanguageSession(model: loaded.llm)
            let result = try generator.generate(prompt: ids, session: session, options: options) { piece in
                if !json { writeOut(piece) }
                streaming?.push(piece)
                return true
            }
            var out = GenerateJSON(result)
            let spoken = Date()
            if speech.enabled && !json { writeOut("\n") }
            if let streaming {
                let wave = streaming.finish()
                if let path = speech.speechOut {
                    try WAVWriter.write(wave, sampleRate: SpeechOutput.sampleRate, to: URL(fileURLWithPath: path), overwrite: speech.overwrite)
                }
                out.speech = .init(file: speech.speechOut ?? speech.streamSpeech ?? "", seconds: Double(wave.count) / Double(SpeechOutput.sampleRate),
                                   frames: streaming.codes.count, codes: streaming.codes)
            } else if speech.enabled {
                let (spoken, path) = try speak(result, model: loaded, tokenizer: generator.tokenizer, options: speech)
                out.speech = .init(file: path, seconds: spoken.seconds, frames: spoken.codes.count, codes: spoken.codes)
            }
            out.timings.loadSeconds = loadSeconds
            out.timings.encodeSeconds = encodeSeconds
            // The first token comes from the prefill's logits: time to it is everything before decoding.
            out.timings.timeToFirstTokenSeconds = spoken.timeIntervalSince(requested) - result.timings.decodeSeconds
            if speech.enabled { out.timings.speechSeconds = Date().timeIntervalSince(spoken) }
            out.timings.peakRSSBytes = Benchmark.peakRSS()
            if json {
                writeOut(String(decoding: try jsonEncoder().encode(out), as: UTF8.self) + "\n")
            } else {
                if !speech.enabled { writeOut("\n") }
                note(rateLine(result.timings))
            }
        } catch {
            fail(error, code: 1)
        }
    }
}
