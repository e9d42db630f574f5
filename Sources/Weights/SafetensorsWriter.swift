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

    public static func encode(_ entries: [Entry], metadata: [String: String] = [:]) -> Data {
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let kv = metadata.sorted { $0.key < $1.key }.map { "\(quote($0.key)):\(quote($0.value))" }
            parts.append("\"__metadata__\":{\(kv.joined(separator: ","))}")
        }
        var offset = 0
        var sections: [(String, String)] = []
        for e in entries {
            let end = offset + e.bytes.count
            sections.append((e.name, "\(quote(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"))
            offset = end
        }
        parts += sections.sorted { $0.0 < $1.0 }.map { $0.1 }
        header += parts.joined(separator: ",") + "}"
        var h = Data(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var out = Data()
        var len = UInt64(h.count).littleEndian
        out.append(Data(bytes: &len, count: 8))
        out.append(h)
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
