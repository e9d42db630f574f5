import Foundation

/// Memory read bandwidth and GEMV throughput: the ceilings decode is measured against.
public enum KernelBenchmark {
    /// Streaming read bandwidth in bytes/s over `bytes` of memory with the current thread count: the
    /// best of `repeats` passes (a ceiling; shared machines only ever lower it).
    public static func memoryReadBandwidth(bytes: Int = 1 << 31, repeats: Int = 10) -> Double {
        ReadProbe(bytes: bytes).best(of: repeats)
    }

    /// A short (~0.1 s) ceiling measurement, for bracketing another engine's decode runs
    /// (`minicpmo bench --bandwidth` alone); ours measures it during its own decode (Benchmark.run).
    public static func decodeCeilingProbe() -> Double { memoryReadBandwidth(bytes: 1 << 29, repeats: 3) }

    /// Bytes of weights streamed per second by a [rows, cols] GEMV in `format` (median of `repeats`).
    public static func gemvBandwidth(format: WeightFormat, rows: Int = 18944, cols: Int = 3584, repeats: Int = 20) -> Double {
        var rng = Xoshiro256(seed: 1)
        let values = (0..<(rows * cols)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
        var w = WeightMatrix(rows: rows, cols: cols, values: values)
        switch format {
        case .q8_0, .q4_0: w = Quant.quantize(w, to: format, interleaved: true)  // as a model quantized at load
        case .bf16, .f16:
            let halves = UnsafeMutablePointer<UInt16>.allocate(capacity: rows * cols)
            for i in 0..<(rows * cols) {
                halves[i] = format == .bf16 ? floatToBF16(values[i]) : Float16(values[i]).bitPattern
            }
            w = WeightMatrix(rows: rows, cols: cols, format: format, data: UnsafeRawPointer(halves), owner: FreeOnDeinit(halves))
        case .f32: break
        }
        let x = FloatBuffer((0..<cols).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 })
        let y = FloatBuffer(count: rows)
        var samples: [Double] = []
        for _ in 0..<repeats {
            let t = Date()
            Linear.gemv(w, x.pointer, bias: nil, into: y.pointer)
            samples.append(Double(w.byteCount) / Date().timeIntervalSince(t))
        }
        withExtendedLifetime((x, y)) {}
        return samples.sorted()[samples.count / 2]
    }
}

final class FreeOnDeinit: @unchecked Sendable {
    let p: UnsafeMutablePointer<UInt16>
    init(_ p: UnsafeMutablePointer<UInt16>) { self.p = p }
    deinit { p.deallocate() }
}

/// A buffer every thread reads a share of with SIMD sums, the simplest stream there is: the read
/// ceiling decode's weight streams are measured against. On huge pages, like the quantized weights;
/// every page is touched once at creation, so the buffer stays resident (`bytes`) while it lives.
public final class ReadProbe: @unchecked Sendable {
    public let bytes: Int
    private let raw: UnsafeMutableRawPointer
    private let huge: Bool
    private let ranges: [Range<Int>]
    private let partial: UnsafeMutablePointer<Float>

    public init(bytes: Int) {
        self.bytes = bytes
        #if os(Linux)
        let mapped = HugePages.map(bytes)
        #else
        let mapped: UnsafeMutableRawPointer? = nil
        #endif
        huge = mapped != nil
        raw = mapped ?? UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let count = bytes / 4
        ranges = splitRange(count, parts: Threading.count, align: 64)
        partial = .allocate(capacity: max(ranges.count, 1))
        let buf = (pointer: raw.bindMemory(to: Float.self, capacity: count), ())
        let ranges = ranges
        parallelFor(ranges.count) { p in for i in ranges[p] { buf.pointer[i] = 1 } }
    }

    deinit {
        #if os(Linux)
        if huge { HugePages.unmap(raw, bytes: bytes) } else { raw.deallocate() }
        #else
        raw.deallocate()
        #endif
        partial.deallocate()
    }

    /// The better of `passes` reads: a ceiling, and shared machines only ever lower it.
    public func best(of passes: Int) -> Double { (0..<passes).map { _ in pass() }.max()! }

    /// One read of the whole buffer on all threads, in bytes/s.
    public func pass() -> Double {
        let buf = (pointer: UnsafePointer(raw.assumingMemoryBound(to: Float.self)), partial: partial)
        let ranges = ranges
        let t = Date()
        parallelFor(ranges.count) { p in
            let r = ranges[p]
            var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
            let base = UnsafeRawPointer(buf.pointer + r.lowerBound)
            var i = 0
            let n = r.count
            while i + 32 <= n {
                a0 += base.load(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                a1 += base.load(fromByteOffset: 4 * (i + 8), as: SIMD8<Float>.self)
                a2 += base.load(fromByteOffset: 4 * (i + 16), as: SIMD8<Float>.self)
                a3 += base.load(fromByteOffset: 4 * (i + 24), as: SIMD8<Float>.self)
                i += 32
            }
            buf.partial[p] = (a0 + a1 + a2 + a3).sum()
        }
        return Double(bytes) / Date().timeIntervalSince(t)
    }
}
