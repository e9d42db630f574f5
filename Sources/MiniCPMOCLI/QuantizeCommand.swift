import ArgumentParser
import Foundation
import MiniCPMO

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write a copy of a checkpoint with block-quantized language-model weights.",
        discussion: "The output loads directly (memory-mapped, no re-quantization). Embeddings, norms and biases stay as stored.")

    @Option(name: .long, help: "Checkpoint directory.")
    var model: String

    @Option(name: .long, help: "q8 (8-bit, Q8_0-like) or q4 (4-bit, Q4_0-like).")
    var quant: QuantChoice

    @Option(name: .long, help: "New output directory (must not exist or be empty).")
    var output: String

    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int?

    func run() throws {
        if let threads { Threading.count = threads }
        guard let format = quant.format else { fail(CLIError("--quant must be q8 or q4 for quantize"), code: 1) }
        do {
            let s = try CheckpointQuantizer.run(model: modelDirectory(model), format: format, output: output, progress: note)
            note(String(format: "quantized %d tensors: %.2f GB → %.2f GB in %@", s.quantizedTensors,
                        Double(s.bytesIn) / 1e9, Double(s.bytesOut) / 1e9, output))
        } catch {
            fail(error, code: 1)
        }
    }
}

/// `--quant`: bf16 keeps the stored weights.
enum QuantChoice: String, ExpressibleByArgument, CaseIterable {
    case bf16, q8, q4

    var format: WeightFormat? {
        switch self {
        case .bf16: return nil
        case .q8: return .q8_0
        case .q4: return .q4_0
        }
    }
}
