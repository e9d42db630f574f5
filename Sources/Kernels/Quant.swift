import Foundation
#if canImport(CKernels)
import CKernels
#endif

/// Block quantization (Q8_0/Q4_0-like, 32 elements per f16 scale) and the quantized GEMV.
public enum Quant {
    /// Quantizes a matrix (cols % 32 == 0) to `format`. With `interleaved`, matrices of 16 rows or more
    /// take the decode layout (`WeightMatrix.interleaved`) on CPUs with the kernels that read it; files
    /// are written from plain rows.
    public static func quantize(_ src: WeightMatrix, to format: WeightFormat, interleaved: Bool = false) -> WeightMatrix {
        precondition(format.isQuantized && src.cols % quantBlock == 0)
        let rows = src.rows, cols = src.cols
        let interleave = interleaved && takesDecodeLayout(format, rows: rows, cols: cols)
        let layout = storage(rows: rows, cols: cols, format: format, interleaved: interleave)
        let ranges = splitRange(rows, parts: Threading.count * 4)
        parallelFor(ranges.count) { part in
            let row = FloatBuffer(count: cols)
            let plainValues = UnsafeMutableRawPointer.allocate(byteCount: interleave ? format.rowBytes(cols) : 0, alignment: 64)
            let plainScales = UnsafeMutablePointer<UInt16>.allocate(capacity: interleave ? cols / quantBlock : 0)
            defer { withExtendedLifetime(row) {}; plainValues.deallocate(); plainScales.deallocate() }
            for r in ranges[part] {
                src.readRow(r, into: row.pointer)
                let scatter = r < layout.interleavedRows
                defer {
                    if scatter { scatterInterleaved(r, layout, plainValues, plainScales) }
                }
                let v = scatter ? plainValues : UnsafeMutableRawPointer(mutating: layout.row(r))
                let d = scatter ? plainScales : UnsafeMutablePointer(mutating: layout.rowScales(r))
                #if canImport(CKernels)
                if format == .q8_0 {
                    ck_quantize_row_q8_0(row.pointer, Int32(cols), v.assumingMemoryBound(to: Int8.self), d)
                } else {
                    ck_quantize_row_q4_0(row.pointer, Int32(cols), v.assumingMemoryBound(to: UInt8.self), d)
                }
                #else
                quantizeRow(row.pointer, cols: cols, format: format, values: v, scales: d)
                #endif
            }
        }
        return layout
    }

    /// Owned memory for a quantized matrix (on huge pages where it is large): one allocation, values
    /// then scales, or with `interleaved` the groups' records, then the remaining plain rows, then
    /// their scales.
    static func storage(rows: Int, cols: Int, format: WeightFormat, interleaved: Bool) -> WeightMatrix {
        let rowBytes = format.rowBytes(cols), scaleBytes = format.scaleRowBytes(cols)
        let grouped = interleaved ? rows - rows % WeightMatrix.interleaveGroup : 0
        let memory = QuantStorage(byteCount: rows * (rowBytes + scaleBytes))
        let scales = memory.pointer + grouped * (rowBytes + scaleBytes) + (rows - grouped) * rowBytes
        return WeightMatrix(rows: rows, cols: cols, format: format, data: memory.pointer, scales: scales, owner: memory,
                            interleaved: interleaved)
    }

    /// Whether a matrix quantized for decode takes the interleaved layout on this CPU.
    static func takesDecodeLayout(_ format: WeightFormat, rows: Int, cols: Int) -> Bool {
        #if canImport(CKernels)
        WeightMatrix.canInterleave(format, rows: rows, cols: cols) && vnni
            && ProcessInfo.processInfo.environment["MINICPMO_NO_INTERLEAVE"] == nil  // for comparisons
        #else
        false
        #endif
    }

    /// A quantized matrix of plain rows (as `minicpmo quantize` writes them) copied into the decode
    /// layout, or nil where that layout does not apply.
    public static func interleaved(_ w: WeightMatrix) -> WeightMatrix? {
        guard w.format.isQuantized, !w.interleaved, takesDecodeLayout(w.format, rows: w.rows, cols: w.cols) else { return nil }
        let rowBytes = w.format.rowBytes(w.cols), nb = w.cols / quantBlock
        let layout = storage(rows: w.rows, cols: w.cols, format: w.format, interleaved: true)
        let ranges = splitRange(w.rows, parts: Threading.count * 4)
        parallelFor(ranges.count) { part in
            for r in ranges[part] {
                if r < layout.interleavedRows {
                    scatterInterleaved(r, layout, w.row(r), w.rowScales(r))
                } else {  // the rows past the last group stay plain
                    UnsafeMutableRawPointer(mutating: layout.row(r)).copyMemory(from: w.row(r), byteCount: rowBytes)
                    UnsafeMutableRawPointer(mutating: layout.rowScales(r)).copyMemory(from: w.rowScales(r), byteCount: 2 * nb)
                }
            }
        }
        return layout
    }

