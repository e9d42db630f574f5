import Foundation

/// Writes a copy of a checkpoint whose language-model linear weights (and LM head) are
/// block-quantized. The result loads directly, memory-mapped, without re-quantizing: each quantized
/// `name` is stored as `name.qvalues` + `name.qscales` (see `WeightReader`). Everything else —
/// embeddings, norms, biases, other components, tokenizer and asset files — is copied as it is.
public enum CheckpointQuantizer {
    /// Largest shard written.
    static let shardBytes = 4 << 30

    public struct Summary: Sendable {
        public var quantizedTensors: Int
        public var bytesIn: Int
        public var bytesOut: Int
    }

    public static func run(model directory: String, format: WeightFormat, output: String,
                           progress: (String) -> Void = { _ in }) throws -> Summary {
        precondition(format.isQuantized)
        let fm = FileManager.default
        let src = URL(fileURLWithPath: directory).standardizedFileURL.resolvingSymlinksInPath()
        let dst = URL(fileURLWithPath: output).standardizedFileURL
        if src.path == dst.resolvingSymlinksInPath().path {
            throw QuantizeError("the output directory is the model directory")
        }
        if fm.fileExists(atPath: dst.path), !((try? fm.contentsOfDirectory(atPath: dst.path)) ?? ["?"]).isEmpty {
            throw QuantizeError("\(dst.path) exists and is not empty; choose a new directory")
        }
        let config = try ModelConfig(directory: directory)
        let checkpoint = try Checkpoint(directory: directory)
        let llm = try Qwen2Model.load(checkpoint, config: config)  // validates every tensor first
        let prefix = config.kind.llmPrefix

        // the matrices to quantize, by tensor name
        var targets: [String: WeightMatrix] = [:]
        let names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
        for (i, layer) in llm.layers.enumerated() {
            for (n, w) in zip(names, layer.linearWeights) { targets["\(prefix)model.layers.\(i).\(n).weight"] = w }
        }
        targets["\(prefix)lm_head.weight"] = llm.lmHead  // also written for tied checkpoints
        targets = targets.filter { $0.value.cols % quantBlock == 0 && !$0.value.format.isQuantized }

        var entries: [SafetensorsWriter.LazyEntry] = []
        let stash = ScaleStash()
        for name in checkpoint.tensorNames where targets[name] == nil {
            let t = checkpoint.tensor(name)!
            entries.append(.init(name: name, dtype: t.dtype, shape: t.shape, byteCount: t.byteCount) {
                Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: t.data), count: t.byteCount, deallocator: .none)
            })
        }
        for (name, w) in targets.sorted(by: { $0.key < $1.key }) {
            let rows = w.rows, cols = w.cols
            entries.append(.init(name: name + WeightReader.quantizedValuesSuffix, dtype: format == .q8_0 ? .i8 : .u8,
                                 shape: [rows, format == .q8_0 ? cols : cols / 2], byteCount: rows * format.rowBytes(cols)) {
                let q = Quant.quantize(w, to: format)
                stash.put(name, Data(bytes: q.scales!, count: rows * format.scaleRowBytes(cols)))
                WeightReader.evict(w)
                return Data(bytes: q.data, count: rows * format.rowBytes(cols))
            })
            entries.append(.init(name: name + WeightReader.quantizedScalesSuffix, dtype: .f16,
                                 shape: [rows, cols / quantBlock], byteCount: rows * format.scaleRowBytes(cols)) {
                stash.take(name)
            })
        }

        // shards in order, each under shardBytes (a quantized pair stays together)
        var shards: [[SafetensorsWriter.LazyEntry]] = [[]]
        var size = 0
        for e in entries {
            if size + e.byteCount > shardBytes, !shards[shards.count - 1].isEmpty,
               !e.name.hasSuffix(WeightReader.quantizedScalesSuffix) {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(e)
            size += e.byteCount
        }

        try fm.createDirectory(at: dst, withIntermediateDirectories: true)
        var weightMap: [String: String] = [:]
        for (i, shard) in shards.enumerated() {
            let file = shards.count == 1 ? "model.safetensors" : String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            progress("writing \(file) (\(shard.count) tensors)")
            try SafetensorsWriter.stream(shard, to: dst.appendingPathComponent(file).path,
                                         metadata: ["format": "pt", "minicpmo_quantization": format.rawValue])
            for e in shard { weightMap[e.name] = file }
        }
        let total = entries.reduce(0) { $0 + $1.byteCount }
        if shards.count > 1 {
            let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
            try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
                .write(to: dst.appendingPathComponent("model.safetensors.index.json"))
        }
        try writeConfig(from: src, to: dst, format: format)
        try copyOtherFiles(from: src, to: dst)
        return Summary(quantizedTensors: targets.count, bytesIn: checkpoint.byteCount, bytesOut: total)
    }

    /// config.json with a note of the quantization (readers of the original format ignore it).
    static func writeConfig(from src: URL, to dst: URL, format: WeightFormat) throws {
        let data = try Data(contentsOf: src.appendingPathComponent("config.json"))
        guard var obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw QuantizeError("config.json is not a JSON object")
        }
        obj["minicpmo_quantization"] = ["format": format.rawValue, "block_size": quantBlock]
        try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
            .write(to: dst.appendingPathComponent("config.json"))
    }

    /// Tokenizer, preprocessor and asset files, links resolved.
    static func copyOtherFiles(from src: URL, to dst: URL) throws {
        let fm = FileManager.default
        for name in try fm.contentsOfDirectory(atPath: src.path) {
            if name.hasSuffix(".safetensors") || name == "model.safetensors.index.json" || name == "config.json" { continue }
            let from = src.appendingPathComponent(name).resolvingSymlinksInPath()
            try fm.copyItem(at: from, to: dst.appendingPathComponent(name))
        }
    }
}

public struct QuantizeError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// Scales produced while writing a matrix's values, kept until its scale tensor is written.
final class ScaleStash: @unchecked Sendable {
    private var data: [String: Data] = [:]
    func put(_ k: String, _ d: Data) { data[k] = d }
    func take(_ k: String) -> Data { data.removeValue(forKey: k) ?? Data() }
}
