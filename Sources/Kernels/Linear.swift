import Foundation
#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif

/// y = x·Wᵀ (+ b): the one linear map every model component uses.
/// One token (decode) streams each weight once through a SIMD GEMV on both cores; several tokens
/// (prefill, encoders) widen tiles of W to Float32 and hand them to BLAS SGEMM, so compute-bound
/// work runs at BLAS speed without ever holding a float32 copy of a half-precision checkpoint.
public enum Linear {
    /// Rows of W widened per SGEMM call: big enough for BLAS efficiency, small enough for L2.
    static let tileRows = 256

    /// Arithmetic of multi-token products (prefill, encoders).
    public enum PrefillPrecision: String, Sendable, CaseIterable {
        /// Float32 activations and float32 products: matches the float32 reference. The default.
        case f32
        /// Activations rounded to bfloat16 and multiplied with AVX512_BF16 dot products (float32
        /// accumulation): about twice the arithmetic rate, like llama.cpp's F16 path. Falls back to
        /// f32 on CPUs without AVX512_BF16.
        case bf16
        /// Block-quantized weights (q8, q4) multiply activations quantized per block of 32 with int8 dot
        /// products (VNNI), as decode does for one token and llama.cpp for every prompt; other weights
        /// take the bf16 path. Falls back to bf16, then f32, where the CPU lacks the instructions.
        case int8
    }

    #if canImport(CKernels)
    /// bf16 decode through 512-bit FMAs where the CPU has AVX-512 (MINICPMO_NO_AVX512=1 turns it off).
    static let bf16GemvAVX512 = ck_avx512_available() != 0 && ProcessInfo.processInfo.environment["MINICPMO_NO_AVX512"] == nil
    #endif

    /// The process-wide setting (the CLI's `--prefill-precision`).
    nonisolated(unsafe) public static var prefillPrecision = PrefillPrecision.f32
    /// Overrides the setting within a task (tests, or one request among others).
    @TaskLocal public static var prefillPrecisionOverride: PrefillPrecision?

    public static var effectivePrefillPrecision: PrefillPrecision { prefillPrecisionOverride ?? prefillPrecision }

    /// x: [tokens, W.cols] → y: [tokens, W.rows]; bias: W.rows floats or nil.
    public static func forward(_ x: UnsafePointer<Float>, tokens: Int, weight w: WeightMatrix,
                               bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        if tokens == 1 {
            gemv(w, x, bias: bias, into: y)
            return
        }
        gemm(x, tokens: tokens, weight: w, bias: bias, into: y)
    }

    /// y[t, c] += b[c] for columns c in `columns` of a [tokens, stride] output.
    @inline(__always)
    static func addBias(_ bias: UnsafePointer<Float>?, columns: Range<Int>, tokens: Int, stride: Int,
                        into y: UnsafeMutablePointer<Float>) {
        guard let bias else { return }
        for t in 0..<tokens {
            let yr = y + t * stride
            for i in columns { yr[i] += bias[i] }
        }
    }

    /// y[r] = W[r,:]·x + b[r].
    public static func gemv(_ w: WeightMatrix, _ x: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                            into y: UnsafeMutablePointer<Float>) {
        gemv([(w, bias, y)], x)
    }

    /// One token through several matrices that read the same x (q/k/v, gate/up) in a single parallel
    /// pass: one hand-off to the threads instead of one per matrix, which matters for narrow layers.
    public static func gemv(_ items: [(weight: WeightMatrix, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>)],
                            _ x: UnsafePointer<Float>) {
        let quantized = items.filter { $0.weight.format.isQuantized }
        if !quantized.isEmpty {
            Quant.gemv(quantized, x)
            if quantized.count == items.count { return }
        }
        // quantized items are done: they take no rows here
        let cols = max(items.first?.weight.cols ?? 1, 1)
        let parts = guidedParts(items.map { $0.weight.format.isQuantized ? 0 : $0.weight.rows }, threads: Threading.count,
                                align: 4, minimum: max(4, (1 << 16) / cols))
        parallelFor(parts.count) { p in
            let (i, r) = parts[p]
            let w = items[i].weight, y = items[i].out
            switch w.format {
            case .f32: gemvRows(F32Row.self, w, x, r, y)
            case .f16: gemvRows(F16Row.self, w, x, r, y)
            case .bf16:
                #if canImport(CKernels)
                if Linear.bf16GemvAVX512 {
                    ck_gemv_bf16_avx512(w.data.assumingMemoryBound(to: UInt16.self), Int32(w.cols), Int32(r.lowerBound),
                                        Int32(r.upperBound), x, y)
                    break
                }
                #endif
                gemvRows(BF16Row.self, w, x, r, y)
            case .q8_0, .q4_0: preconditionFailure("handled by Quant.gemv")
            }
            addBias(items[i].bias, columns: r, tokens: 1, stride: w.rows, into: y)
        }
    }

