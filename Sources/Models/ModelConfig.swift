import Foundation

/// Which checkpoint layout a directory holds, and where its language-model tensors live.
public enum CheckpointKind: String, Sendable {
    /// A plain Qwen2/Qwen2.5 causal LM: tensors `model.*` and `lm_head.*`.
    case qwen2
    /// MiniCPM-o 2.6: LLM fields at the top level of config.json, LLM tensors under `llm.`.
    case minicpmo

    /// The prefix of the Qwen2ForCausalLM tensors.
    public var llmPrefix: String { self == .minicpmo ? "llm." : "" }
}

/// The decoded `config.json` of a supported checkpoint.
public struct ModelConfig: Sendable {
    public var kind: CheckpointKind
    public var llm: Qwen2Config
    /// The raw JSON, for sub-configs that later components decode themselves.
    public var raw: Data

    struct Header: Decodable {
        var architectures: [String]?
        var modelType: String?
        enum CodingKeys: String, CodingKey { case architectures, modelType = "model_type" }
    }

    public init(data: Data, source: String = "config.json") throws {
        let header: Header
        let llm: Qwen2Config
        do {
            header = try JSONDecoder().decode(Header.self, from: data)
            llm = try JSONDecoder().decode(Qwen2Config.self, from: data)
        } catch let e as DecodingError {
            throw ConfigError.unreadable(path: source, reason: Self.describe(e))
        } catch {
            throw ConfigError.unreadable(path: source, reason: "not valid JSON: \(error.localizedDescription)")
        }
        let arch = header.architectures?.first ?? ""
        let type = header.modelType ?? ""
        if arch == "MiniCPMO" || type == "minicpmo" {
            kind = .minicpmo
        } else if arch == "Qwen2ForCausalLM" || type == "qwen2" {
            kind = .qwen2
        } else {
            throw ConfigError.unsupportedArchitecture(arch.isEmpty ? type : arch)
        }
        try llm.validate()
        self.llm = llm
        raw = data
    }

    public init(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError.unreadable(path: path, reason: "missing config.json")
        }
        try self.init(data: data, source: path)
    }

    static func describe(_ e: DecodingError) -> String {
        switch e {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
        @unknown default:
            return "\(e)"
        }
    }
}

extension ModelConfig {
    /// Decodes the fields `T` reads from the raw config.json (a sub-model's section).
    func section<T: Decodable>(_ type: T.Type, source: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: raw)
        } catch let e as DecodingError {
            throw ConfigError.unreadable(path: source, reason: Self.describe(e))
        }
    }
}