    /// Copies one plain row to its places in an interleaved group (see `WeightMatrix.block`).
    private static func scatterInterleaved(_ r: Int, _ layout: WeightMatrix, _ v: UnsafeRawPointer, _ d: UnsafePointer<UInt16>) {
        let blockBytes = layout.format.rowBytes(quantBlock)
        for b in 0..<(layout.cols / quantBlock) {
            let (at, piece, stride, scale) = layout.block(r, b)
            let dst = UnsafeMutableRawPointer(mutating: at)
            for k in 0..<(blockBytes / piece) { (dst + k * stride).copyMemory(from: v + b * blockBytes + k * piece, byteCount: piece) }
            UnsafeMutablePointer(mutating: scale).pointee = d[b]
        }
    }

    /// One row, the naive twin of the C quantizers: Q8_0 d = max|x|/127, q = round(x/d); Q4_0 d = m/−8
    /// with m the signed value of largest magnitude, q = min(15, ⌊x/d + 8.5⌋), as ggml does.
    public static func quantizeRow(_ x: UnsafePointer<Float>, cols: Int, format: WeightFormat,
                                   values: UnsafeMutableRawPointer, scales: UnsafeMutablePointer<UInt16>) {
        for b in 0..<(cols / quantBlock) {
            let xb = x + b * quantBlock
            switch format {
            case .q8_0:
                var amax: Float = 0
                for i in 0..<quantBlock { amax = max(amax, abs(xb[i])) }
                let d = amax / 127
                let half = Float16(d)
                scales[b] = half.bitPattern
                let inv: Float = d > 0 ? 1 / d : 0
                let q = (values + b * quantBlock).assumingMemoryBound(to: Int8.self)
                for i in 0..<quantBlock { q[i] = Int8(clamping: Int((xb[i] * inv).rounded(.toNearestOrEven))) }
            case .q4_0:
                var m: Float = 0
                for i in 0..<quantBlock where abs(xb[i]) > abs(m) { m = xb[i] }
                let d = m / -8
                scales[b] = Float16(d).bitPattern
                let inv: Float = d != 0 ? 1 / d : 0
                let q = (values + b * quantBlock / 2).assumingMemoryBound(to: UInt8.self)
                for i in 0..<(quantBlock / 2) {
                    let lo = UInt8(min(15, max(0, Int((xb[i] * inv + 8.5).rounded(.down)))))
                    let hi = UInt8(min(15, max(0, Int((xb[i + 16] * inv + 8.5).rounded(.down)))))
                    q[i] = lo | hi << 4
                }
            default:
                preconditionFailure("not a quantized format")
            }
        }
    }

    /// Rows lo..<hi to floats (SIMD in CKernels; `dequantizeRow` is its naive twin).
    public static func dequantizeRows(_ w: WeightMatrix, _ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        #if canImport(CKernels)
        let split = min(max(range.lowerBound, w.interleavedRows), range.upperBound)
        if split > range.lowerBound {
            let (r0, r1) = (Int32(range.lowerBound), Int32(split))
            if w.format == .q8_0 {
                ck_dequantize_q8_0x16(w.data.assumingMemoryBound(to: Int8.self), Int32(w.cols), r0, r1, out)
            } else {
                ck_dequantize_q4_0x16(w.data.assumingMemoryBound(to: UInt8.self), Int32(w.cols), r0, r1, out)
            }
            if split == range.upperBound { return }
            return dequantizeRows(w, split..<range.upperBound, into: out + (split - range.lowerBound) * w.cols)
        }
        let s = w.rowScales(range.lowerBound), v = w.row(range.lowerBound)
        if w.format == .q8_0 {
            ck_dequantize_q8_0(v.assumingMemoryBound(to: Int8.self), s, Int32(range.count), Int32(w.cols), out)
        } else {
            ck_dequantize_q4_0(v.assumingMemoryBound(to: UInt8.self), s, Int32(range.count), Int32(w.cols), out)
        }
        #else
        for (i, r) in range.enumerated() { dequantizeRow(w, r, into: out + i * w.cols) }
        #endif
    }

