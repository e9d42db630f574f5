/// Element formats a weight matrix can be stored in. Weights stay in their stored format and are
/// widened to Float32 in registers while streaming: a bf16 checkpoint is never expanded in memory.
public enum WeightFormat: String, Sendable, CaseIterable {
    case f32, f16, bf16

    public var bytesPerElement: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        }
    }
}

/// A row-major [rows, cols] matrix in its stored format, usually a view into a memory-mapped file.
/// `owner` keeps the backing memory alive.
public struct WeightMatrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let format: WeightFormat
    public let data: UnsafeRawPointer
    public let owner: AnyObject?

    public init(rows: Int, cols: Int, format: WeightFormat, data: UnsafeRawPointer, owner: AnyObject?) {
        self.rows = rows
        self.cols = cols
        self.format = format
        self.data = data
        self.owner = owner
    }

    /// An owned float32 matrix (tests, small parameters).
    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "WeightMatrix: \(values.count) values for \(rows)x\(cols)")
        let buf = FloatBuffer(count: values.count)
        values.withUnsafeBufferPointer { buf.pointer.update(from: $0.baseAddress!, count: values.count) }
        self.init(rows: rows, cols: cols, format: .f32, data: UnsafeRawPointer(buf.pointer), owner: buf)
    }

    public var byteCount: Int { rows * cols * format.bytesPerElement }

    /// Address of row `r`.
    @inline(__always)
    public func row(_ r: Int) -> UnsafeRawPointer { data + r * cols * format.bytesPerElement }

    /// Widens row `r` into `out` (cols floats).
    @inline(__always)
    public func readRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        convertToFloat(row(r), format: format, count: cols, into: out)
    }

    /// Widens rows lo..<hi into `out` ((hi-lo)*cols floats).
    public func readRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        convertToFloat(row(range.lowerBound), format: format, count: range.count * cols, into: out)
    }

    /// All elements as Float (small matrices and tests only).
    public func toFloats() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * cols) { buf, n in
            readRows(0..<rows, into: buf.baseAddress!)
            n = rows * cols
        }
    }
}

/// A 64-byte aligned, uninitialised Float buffer owned by a class, so its pointer can be shared with
/// kernels without exclusivity checks or copy-on-write.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public convenience init(zeros count: Int) {
        self.init(count: count)
        pointer.initialize(repeating: 0, count: count)
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { pointer.initialize(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}