    /// Whether `gemmWithGemvArithmetic` runs `w` on this CPU: quantized weights (the VNNI int8 GEMM on the
    /// interleaved layout, the AVX2 one on plain rows) and bf16 weights where the GEMV is the AVX-512 one.
    public static func hasGemvArithmeticGEMM(_ w: WeightMatrix) -> Bool {
        #if canImport(CKernels)
        if w.format.isQuantized { return w.interleaved ? Quant.hasInt8GEMM(w) : Quant.plainGEMMAvailable }
        return w.format == .bf16 && bf16GemvAVX512
        #else
        return false
        #endif
    }

    /// Several tokens (a batched decode step), each token's row bit for bit what `gemv` gives it alone, with
    /// each weight read once for all of them.
    public static func gemmWithGemvArithmetic(_ x: UnsafePointer<Float>, tokens: Int, weight w: WeightMatrix,
                                              bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        precondition(hasGemvArithmeticGEMM(w))
        if w.format.isQuantized {
            let gemm = w.interleaved ? Quant.gemm : Quant.gemmPlain
            return gemm(x, tokens, w, bias, y)
        }
        #if canImport(CKernels)
        let parts = guidedParts([w.rows], threads: Threading.count, align: 4, minimum: max(4, (1 << 16) / max(w.cols, 1)))
        parallelFor(parts.count) { p in
            let r = parts[p].1
            ck_gemm_bf16_exact(w.data.assumingMemoryBound(to: UInt16.self), Int32(w.cols), Int32(r.lowerBound), Int32(r.upperBound),
                               x, Int32(tokens), Int32(w.cols), y, Int32(w.rows))
            addBias(bias, columns: r, tokens: tokens, stride: w.rows, into: y)
        }
        #endif
    }

    /// Y[T, N] = X[T, K]·W[N, K]ᵀ (+ b) via tiles of W widened to f32 and single-threaded SGEMM per
    /// thread (one level of parallelism: ours).
    public static func gemm(_ x: UnsafePointer<Float>, tokens: Int, weight w: WeightMatrix,
                            bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        #if canImport(CKernels)
        let precision = effectivePrefillPrecision
        if precision == .int8 && Quant.hasInt8GEMM(w) {
            Quant.gemm(x, tokens: tokens, weight: w, bias: bias, into: y)
            return
        }
        if precision != .f32 && BF16Dot.available {
            BF16Dot.gemm(x, tokens: tokens, weight: w, bias: bias, into: y)
            return
        }
        #endif
        BLAS.singleThreaded()
        let n = w.rows, k = w.cols
        // Work items are (row tile × token block), claimed dynamically: a narrow matrix (an encoder's
        // 1152 rows are 4.5 tiles) also splits its tokens so that both cores finish together.
        let tiles = (n + tileRows - 1) / tileRows
        let tokenBlocks = tiles >= 4 * Threading.count || tokens < 256 ? 1 : min(2 * Threading.count, tokens / 128)
        let blockTokens = (tokens + tokenBlocks - 1) / tokenBlocks
        parallelFor(tiles * tokenBlocks) { item in
            let r0 = (item / tokenBlocks) * tileRows, rows = min(tileRows, n - r0)
            let t0 = (item % tokenBlocks) * blockTokens, count = min(blockTokens, tokens - t0)
            guard count > 0 else { return }
            let scratch = w.format == .f32 ? nil : FloatBuffer(count: rows * k)
            defer { withExtendedLifetime(scratch) {} }  // its pointer outlives the last use of the object
            let tile: UnsafePointer<Float>
            if let scratch {
                w.readRows(r0..<(r0 + rows), into: scratch.pointer)
                tile = UnsafePointer(scratch.pointer)
            } else {
                tile = w.row(r0).assumingMemoryBound(to: Float.self)
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                        blasInt(count), blasInt(rows), blasInt(k), 1, x + t0 * k, blasInt(k),
                        tile, blasInt(k), 0, y + t0 * n + r0, blasInt(n))
            Linear.addBias(bias, columns: r0..<(r0 + rows), tokens: count, stride: n, into: y + t0 * n)
        }
    }
}

