import Foundation
import Kernels

/// All safetensors files of a checkpoint directory, addressed by tensor name: a sharded checkpoint
/// through `model.safetensors.index.json`, else `model.safetensors`, else every `*.safetensors` file.
public final class Checkpoint: @unchecked Sendable {
    public let directory: String
    public let files: [SafetensorsFile]
    private var byName: [String: TensorView] = [:]

    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw WeightsError.cannotOpen(file: directory, reason: "no such model directory")
        }
        let indexPath = (directory as NSString).appendingPathComponent("model.safetensors.index.json")
        let single = (directory as NSString).appendingPathComponent("model.safetensors")
        var expected: [String: String] = [:]
        var shardNames: [String]
        if fm.fileExists(atPath: indexPath) {
            (expected, shardNames) = try Self.readIndex(indexPath)
        } else if fm.fileExists(atPath: single) {
            shardNames = ["model.safetensors"]
        } else {
            shardNames = ((try? fm.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasSuffix(".safetensors") }.sorted()
            if shardNames.isEmpty {
                throw WeightsError.cannotOpen(file: directory, reason: "no model.safetensors, index or *.safetensors files")
            }
        }
        files = try shardNames.map { try SafetensorsFile(path: (directory as NSString).appendingPathComponent($0)) }
        for f in files {
            for (name, view) in f.tensors {
                if let other = byName[name] {
                    throw WeightsError.badIndex(file: f.path, reason: "tensor '\(name)' also appears in \(other.file)")
                }
                byName[name] = view
            }
        }
        var problems: [String] = []
        for (name, shard) in expected.sorted(by: { $0.key < $1.key }) where byName[name]?.file != shard {
            problems.append("index maps '\(name)' to \(shard), which does not contain it")
        }
        if !problems.isEmpty {
            throw WeightsError.badIndex(file: indexPath, reason: problems.prefix(10).joined(separator: "; "))
        }
    }

    /// Tensors from another container (e.g. a `torch.save` file), addressed the same way.
    public init(tensors: [String: TensorView], source: String) {
        directory = source
        files = []
        byName = tensors
    }

    private static func readIndex(_ path: String) throws -> ([String: String], [String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw WeightsError.cannotOpen(file: path, reason: "unreadable")
        }
        let json: JSONValue
        do { json = try JSONParser.parse([UInt8](data)) } catch {
            throw WeightsError.badIndex(file: path, reason: "\(error)")
        }
        guard case .object(let map)? = json["weight_map"] else {
            throw WeightsError.badIndex(file: path, reason: "no weight_map object")
        }
        var out: [String: String] = [:]
        var shards: [String] = []
        for (name, v) in map {
            guard case let .string(file) = v, !file.contains("/"), file.hasSuffix(".safetensors") else {
                throw WeightsError.badIndex(file: path, reason: "weight_map entry for '\(name)' is not a shard file name")
            }
            out[name] = file
            if !shards.contains(file) { shards.append(file) }
        }
        return (out, shards.sorted())
    }

    public var tensorNames: [String] { byName.keys.sorted() }

    public func tensor(_ name: String) -> TensorView? { byName[name] }

    /// Bytes of all tensors (what the weights occupy when mapped).
    public var byteCount: Int { byName.values.reduce(0) { $0 + $1.byteCount } }

    public func reader(prefix: String = "") -> WeightReader {
        WeightReader(checkpoint: self, prefix: prefix, log: WeightReader.ProblemLog())
    }
}

/// A prefix-scoped view of a checkpoint that binds weights by name and checks their shapes.
/// Problems are collected, not thrown one by one, so a mismatched checkpoint is reported in full by
/// `validate()`, which every loader calls before it uses any weight.
public struct WeightReader: @unchecked Sendable {
    final class ProblemLog: @unchecked Sendable { var problems: [String] = [] }

    public let checkpoint: Checkpoint
    public let prefix: String
    let log: ProblemLog

    public func scoped(_ name: String) -> WeightReader {
        WeightReader(checkpoint: checkpoint, prefix: full(name) + ".", log: log)
    }

    public func full(_ name: String) -> String { prefix + name }

    /// Whether `name` exists, as a float tensor or pre-quantized.
    public func contains(_ name: String) -> Bool {
        checkpoint.tensor(full(name)) != nil || checkpoint.tensor(full(name) + Self.quantizedValuesSuffix) != nil
    }

    public func record(_ problem: String) { log.problems.append(problem) }

