import ArgumentParser
import Foundation
import MiniCPMO

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text (special-token text is matched as special tokens).")

    @Option(name: .long, help: "Checkpoint or tokenizer directory.")
    var model: String

    @Option(name: .long, help: "Text to tokenize.")
    var text: String?

    @Option(name: .long, help: "File whose contents to tokenize.")
    var file: String?

    @Flag(name: .long, help: "Print {\"ids\": [...]}.")
    var json = false

    func validate() throws {
        if (text == nil) == (file == nil) { throw ValidationError("give exactly one of --text and --file") }
    }

    func run() throws {
        let input: String
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { fail(CLIError("cannot read \(file)"), code: 1) }
            guard let s = String(data: data, encoding: .utf8) else { fail(CLIError("\(file) is not UTF-8 text"), code: 1) }
            input = s
        } else {
            input = text!
        }
        let tokenizer: Qwen2Tokenizer
        do { tokenizer = try Qwen2Tokenizer(directory: URL(fileURLWithPath: modelDirectory(model))) } catch { fail(error, code: 1) }
        let ids = tokenizer.encode(input)
        if json {
            writeOut("{\"ids\": [" + ids.map(String.init).joined(separator: ", ") + "]}\n")
        } else {
            writeOut(ids.map(String.init).joined(separator: " ") + "\n")
        }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
