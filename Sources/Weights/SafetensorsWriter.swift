import Foundation

/// Writes safetensors files (probe outputs, converted checkpoints). Tensors are written in the
/// given order with keys sorted in the header, as the Python library does.
public struct SafetensorsWriter {
    public struct Entry: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var bytes: Data

        public init(name: String, dtype: DType, shape: [Int], bytes: Data) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        public static func f32(_ name: String, shape: [Int], _ values: [Float]) -> Entry {
            precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
            return Entry(name: name, dtype: .f32, shape: shape, bytes: values.withUnsafeBytes { Data($0) })
        }

        public static func i64(_ name: String, shape: [Int], _ values: [Int64]) -> Entry {
            precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
            return Entry(name: name, dtype: .i64, shape: shape, bytes: values.withUnsafeBytes { Data($0) })
        }
    }

    /// A tensor whose bytes are produced only when written, so that multi-gigabyte checkpoints
    /// stream to disk one tensor at a time.
    public struct LazyEntry {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var byteCount: Int
        public var bytes: () throws -> Data

        public init(name: String, dtype: DType, shape: [Int], byteCount: Int, bytes: @escaping () throws -> Data) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.byteCount = byteCount
            self.bytes = bytes
        }
    }

    /// Writes `entries` to `path` through a temporary file renamed at the end.
    public static func stream(_ entries: [LazyEntry], to path: String, metadata: [String: String] = [:]) throws {
        let header = headerBytes(entries.map { ($0.name, $0.dtype, $0.shape, $0.byteCount) }, metadata: metadata)
        let tmp = path + ".partial"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
            throw WeightsError.cannotOpen(file: tmp, reason: "cannot create")
        }
        do {
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
            defer { try? h.close() }
            try h.write(contentsOf: header)
            for e in entries {
                let d = try e.bytes()
                guard d.count == e.byteCount else {
                    throw WeightsError.badTensor(file: path, tensor: e.name, reason: "produced \(d.count) bytes, expected \(e.byteCount)")
                }
                try h.write(contentsOf: d)
            }
            try h.synchronize()
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw error
        }
        _ = try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.moveItem(atPath: tmp, toPath: path)
    }

    /// The 8-byte length and the JSON header (space-padded to 8 bytes) for tensors laid out in order.
    static func headerBytes(_ tensors: [(String, DType, [Int], Int)], metadata: [String: String]) -> Data {
        var parts: [String] = []
        if !metadata.isEmpty {
            let kv = metadata.sorted { $0.key < $1.key }.map { "\(quote($0.key)):\(quote($0.value))" }
            parts.append("\"__metadata__\":{\(kv.joined(separator: ","))}")
        }
        var offset = 0
        var sections: [(String, String)] = []
        for (name, dtype, shape, count) in tensors {
            let end = offset + count
            sections.append((name, "\(quote(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"))
            offset = end
        }
        parts += sections.sorted { $0.0 < $1.0 }.map { $0.1 }
        var h = Data(("{" + parts.joined(separator: ",") + "}").utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var len = UInt64(h.count).littleEndian
        return Data(bytes: &len, count: 8) + h
    }

    public static func encode(_ entries: [Entry], metadata: [String: String] = [:]) -> Data {
        var out = headerBytes(entries.map { ($0.name, $0.dtype, $0.shape, $0.bytes.count) }, metadata: metadata)
        for e in entries { out.append(e.bytes) }
        return out
    }

    public static func write(_ entries: [Entry], to path: String, metadata: [String: String] = [:]) throws {
        try encode(entries, metadata: metadata).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    private static func quote(_ s: String) -> String {
        var o = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            case _ where u.value < 0x20: o += String(format: "\\u%04x", u.value)
            default: o.unicodeScalars.append(u)
            }
        }
        return o + "\""
    }
}