#if canImport(CKernels)
import CKernels

/// The bfloat16-dot-product prefill path (see `Linear.PrefillPrecision.bf16`).
enum BF16Dot {
    static let available = ck_bf16_gemm_available() != 0
    /// Up to this many tokens, bf16 rows are read as stored (ck_bf16_gemm_rows) instead of packed (the
    /// two are level at 96–128 on the 7B geometry: pp64 152 against 122 tok/s, pp128 142 against 146).
    static let skinnyTokens = 96

    static func gemm(_ x: UnsafePointer<Float>, tokens: Int, weight w: WeightMatrix, bias: UnsafePointer<Float>?,
                     into y: UnsafeMutablePointer<Float>) {
        let n = w.rows, k = w.cols
        let kp = (k + 1) & ~1  // x rows padded to whole bf16 pairs
        let xb = UnsafeMutablePointer<UInt16>.allocate(capacity: tokens * kp)
        defer { xb.deallocate() }
        for t in 0..<tokens {
            ck_f32_to_bf16(x + t * k, k, 1, xb + t * kp)
            if kp > k { xb[t * kp + k] = 0 }
        }
        if w.format == .bf16 && tokens <= skinnyTokens {
            // a few tokens: the rows as stored, three at a time against every token
            let parts = splitRange(n, parts: min(n / 3, Threading.count * 8), align: 3)
            parallelFor(parts.count) { p in
                let r = parts[p]
                ck_bf16_gemm_rows(xb, Int32(tokens), Int32(kp), w.data.assumingMemoryBound(to: UInt16.self), Int32(k),
                                  Int32(r.lowerBound), Int32(r.upperBound), y, Int32(n))
                Linear.addBias(bias, columns: r, tokens: tokens, stride: n, into: y)
            }
            return
        }
        // 32 weight rows at a time are packed by k-pairs once, then every block of tokens runs against
        // them (token blocks small enough that x and the packed rows stay in L2)
        let tiles = (n + 31) / 32, tokenBlock = 96
        parallelFor(tiles) { tile in
            let r0 = tile * 32, rows = min(32, n - r0)
            let packed = UnsafeMutablePointer<UInt16>.allocate(capacity: (kp / 2) * 64)
            defer { packed.deallocate() }
            if w.format == .bf16 {
                ck_bf16_pack32(w.row(r0).assumingMemoryBound(to: UInt16.self), Int32(rows), Int32(k), packed)
            } else {
                // other formats: widen the rows, round them to bf16, then pack
                let f = FloatBuffer(count: rows * k)
                let b = UnsafeMutablePointer<UInt16>.allocate(capacity: rows * k)
                defer { b.deallocate(); withExtendedLifetime(f) {} }
                w.readRows(r0..<(r0 + rows), into: f.pointer)
                for i in 0..<(rows * k) { b[i] = floatToBF16(f.pointer[i]) }
                ck_bf16_pack32(b, Int32(rows), Int32(k), packed)
            }
            var t0 = 0
            while t0 < tokens {
                let count = min(tokenBlock, tokens - t0)
                ck_bf16_gemm_packed(xb + t0 * kp, Int32(count), Int32(kp), packed, Int32(k), Int32(rows), y + t0 * n + r0, Int32(n))
                t0 += count
            }
            Linear.addBias(bias, columns: r0..<(r0 + rows), tokens: tokens, stride: n, into: y)
        }
    }
}
#endif

#if canImport(Accelerate)
@inline(__always) func blasInt(_ v: Int) -> Int { v }
enum BLAS { static func singleThreaded() {} }
#else
@inline(__always) func blasInt(_ v: Int) -> Int32 { Int32(v) }
enum BLAS {
    /// Our threads split the work; OpenBLAS threads inside each call would only oversubscribe.
    private static let once: Void = { openblas_set_num_threads(1) }()
    static func singleThreaded() { _ = once }
}
#endif