    /// The tensor named `name` (under the prefix) with exactly `shape`, or nil after recording why.
    public func view(_ name: String, shape: [Int]) -> TensorView? {
        guard let t = checkpoint.tensor(full(name)) else {
            record("missing tensor '\(full(name))' (expected shape \(shape))")
            return nil
        }
        guard t.shape == shape else {
            record("tensor '\(full(name))' in \(t.file) has shape \(t.shape), expected \(shape)")
            return nil
        }
        return t
    }

    /// Suffixes of a pre-quantized matrix `name` (written by `minicpmo quantize`): block values
    /// (I8 [rows, cols] for Q8_0, U8 [rows, cols/2] for Q4_0) and F16 block scales [rows, cols/32].
    public static let quantizedValuesSuffix = ".qvalues"
    public static let quantizedScalesSuffix = ".qscales"

    /// A [rows, cols] matrix: a float tensor, or a pre-quantized pair of tensors.
    public func matrix(_ name: String, rows: Int, cols: Int) -> WeightMatrix {
        if checkpoint.tensor(full(name)) == nil, let q = checkpoint.tensor(full(name) + Self.quantizedValuesSuffix) {
            return quantizedMatrix(name, q, rows: rows, cols: cols)
        }
        return matrix(name, shape: [rows, cols])
    }

    /// A float tensor of exactly `shape`, folded into a [shape[0], rest] matrix (a convolution kernel
    /// [out, in, k…] becomes the linear map of its flattened receptive field).
    public func matrix(_ name: String, shape: [Int]) -> WeightMatrix {
        let rows = shape.first ?? 1, cols = shape.dropFirst().reduce(1, *)
        guard let t = view(name, shape: shape) else { return Self.placeholder(rows, cols) }
        guard let m = try? t.matrix() else {
            record("tensor '\(full(name))' in \(t.file) has dtype \(t.dtype.rawValue), expected a float type")
            return Self.placeholder(rows, cols)
        }
        return m
    }

    private func quantizedMatrix(_ name: String, _ q: TensorView, rows: Int, cols: Int) -> WeightMatrix {
        let format: WeightFormat
        if q.dtype == .i8 && q.shape == [rows, cols] {
            format = .q8_0
        } else if q.dtype == .u8 && q.shape == [rows, cols / 2] {
            format = .q4_0
        } else {
            record("quantized tensor '\(q.name)' in \(q.file) has \(q.dtype.rawValue) \(q.shape), expected I8 [\(rows), \(cols)] or U8 [\(rows), \(cols / 2)]")
            return Self.placeholder(rows, cols)
        }
        guard cols % quantBlock == 0,
              let s = view(name + Self.quantizedScalesSuffix, shape: [rows, cols / quantBlock]) else {
            return Self.placeholder(rows, cols)
        }
        guard s.dtype == .f16 else {
            record("tensor '\(s.name)' in \(s.file) has dtype \(s.dtype.rawValue), expected F16")
            return Self.placeholder(rows, cols)
        }
        return WeightMatrix(rows: rows, cols: cols, format: format, data: q.data, scales: s.data, owner: q.owner)
    }

    /// A float vector widened to Float32 (norm weights, biases).
    public func vector(_ name: String, count: Int) -> [Float] {
        guard let t = view(name, shape: [count]) else { return [Float](repeating: 0, count: count) }
        guard t.dtype.weightFormat != nil else {
            record("tensor '\(full(name))' in \(t.file) has dtype \(t.dtype.rawValue), expected a float type")
            return [Float](repeating: 0, count: count)
        }
        return t.floats()
    }

    /// Throws one error listing every problem recorded by this reader and its scopes.
    public func validate() throws {
        if !log.problems.isEmpty {
            throw WeightsError.invalidCheckpoint(directory: checkpoint.directory, problems: log.problems)
        }
    }

    /// Drops the resident pages of a memory-mapped matrix that has been converted (e.g. quantized at
    /// load), so that peak memory holds one copy of the weights, not two. Other matrices are untouched.
    public static func evict(_ m: WeightMatrix) {
        guard m.owner is MappedRegion, m.byteCount >= 1 << 16 else { return }
        let page = Int(getpagesize())
        let start = (Int(bitPattern: m.data) + page - 1) / page * page
        let end = (Int(bitPattern: m.data) + m.format.rowBytes(m.cols) * m.rows) / page * page
        if end > start { madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) }
    }

    /// Stands in for a missing weight until `validate()` throws; never read.
    private static func placeholder(_ rows: Int, _ cols: Int) -> WeightMatrix {
        WeightMatrix(rows: 0, cols: cols, format: .f32, data: UnsafeRawPointer(bitPattern: 64)!, owner: nil)
    }
}
