import ArgumentParser
import Foundation
import Media
import MiniCPMO
import Runtime

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Interactive multi-turn chat (also reads piped stdin, one message per line).",
        discussion: "Commands: /image PATH and /audio PATH (WAV) attach to your next message, /reset starts a new conversation, /quit (or Ctrl-D) leaves.")

    @OptionGroup var model: ModelOptions

    @Option(name: .long, help: "A system message that opens every conversation.")
    var system: String?

    @Option(name: .long, help: "An image (PNG or JPEG) attached to the first message (repeatable).")
    var image: [String] = []

    @Option(name: .long, help: "Most slices per image (default: the model's, 9); 1 disables slicing.")
    var maxSliceNums: Int?

    @Option(name: .long, help: "A WAV recording attached to the first message (repeatable).")
    var audio: [String] = []

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var speech: SpeechOptions

    func run() throws {
        let loaded = model.load()
        let generator: TextGenerator
        do { generator = try loaded.textGenerator() } catch { fail(error, code: 1) }
        let interactive = isatty(STDIN_FILENO) != 0
        let session = LanguageSession(model: loaded.llm)
        var opening: [MultimodalMessage] = system.map { [.system($0)] } ?? []
        do {
            if speech.enabled { _ = try loaded.speech() }
            if let voice = try speech.voiceMessage(model: loaded) { opening.append(voice) }
        } catch { fail(error, code: 1) }
        var messages = opening
        var turn = 0
        var pending: [ContentPart] = [], pendingAudio: [ContentPart] = []
        func attach(_ path: String) {
            do {
                pending.append(.image(try encodeImageFile(path, model: loaded, maxSliceNums: maxSliceNums)))
            } catch {
                note("error: \(error)")  // a bad file must not end the conversation
            }
        }
        func attachAudio(_ path: String) {
            do {
                pendingAudio.append(.audio(try encodeAudioFile(path, model: loaded)))
            } catch {
                note("error: \(error)")
            }
        }
        image.forEach(attach)
        audio.forEach(attachAudio)
        if interactive { note("Type a message; /image PATH attaches an image, /reset starts over, /quit or Ctrl-D leaves.") }
        while true {
            if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
            guard let line = readLine(strippingNewline: true) else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/quit" || text == "/exit" { break }
            if text.hasPrefix("/image ") {
                attach(String(text.dropFirst(7)).trimmingCharacters(in: .whitespaces))
                continue
            }
            if text.hasPrefix("/audio ") {
                attachAudio(String(text.dropFirst(7)).trimmingCharacters(in: .whitespaces))
                continue
            }
            if text == "/reset" {
                messages = opening
                pending = []
                pendingAudio = []
                session.reset()
                note("[conversation reset]")
                continue
            }
            messages.append(.user(pending + [.text(text)] + pendingAudio))
            pending = []
            pendingAudio = []
            do {
                let ids = try loaded.prompt(messages, tokenizer: generator.tokenizer,
                                            generationPrompt: speech.enabled ? .assistantSpeech : nil)
                var options = sampling.generation
                if speech.enabled { turn += 1 }
                // streamed speech goes to DIR/turn-N/chunk-NNN.wav
                let streaming = try speech.streamSpeech.map {
                    try StreamingSpeaker(model: loaded, options: speech, directory: ($0 as NSString).appendingPathComponent("turn-\(turn)"))
                }
                if speech.enabled {
                    options.captureHiddenAt = try ids.speakerPosition(tokenizer: generator.tokenizer)
                    if let streaming { options.onCapturedHidden = { streaming.start(hidden: $0) } }
                }
                let result = try generator.generate(prompt: ids, session: session, options: options) { piece in
                    writeOut(piece)
                    streaming?.push(piece)
                    return true
                }
                writeOut("\n")
                note(rateLine(result.timings))
                if let streaming {
                    let wave = streaming.finish()
                    if speech.speechOut != nil {
                        try? WAVWriter.write(wave, sampleRate: SpeechOutput.sampleRate, to: URL(fileURLWithPath: speech.path(turn: turn)),
                                             overwrite: speech.overwrite)
                    }
                } else if speech.enabled {
                    do {
                        _ = try speak(result, model: loaded, tokenizer: generator.tokenizer, options: speech, turn: turn)
                    } catch {
                        note("error: \(error)")  // the text answer stands; the next turn may still speak
                    }
                }
                messages.append(.assistant(result.text))
            } catch where error is GenerationError || error is MultimodalError {
                // e.g. the conversation outgrew the context: report it and let the user /reset
                note("error: \(error)")
                messages.removeLast()
            } catch {
                fail(error, code: 1)
            }
        }
    }
}