// MARK: - GEMV inner loops

protocol RowLoader {
    static var elementSize: Int { get }
    static func load8(_ p: UnsafeRawPointer) -> SIMD8<Float>
    static func load1(_ p: UnsafeRawPointer) -> Float
}

enum F32Row: RowLoader {
    static var elementSize: Int { 4 }
    @inline(__always) static func load8(_ p: UnsafeRawPointer) -> SIMD8<Float> { loadF32x8(p) }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float { p.loadUnaligned(as: Float.self) }
}

enum F16Row: RowLoader {
    static var elementSize: Int { 2 }
    @inline(__always) static func load8(_ p: UnsafeRawPointer) -> SIMD8<Float> { loadF16x8(p) }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float { Float(p.loadUnaligned(as: Float16.self)) }
}

enum BF16Row: RowLoader {
    static var elementSize: Int { 2 }
    @inline(__always) static func load8(_ p: UnsafeRawPointer) -> SIMD8<Float> { loadBF16x8(p) }
    @inline(__always) static func load1(_ p: UnsafeRawPointer) -> Float { bf16ToFloat(p.loadUnaligned(as: UInt16.self)) }
}

/// Four rows at a time, two accumulators each: eight independent FMA chains hide FMA latency and
/// each load of x serves four rows.
@inline(__always)
func gemvRows<L: RowLoader>(_: L.Type, _ w: WeightMatrix, _ x: UnsafePointer<Float>, _ rows: Range<Int>,
                            _ y: UnsafeMutablePointer<Float>) {
    let k = w.cols
    let es = L.elementSize
    let xr = UnsafeRawPointer(x)
    var r = rows.lowerBound
    while r + 4 <= rows.upperBound {
        let p0 = w.row(r), p1 = w.row(r + 1), p2 = w.row(r + 2), p3 = w.row(r + 3)
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var b0 = SIMD8<Float>(), b1 = SIMD8<Float>(), b2 = SIMD8<Float>(), b3 = SIMD8<Float>()
        var i = 0
        while i + 16 <= k {
            let xa = loadF32x8(xr + 4 * i), xb = loadF32x8(xr + 4 * (i + 8))
            a0 = a0.addingProduct(L.load8(p0 + es * i), xa); b0 = b0.addingProduct(L.load8(p0 + es * (i + 8)), xb)
            a1 = a1.addingProduct(L.load8(p1 + es * i), xa); b1 = b1.addingProduct(L.load8(p1 + es * (i + 8)), xb)
            a2 = a2.addingProduct(L.load8(p2 + es * i), xa); b2 = b2.addingProduct(L.load8(p2 + es * (i + 8)), xb)
            a3 = a3.addingProduct(L.load8(p3 + es * i), xa); b3 = b3.addingProduct(L.load8(p3 + es * (i + 8)), xb)
            i += 16
        }
        if i + 8 <= k {
            let xa = loadF32x8(xr + 4 * i)
            a0 = a0.addingProduct(L.load8(p0 + es * i), xa)
            a1 = a1.addingProduct(L.load8(p1 + es * i), xa)
            a2 = a2.addingProduct(L.load8(p2 + es * i), xa)
            a3 = a3.addingProduct(L.load8(p3 + es * i), xa)
            i += 8
        }
        var s0 = (a0 + b0).sum(), s1 = (a1 + b1).sum(), s2 = (a2 + b2).sum(), s3 = (a3 + b3).sum()
        while i < k {
            let xv = x[i]
            s0 += L.load1(p0 + es * i) * xv
            s1 += L.load1(p1 + es * i) * xv
            s2 += L.load1(p2 + es * i) * xv
            s3 += L.load1(p3 + es * i) * xv
            i += 1
        }
        y[r] = s0; y[r + 1] = s1; y[r + 2] = s2; y[r + 3] = s3
        r += 4
    }
    while r < rows.upperBound {
        let p = w.row(r)
        var a = SIMD8<Float>()
        var i = 0
        while i + 8 <= k {
            a = a.addingProduct(L.load8(p + es * i), loadF32x8(xr + 4 * i))
            i += 8
        }
        var s = a.sum()
        while i < k { s += L.load1(p + es * i) * x[i]; i += 1 }
        y[r] = s
        r += 1
    }
}
