/// Element formats a weight matrix can be stored in. Weights stay in their stored format and are
/// widened to Float32 in registers while streaming: a bf16 checkpoint is never expanded in memory.
public enum WeightFormat: String, Sendable, CaseIterable {
    case f32, f16, bf16
    /// Blocks of 32 int8 values with one f16 scale each (like ggml's Q8_0), stored as two arrays:
    /// values [rows, cols] and scales [rows, cols/32].
    case q8_0
    /// Blocks of 32 4-bit values (nibble − 8) with one f16 scale each (like ggml's Q4_0): values
    /// [rows, cols/2] (low nibbles = elements 0..15 of a block, high nibbles = 16..31), scales [rows, cols/32].
    case q4_0

    public var isQuantized: Bool { self == .q8_0 || self == .q4_0 }

    /// Bytes of the value array per row of `cols` elements.
    public func rowBytes(_ cols: Int) -> Int {
        switch self {
        case .f32: return 4 * cols
        case .f16, .bf16: return 2 * cols
        case .q8_0: return cols
        case .q4_0: return cols / 2
        }
    }

    /// Bytes of the scale array per row (quantized formats).
    public func scaleRowBytes(_ cols: Int) -> Int { isQuantized ? 2 * (cols / quantBlock) : 0 }
}

/// Elements per quantization block.
public let quantBlock = 32

/// A row-major [rows, cols] matrix in its stored format, usually a view into a memory-mapped file.
/// `owner` keeps the backing memory alive.
public struct WeightMatrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let format: WeightFormat
    public let data: UnsafeRawPointer
    /// f16 block scales of quantized formats: of every row, or in an interleaved matrix (whose groups
    /// hold their own scales) of the rows past the last group, the first of them at index 0.
    public let scales: UnsafeRawPointer?
    public let owner: AnyObject?
    /// Rows stored in groups of sixteen interleaved for decode (made at load by
    /// `Quant.quantize(_:to:interleaved:)`; files always hold plain rows): each group one record in which
    /// each block's bytes come in 4-byte pieces, so that lane i of every 64-byte vector is row i, with the
    /// blocks' scales next to their values (see `block(_:_:)`); the rows past the last whole group follow
    /// as plain rows, then their scales.
    public let interleaved: Bool

    public init(rows: Int, cols: Int, format: WeightFormat, data: UnsafeRawPointer, scales: UnsafeRawPointer? = nil,
                owner: AnyObject?, interleaved: Bool = false) {
        precondition(!format.isQuantized || (scales != nil && cols % quantBlock == 0),
                     "quantized matrices need scales and a multiple of \(quantBlock) columns")
        precondition(!interleaved || Self.canInterleave(format, rows: rows, cols: cols),
                     "only quantized matrices of 16 rows or more interleave")
        self.rows = rows
        self.cols = cols
        self.format = format
        self.data = data
        self.scales = scales
        self.owner = owner
        self.interleaved = interleaved
    }

    /// An owned float32 matrix (tests, small parameters).
    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "WeightMatrix: \(values.count) values for \(rows)x\(cols)")
        let buf = FloatBuffer(count: values.count)
        values.withUnsafeBufferPointer { buf.pointer.update(from: $0.baseAddress!, count: values.count) }
        self.init(rows: rows, cols: cols, format: .f32, data: UnsafeRawPointer(buf.pointer), owner: buf)
    }

    public var byteCount: Int { rows * (format.rowBytes(cols) + format.scaleRowBytes(cols)) }

    /// Rows per interleaved group.
    public static let interleaveGroup = 16

    static func canInterleave(_ format: WeightFormat, rows: Int, cols: Int) -> Bool {
        format.isQuantized && rows >= interleaveGroup
    }

    /// Rows 0..<interleavedRows are stored in interleaved groups, the rest as plain rows.
    public var interleavedRows: Int { interleaved ? rows - rows % Self.interleaveGroup : 0 }

    /// Address of row `r`'s values (rows are contiguous except in interleaved groups).
    @inline(__always)
    public func row(_ r: Int) -> UnsafeRawPointer {
        let g = interleavedRows
        precondition(r >= g, "a row of an interleaved group is not contiguous")
        return data + g * (format.rowBytes(cols) + format.scaleRowBytes(cols)) + (r - g) * format.rowBytes(cols)
    }

    /// Address of a plain row's f16 block scales (quantized formats).
    @inline(__always)
    public func rowScales(_ r: Int) -> UnsafePointer<UInt16> {
        precondition(r >= interleavedRows, "an interleaved group holds its rows' scales")
        return scales!.assumingMemoryBound(to: UInt16.self) + (r - interleavedRows) * (cols / quantBlock)
    }

    /// Where block `b` of row `r` of a quantized matrix lives: its values, `blockBytes / piece` pieces of
    /// `piece` bytes `stride` bytes apart (one piece unless interleaved), and its f16 scale.
    @inline(__always)
    public func block(_ r: Int, _ b: Int) -> (values: UnsafeRawPointer, piece: Int, stride: Int, scale: UnsafePointer<UInt16>) {
        let blockBytes = format.rowBytes(quantBlock), nb = cols / quantBlock
        guard r < interleavedRows else { return (row(r) + b * blockBytes, blockBytes, blockBytes, rowScales(r) + b) }
        // a group's blocks in pairs: [block 2p: vector k = row 0's piece k … row 15's][block 2p+1][the
        // pair's 32 scales]; an odd last block alone with its 16
        let n = Self.interleaveGroup
        let group = data + (r / n) * n * (format.rowBytes(cols) + format.scaleRowBytes(cols))
        let pair = group + (b & ~1) * n * (blockBytes + 2), blocks = min(2, nb - (b & ~1))
        let scales = (pair + blocks * n * blockBytes).assumingMemoryBound(to: UInt16.self)
        return (pair + (b & 1) * n * blockBytes + 4 * (r % n), 4, 64, scales + n * (b & 1) + r % n)
    }

    /// Block `b` of row `r`'s values, copied contiguous (as in a plain row) to `out`; returns its f16 scale.
    public func copyBlock(_ r: Int, _ b: Int, to out: UnsafeMutableRawPointer) -> UInt16 {
        let (v, piece, stride, scale) = block(r, b)
        for k in 0..<(format.rowBytes(quantBlock) / piece) { out.advanced(by: k * piece).copyMemory(from: v + k * stride, byteCount: piece) }
        return scale.pointee
    }

    /// Widens (dequantizes) row `r` into `out` (cols floats).
    @inline(__always)
    public func readRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        readRows(r..<(r + 1), into: out)
    }

    /// Widens (dequantizes) rows lo..<hi into `out` ((hi-lo)*cols floats).
    public func readRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        if format.isQuantized {
            Quant.dequantizeRows(self, range, into: out)
        } else {
            convertToFloat(row(range.lowerBound), format: format, count: range.count * cols, into: out)
        }
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

extension WeightMatrix {
    /// Rows `range` of an unquantized matrix, sharing its storage (e.g. one third of a packed q|k|v).
    public func rowSlice(_ range: Range<Int>) -> WeightMatrix {
        precondition(!format.isQuantized && range.upperBound <= rows, "rowSlice: unquantized rows only")
        return WeightMatrix(rows: range.count, cols: cols, format: format, data: row(range.lowerBound), owner: owner)
    }

    /// The transpose as an owned float32 matrix (parameters applied from the right, e.g. x·proj).
    public func transposed() -> WeightMatrix {
        let m = toFloats()
        var t = [Float](repeating: 0, count: m.count)
        for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = m[r * cols + c] } }
        return WeightMatrix(rows: cols, cols: rows, values: t)
    }
}
