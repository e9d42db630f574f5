@_exported import Kernels
@_exported import Models
@_exported import Weights
import Foundation

/// A loaded checkpoint: a plain Qwen2 causal LM or MiniCPM-o 2.6 (whose language model is Qwen2).
/// Weights stay memory-mapped in their stored dtype.
public final class MiniCPMOModel: @unchecked Sendable {
    public let directory: String
    public let config: ModelConfig
    public let checkpoint: Checkpoint
    public let llm: Qwen2Model

    /// - progress: called with human-readable loading steps (the CLI prints them on stderr).
    public init(directory: String, progress: (String) -> Void = { _ in }) throws {
        self.directory = directory
        progress("reading \(directory)/config.json")
        config = try ModelConfig(directory: directory)
        progress("mapping safetensors")
        checkpoint = try Checkpoint(directory: directory)
        progress("binding \(config.llm.numHiddenLayers)-layer \(config.kind == .minicpmo ? "MiniCPM-o" : "Qwen2") language model")
        llm = try Qwen2Model.load(checkpoint, config: config)
        progress("loaded: \(String(format: "%.2f", Double(checkpoint.byteCount) / 1e9)) GB of weights mapped")
    }
}