    public static func dequantizeRow(_ w: WeightMatrix, _ r: Int, into out: UnsafeMutablePointer<Float>) {
        let block = UnsafeMutableRawPointer.allocate(byteCount: quantBlock, alignment: 16)
        defer { block.deallocate() }
        for b in 0..<(w.cols / quantBlock) {
            let d = Float(Float16(bitPattern: w.copyBlock(r, b, to: block)))
            let v = UnsafeRawPointer(block)
            let o = out + b * quantBlock
            if w.format == .q8_0 {
                let q = v.assumingMemoryBound(to: Int8.self)
                for i in 0..<quantBlock { o[i] = Float(q[i]) * d }
            } else {
                let q = v.assumingMemoryBound(to: UInt8.self)
                for i in 0..<(quantBlock / 2) {
                    o[i] = Float(Int(q[i] & 0x0F) - 8) * d
                    o[i + 16] = Float(Int(q[i] >> 4) - 8) * d
                }
            }
        }
    }

    /// y = W·x for a quantized W: x is quantized to int8 blocks once, then rows are split across
    /// threads and dotted with integer SIMD.
    public static func gemv(_ w: WeightMatrix, _ x: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                            into y: UnsafeMutablePointer<Float>) {
        gemv([(w, bias, y)], x)
    }

    /// Several quantized matrices that read the same x (q/k/v, gate/up): x is quantized once and all
    /// their rows go to the threads in one pass.
    public static func gemv(_ items: [(weight: WeightMatrix, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>)],
                            _ x: UnsafePointer<Float>) {
        #if canImport(CKernels)
        gemv(items, x, vnni: Self.vnni, gfni: Self.gfni)
        #else
        gemv(items, x, vnni: false)
        #endif
    }

    /// `vnni: false` runs the AVX2 kernels (or the portable C) even where VNNI exists, and `gfni: false`
    /// the shift-and-mask Q4_0 unpacking even where GFNI exists, for their tests.
    static func gemv(_ items: [(weight: WeightMatrix, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>)],
                     _ x: UnsafePointer<Float>, vnni: Bool, gfni: Bool = false) {
        guard let cols = items.first?.weight.cols else { return }
        precondition(items.allSatisfy { $0.weight.cols == cols && $0.weight.format.isQuantized })
        let nb = cols / quantBlock
        let xq = UnsafeMutablePointer<Int8>.allocate(capacity: cols)
        let xd = UnsafeMutablePointer<Float>.allocate(capacity: nb)
        let xp = UnsafeMutablePointer<Int8>.allocate(capacity: cols)
        let xs4 = UnsafeMutablePointer<Int32>.allocate(capacity: max(cols / 8, 1))
        let xs8 = UnsafeMutablePointer<Int32>.allocate(capacity: max(cols / 4, 1))
        let xsum = UnsafeMutablePointer<Int32>.allocate(capacity: max(nb, 1))
        defer { xq.deallocate(); xd.deallocate(); xp.deallocate(); xs4.deallocate(); xs8.deallocate(); xsum.deallocate() }
        quantizeActivations(x, cols, xq, xd)
        #if canImport(CKernels)
        // what each kernel wants besides xq, xd: the row walks for plain rows, block sums for groups
        let plain = items.filter { $0.weight.interleavedRows < $0.weight.rows }.map(\.weight.format)
        if plain.contains(.q4_0) {
            if vnni { ck_prepare_q4_activations_vnni(xq, Int32(cols), xp, xs4) } else { ck_prepare_q4_activations(xq, Int32(cols), xp, xs4) }
        }
        if vnni && plain.contains(.q8_0) { ck_prepare_q8_activations_vnni(xq, Int32(cols), xs8) }
        if vnni && items.contains(where: { $0.weight.interleaved }) { ck_block_sums(xq, Int32(cols), xsum) }
        #endif
        let parts = guidedParts(items.map(\.weight.rows), threads: Threading.count, align: 16, minimum: max(16, (1 << 18) / cols))
        parallelFor(parts.count) { part in
            let (i, r) = parts[part]
            let w = items[i].weight, y = items[i].out
            #if canImport(CKernels)
            let c = Int32(cols)
            // rows of interleaved groups (parts are aligned to whole groups), then plain rows
            let split = min(max(r.lowerBound, w.interleavedRows), r.upperBound)
            if split > r.lowerBound {
                let (q8, q4) = (w.data.assumingMemoryBound(to: Int8.self), w.data.assumingMemoryBound(to: UInt8.self))
                let (r0, r1) = (Int32(r.lowerBound), Int32(split))
                switch (w.format, vnni) {
                case (.q8_0, true): ck_gemv_q8_0x16_vnni(q8, c, xq, xd, xsum, y, r0, r1)
                case (.q8_0, false): ck_gemv_q8_0x16(q8, c, xq, xd, y, r0, r1)
                case (_, true): ck_gemv_q4_0x16_vnni(q4, c, xq, xd, xsum, y, r0, r1, gfni ? 1 : 0)
                case (_, false): ck_gemv_q4_0x16(q4, c, xq, xd, y, r0, r1)
                }
            }
            if r.upperBound > split {  // the plain kernels count rows from the first one passed
                let (v, scales, out, n) = (w.row(split), w.rowScales(split), y + split, Int32(r.upperBound - split))
                let (q8, q4) = (v.assumingMemoryBound(to: Int8.self), v.assumingMemoryBound(to: UInt8.self))
                switch (w.format, vnni) {
                case (.q8_0, true): ck_gemv_q8_0_vnni(q8, scales, c, xq, xd, xs8, out, 0, n)
                case (.q8_0, false): ck_gemv_q8_0(q8, scales, c, xq, xd, out, 0, n)
                case (_, true): ck_gemv_q4_0_vnni(q4, scales, c, xq, xd, xp, xs4, out, 0, n)
                case (_, false): ck_gemv_q4_0(q4, scales, c, xq, xd, xp, xs4, out, 0, n)
                }
            }
            #else
            let row = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            defer { row.deallocate() }
            for i in r { dequantizeRow(w, i, into: row); y[i] = dot(row, x, cols) }
            #endif
            Linear.addBias(items[i].bias, columns: r, tokens: 1, stride: w.rows, into: y)
        }
    }

