import ArgumentParser
import Foundation
import MiniCPMO

@main
struct MiniCPMOCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "minicpmo",
        abstract: "MiniCPM-o 2.6 inference on the CPU.",
        subcommands: [GenerateCommand.self, ChatCommand.self, ServeCommand.self, DownloadCommand.self, TokenizeCommand.self,
                      BenchCommand.self, QuantizeCommand.self, ProbeCommand.self, LiveCommand.self])
}

/// Messages for people go to stderr; stdout carries only results.
func note(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Reports an error as one line on stderr and exits with `code`.
func fail(_ error: Error, code: Int32) -> Never {
    note("error: \(error)")
    exit(code)
}

/// How a model runs: threads, weight format, prefill arithmetic.
struct RuntimeOptions: ParsableArguments {
    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Language-model weights: bf16 (as stored), q8 or q4 (quantized at load).")
    var quant: QuantChoice = .bf16

    @Option(name: .long, help: "Prefill arithmetic: f32 (exact; the default, but for live), bf16 (bfloat16 activations, AVX512_BF16 dot products, ~2x faster where available) or int8 (q8/q4 weights times int8-quantized activations with VNNI, as decode does; other weights as bf16; live's default).")
    var prefillPrecision: Linear.PrefillPrecision?

    /// `standard`: the precision when none is given (a live call trades exactness for keeping up).
    func apply(standard: Linear.PrefillPrecision = .f32) {
        if let threads { Threading.count = threads }
        Linear.prefillPrecision = prefillPrecision ?? standard
    }

    /// Loads `directory`, or exits with a one-line error.
    func load(_ directory: String, quiet: Bool = false, standard: Linear.PrefillPrecision = .f32) -> MiniCPMOModel {
        apply(standard: standard)
        do {
            return try MiniCPMOModel(directory: directory, quantize: quant.format, progress: { if !quiet { note($0) } })
        } catch {
            fail(error, code: 1)
        }
    }
}

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Checkpoint directory (config.json + safetensors), or a Hugging Face repo id (ORG/NAME[@REVISION]) found in its cache.")
    var model: String

    @Flag(name: .long, help: "Download a repo id that is not in the cache without asking.")
    var download = false

    @OptionGroup var runtime: RuntimeOptions

    /// The folder --model names (a repo id resolved in the cache, fetched if allowed).
    var directory: String { modelDirectory(model, download: download) }

    func load(quiet: Bool = false, standard: Linear.PrefillPrecision = .f32) -> MiniCPMOModel {
        runtime.load(directory, quiet: quiet, standard: standard)
    }
}

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Run one component on inputs from a safetensors file and write its outputs.",
        discussion: "Components: \(Probe.components.joined(separator: ", ")). Bad inputs exit with code 2.")

    @Argument(help: "Component to run.")
    var component: String

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Input safetensors file.")
    var input: String

    @Option(name: .long, help: "Output safetensors file.")
    var output: String

    func run() throws {
        guard Probe.components.contains(component) else {
            fail(ProbeError.input("unknown component '\(component)' (available: \(Probe.components.joined(separator: ", ")))"), code: 2)
        }
        let model = options.load(quiet: true)
        do {
            try Probe.run(component: component, model: model, input: input, output: output)
        } catch let e as ProbeError {
            fail(e, code: 2)
        } catch {
            fail(error, code: 1)
        }
    }
}

extension Linear.PrefillPrecision: ExpressibleByArgument {}
