import Foundation
import Kernels

/// Problems with a safetensors file or checkpoint; each message names the file and, where there is
/// one, the tensor.
public enum WeightsError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(file: String, reason: String)
    case truncated(file: String, reason: String)
    case badHeader(file: String, reason: String)
    case badTensor(file: String, tensor: String, reason: String)
    case overlap(file: String, first: String, second: String)
    case missingTensor(name: String, file: String)
    case badIndex(file: String, reason: String)
    /// Several problems found while binding a model's weights, reported together.
    case invalidCheckpoint(directory: String, problems: [String])

    public var description: String {
        switch self {
        case let .cannotOpen(f, r): return "\(f): cannot open: \(r)"
        case let .truncated(f, r): return "\(f): truncated safetensors file: \(r)"
        case let .badHeader(f, r): return "\(f): malformed safetensors header: \(r)"
        case let .badTensor(f, t, r): return "\(f): tensor '\(t)': \(r)"
        case let .overlap(f, a, b): return "\(f): tensors '\(a)' and '\(b)' overlap in the data section"
        case let .missingTensor(n, f): return "\(f): no tensor named '\(n)'"
        case let .badIndex(f, r): return "\(f): malformed index: \(r)"
        case let .invalidCheckpoint(d, p):
            return "\(d): checkpoint does not match the model (\(p.count) problem\(p.count == 1 ? "" : "s")):\n  "
                + p.joined(separator: "\n  ")
        }
    }
}

/// One tensor inside a mapped file: dtype, shape and a pointer to its bytes.
public struct TensorView: @unchecked Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let data: UnsafeRawPointer
    public let byteCount: Int
    public let file: String
    /// Keeps the mapping alive.
    public let owner: AnyObject

    public var elementCount: Int { shape.reduce(1, *) }

    /// Float elements widened to Float32 (float dtypes) or converted (integer dtypes).
    public func floats() -> [Float] {
        let n = elementCount
        if let format = dtype.weightFormat {
            return [Float](unsafeUninitializedCapacity: n) { buf, count in
                convertToFloat(data, format: format, count: n, into: buf.baseAddress!)
                count = n
            }
        }
        return integers().map { Float($0) }
    }

    /// Integer elements (integer dtypes; floats are truncated).
    public func integers() -> [Int64] {
        let n = elementCount
        return (0..<n).map { i -> Int64 in
            switch dtype {
            case .i8: return Int64(data.load(fromByteOffset: i, as: Int8.self))
            case .u8, .bool: return Int64(data.load(fromByteOffset: i, as: UInt8.self))
            case .i16: return Int64(data.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
            case .i32: return Int64(data.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
            case .i64: return data.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)
            case .f64: return Int64(data.loadUnaligned(fromByteOffset: 8 * i, as: Double.self))
            case .f32, .f16, .bf16:
                var f: Float = 0
                convertToFloat(data + i * dtype.size, format: dtype.weightFormat!, count: 1, into: &f)
                return Int64(f)
            }
        }
    }

    /// The tensor as a [shape[0], rest] matrix for the kernels (float dtypes only).
    public func matrix() throws -> WeightMatrix {
        guard let format = dtype.weightFormat else {
            throw WeightsError.badTensor(file: file, tensor: name, reason: "dtype \(dtype.rawValue) is not a float matrix")
        }
        // a vector or scalar is one row; higher ranks fold into [shape[0], rest]
        let rows = shape.count <= 1 ? 1 : shape[0]
        return WeightMatrix(rows: rows, cols: elementCount / max(rows, 1), format: format, data: data, owner: owner)
    }
}

