import Foundation

/// `minicpmo probe`: runs one component on tensors from a safetensors file and writes its outputs
/// (see the probe contract in the docs). Bad inputs raise `ProbeError.input`, which the CLI reports
/// with exit code 2.
public enum Probe {
    public static let components = ["llm", "vision", "image", "mel", "audio", "tts", "dvae", "vocos"]

    public static func run(component: String, model: MiniCPMOModel, input: String, output: String) throws {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: input) } catch { throw ProbeError.input("\(error)") }
        let outputs: [SafetensorsWriter.Entry]
        switch component {
        case "llm": outputs = try llm(model.llm, inputs: file)
        case "vision": outputs = try vision(try model.vision(), inputs: file)
        case "image": outputs = try image(model, inputs: file)
        case "audio": outputs = try audio(try model.audio(), inputs: file)
        case "mel": outputs = try mel(inputs: file)
        case "tts": outputs = try tts(try model.speech(), inputs: file)
        case "dvae": outputs = try dvae(try model.dvae(), config: try model.ttsConfig(), inputs: file)
        case "vocos": outputs = try vocos(try model.vocos(), inputs: file)
        default:
            throw ProbeError.input("unknown component '\(component)' (available: \(components.joined(separator: ", ")))")
        }
        try SafetensorsWriter.write(outputs, to: output, metadata: ["component": component])
    }

    /// input_ids [N, T] → logits [N, T, V], last_hidden_state [N, T, H]. Each row runs with its own cache.
    static func llm(_ m: Qwen2Model, inputs: SafetensorsFile) throws -> [SafetensorsWriter.Entry] {
        let ids = try integerInput(inputs, "input_ids", rank: 2, expected: "[N, T]")
        let (n, t) = (ids.shape[0], ids.shape[1])
        let h = m.config.hiddenSize, v = m.config.vocabSize
        let values = ids.integers()
        if let bad = values.first(where: { $0 < 0 || $0 >= Int64(v) }) {
            throw ProbeError.input("input_ids holds token id \(bad), outside the vocabulary 0..<\(v)")
        }
        var logits = [Float](), hidden = [Float]()
        logits.reserveCapacity(n * t * v)
        hidden.reserveCapacity(n * t * h)
        let pool = m.makeCachePool()
        for row in 0..<n {
            let seq = values[(row * t)..<((row + 1) * t)].map { Int($0) }
            let cache = KVSequence(pool: pool)
            let x = try m.forward(try m.embed(seq), tokens: t, cache: cache)
            hidden += x.array.prefix(t * h)
            logits += m.logits(x, rows: 0..<t).array
        }
        return [.f32("logits", shape: [n, t, v], logits), .f32("last_hidden_state", shape: [n, t, h], hidden)]
    }

    static func floatInput(_ f: SafetensorsFile, _ name: String, rank: Int, expected: String) throws -> TensorView {
        guard let t = f.tensors[name] else { throw ProbeError.input("missing input '\(name)' (expected F32 \(expected))") }
        guard t.dtype.weightFormat != nil else {
            throw ProbeError.input("input '\(name)' has dtype \(t.dtype.rawValue), expected F32 \(expected)")
        }
        guard t.shape.count == rank, t.shape.allSatisfy({ $0 > 0 }) else {
            throw ProbeError.input("input '\(name)' has shape \(t.shape), expected \(expected) with every dimension ≥ 1")
        }
        return t
    }

    static func integerInput(_ f: SafetensorsFile, _ name: String, rank: Int, expected: String) throws -> TensorView {
        guard let t = f.tensors[name] else { throw ProbeError.input("missing input '\(name)' (expected I64/I32 \(expected))") }
        guard t.dtype == .i64 || t.dtype == .i32 else {
            throw ProbeError.input("input '\(name)' has dtype \(t.dtype.rawValue), expected I64 or I32 \(expected)")
        }
        guard t.shape.count == rank, t.shape.allSatisfy({ $0 > 0 }) else {
            throw ProbeError.input("input '\(name)' has shape \(t.shape), expected \(expected) with every dimension ≥ 1")
        }
        return t
    }
}

public enum ProbeError: Error, CustomStringConvertible {
    case input(String)
    public var description: String {
        switch self { case let .input(s): return s }
    }
}
