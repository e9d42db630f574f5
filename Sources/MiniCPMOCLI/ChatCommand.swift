import ArgumentParser
import Foundation
import MiniCPMO

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Interactive multi-turn chat (also reads piped stdin, one message per line).",
        discussion: "Commands: /reset starts a new conversation, /quit (or Ctrl-D) leaves.")

    @OptionGroup var model: ModelOptions

    @Option(name: .long, help: "A system message that opens every conversation.")
    var system: String?

    @OptionGroup var sampling: SamplingOptions

    func run() throws {
        let loaded = model.load()
        let generator: TextGenerator
        do { generator = try loaded.textGenerator() } catch { fail(error, code: 1) }
        let interactive = isatty(STDIN_FILENO) != 0
        let session = LanguageSession(model: loaded.llm)
        var messages: [ChatMessage] = system.map { [.system($0)] } ?? []
        if interactive { note("Type a message; /reset starts over, /quit or Ctrl-D leaves.") }
        while true {
            if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
            guard let line = readLine(strippingNewline: true) else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/quit" || text == "/exit" { break }
            if text == "/reset" {
                messages = system.map { [.system($0)] } ?? []
                session.reset()
                note("[conversation reset]")
                continue
            }
            messages.append(.user(text))
            let ids = generator.tokenizer.encode(ChatTemplate.render(messages))
            do {
                let result = try generator.generate(prompt: ids, session: session, options: sampling.generation) { piece in
                    writeOut(piece)
                    return true
                }
                writeOut("\n")
                note(rateLine(result.timings))
                messages.append(.assistant(result.text))
            } catch let e as GenerationError {
                // e.g. the conversation outgrew the context: report it and let the user /reset
                note("error: \(e)")
                messages.removeLast()
            } catch {
                fail(error, code: 1)
            }
        }
    }
}