/// A memory-mapped safetensors file. The header is validated completely on open: every later access
/// is in bounds.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let metadata: [String: String]
    public private(set) var tensors: [String: TensorView] = [:]
    /// Tensor names in header order.
    public private(set) var names: [String] = []

    private let region: MappedRegion

    /// The largest header accepted (the format's own limit is 100 MB).
    static let maxHeaderLength = 100_000_000

    public init(path: String) throws {
        self.path = path
        let name = (path as NSString).lastPathComponent
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw WeightsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw WeightsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw WeightsError.cannotOpen(file: path, reason: "is a directory") }
        let size = Int(st.st_size)
        guard size >= 8 else {
            throw WeightsError.truncated(file: path, reason: "\(size) bytes, shorter than the 8-byte header length")
        }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw WeightsError.cannotOpen(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        let parsed: Header
        do {
            parsed = try Self.parseHeader(m, size: size, path: path)
        } catch {
            munmap(m, size)
            throw error
        }
        region = MappedRegion(base: m, length: size)
        metadata = parsed.metadata
        let dataStart = parsed.dataStart
        var spans = parsed.entries.map { (begin: $0.begin, end: $0.end, name: $0.name) }
        spans.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        // Empty tensors occupy no bytes and cannot overlap anything.
        let filled = spans.filter { $0.end > $0.begin }
        for (a, b) in zip(filled, filled.dropFirst()) where b.begin < a.end {
            throw WeightsError.overlap(file: path, first: a.name, second: b.name)
        }
        for (key, dtype, shape, begin, end) in parsed.entries {
            tensors[key] = TensorView(name: key, dtype: dtype, shape: shape, data: UnsafeRawPointer(m + dataStart + begin),
                                      byteCount: end - begin, file: name, owner: region)
            names.append(key)
        }
    }

    private struct Header {
        var metadata: [String: String]
        var entries: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)]
        var dataStart: Int
    }

    private static func parseHeader(_ m: UnsafeMutableRawPointer, size: Int, path: String) throws -> Header {

        let headerLength = m.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(size - 8) else {
            throw WeightsError.truncated(file: path, reason: "header length \(headerLength) runs past the end of the \(size)-byte file")
        }
        guard headerLength <= UInt64(Self.maxHeaderLength) else {
            throw WeightsError.badHeader(file: path, reason: "header length \(headerLength) exceeds \(Self.maxHeaderLength)")
        }
        let hlen = Int(headerLength)
        let headerBytes = Array(UnsafeRawBufferPointer(start: m + 8, count: hlen))
        let json: JSONValue
        do {
            json = try JSONParser.parse(headerBytes)
        } catch {
            throw WeightsError.badHeader(file: path, reason: "\(error)")
        }
        guard case let .object(members) = json else {
            throw WeightsError.badHeader(file: path, reason: "header is not a JSON object")
        }
        let dataStart = 8 + hlen
        let dataSize = size - dataStart
        var meta: [String: String] = [:]
        var entries: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)] = []
        for (key, value) in members {
            if key == "__metadata__" {
                guard case let .object(kv) = value else {
                    throw WeightsError.badHeader(file: path, reason: "__metadata__ is not an object")
                }
                for (k, v) in kv {
                    guard case let .string(s) = v else {
                        throw WeightsError.badHeader(file: path, reason: "__metadata__ value for '\(k)' is not a string")
                    }
                    meta[k] = s
                }
                continue
            }
            func bad(_ reason: String) -> WeightsError { .badTensor(file: path, tensor: key, reason: reason) }
            guard case .string(let dt)? = value["dtype"] else { throw bad("missing or non-string dtype") }
            guard let dtype = DType(rawValue: dt) else { throw bad("unknown dtype '\(dt)'") }
            guard case .array(let dims)? = value["shape"] else { throw bad("missing shape") }
            var shape: [Int] = []
            var count = 1
            for d in dims {
                guard case let .number(x) = d, x >= 0, x == x.rounded(), x < 1e15 else { throw bad("invalid shape \(dims)") }
                shape.append(Int(x))
                let (c, overflow) = count.multipliedReportingOverflow(by: Int(x))
                guard !overflow, c < 1 << 50 else { throw bad("shape \(shape) is too large") }
                count = c
            }
            guard case .array(let offs)? = value["data_offsets"], offs.count == 2,
                  case let .number(b) = offs[0], case let .number(e) = offs[1],
                  b >= 0, e >= 0, b == b.rounded(), e == e.rounded(), b < 1e15, e < 1e15
            else { throw bad("missing or invalid data_offsets") }
            let begin = Int(b), end = Int(e)
            guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] are reversed") }
            guard end <= dataSize else {
                throw WeightsError.truncated(file: path, reason: "tensor '\(key)' ends at byte \(end) of a \(dataSize)-byte data section")
            }
            guard end - begin == count * dtype.size else {
                throw bad("shape \(shape) of \(dtype.rawValue) needs \(count * dtype.size) bytes but data_offsets span \(end - begin)")
            }
            entries.append((key, dtype, shape, begin, end))
        }
        return Header(metadata: meta, entries: entries, dataStart: dataStart)
    }


    public func tensor(_ name: String) throws -> TensorView {
        guard let t = tensors[name] else { throw WeightsError.missingTensor(name: name, file: path) }
        return t
    }
}

/// Owns one mmap; tensor views keep it alive, so a model outlives the file object that opened it.
final class MappedRegion: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int

    init(base: UnsafeMutableRawPointer, length: Int) {
        self.base = base
        self.length = length
    }

    deinit { munmap(base, length) }
}