    #if canImport(CKernels)
    /// The 512-bit VNNI kernels where the CPU has them (MINICPMO_NO_VNNI=1 turns them off, for comparisons).
    static let vnni = ck_vnni_available() != 0 && ProcessInfo.processInfo.environment["MINICPMO_NO_VNNI"] == nil
    static let gfni = ck_gfni_available() != 0
    #endif

    static func quantizeActivations(_ x: UnsafePointer<Float>, _ n: Int, _ q: UnsafeMutablePointer<Int8>,
                                    _ d: UnsafeMutablePointer<Float>) {
        #if canImport(CKernels)
        ck_quantize_q8_blocks(x, Int32(n), q, d)
        #else
        quantizeActivationsNaive(x, n, q, d)
        #endif
    }

    /// The naive twin of ck_quantize_q8_blocks: per block of 32, d = max|x|/127 and q = x·(1/d) rounded
    /// to nearest even.
    static func quantizeActivationsNaive(_ x: UnsafePointer<Float>, _ n: Int, _ q: UnsafeMutablePointer<Int8>,
                                         _ d: UnsafeMutablePointer<Float>) {
        for b in 0..<(n / quantBlock) {
            var amax: Float = 0
            for i in 0..<quantBlock { amax = max(amax, abs(x[b * quantBlock + i])) }
            let s = amax / 127, inv: Float = s > 0 ? 1 / s : 0
            d[b] = s
            for i in 0..<quantBlock { q[b * quantBlock + i] = Int8((x[b * quantBlock + i] * inv).rounded(.toNearestOrEven)) }
        }
    }
}

/// Memory for quantized arrays made at load time.
final class QuantStorage: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    private let mapped: Int

    init(byteCount: Int) {
        #if os(Linux)
        // Decode streams these arrays once per token: 2 MiB pages spare the TLB a miss every 4 KiB
        // (5–15% more read bandwidth here). Only where the kernel's transparent huge pages allow it.
        if byteCount >= HugePages.size, let p = HugePages.map(byteCount) {
            pointer = p
            mapped = HugePages.rounded(byteCount)
            return
        }
        #endif
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        mapped = 0
    }

    deinit {
        #if os(Linux)
        if mapped > 0 { HugePages.unmap(pointer, bytes: mapped); return }
        #endif
        pointer.deallocate()
    }
}

