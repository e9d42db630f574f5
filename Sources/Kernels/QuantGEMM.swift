#if canImport(CKernels)
import CKernels
#endif

/// Several tokens against block-quantized weights with int8 dot products (the prefill of `--prefill-precision
/// int8`): each token's activations are quantized per block of 32, as decode does for one token, and every
/// weight vector read serves up to eight tokens.
extension Quant {
    /// Whether this CPU runs the int8 GEMM (AVX512-VNNI; quantized weights then take its layout at load).
    public static var int8GEMMAvailable: Bool {
        #if canImport(CKernels)
        vnni
        #else
        false
        #endif
    }

    /// Whether `gemm` applies to `w` on this CPU (its VNNI kernels read the interleaved decode layout).
    public static func hasInt8GEMM(_ w: WeightMatrix) -> Bool {
        int8GEMMAvailable && w.format.isQuantized && w.interleaved
    }

    /// Whether `gemmPlain` runs vectorized here: plain rows are the layout without VNNI (MINICPMO_NO_VNNI=1
    /// counts), and its kernels need an AVX2 build.
    static var plainGEMMAvailable: Bool {
        #if canImport(CKernels)
        !vnni && ck_gemm_plain_vectorized() != 0
        #else
        false
        #endif
    }

    /// Activations of `tokens` rows quantized per block (values, scales and block sums), packed for the
    /// kernels of one weight format (ck_gemm_pack: tiles of eight tokens).
    struct QuantizedRows {
        let packed: UnsafeMutablePointer<Int32>

        init(_ x: UnsafePointer<Float>, tokens: Int, cols: Int, q4: Bool) {
            let nb = cols / quantBlock
            let q = UnsafeMutablePointer<Int8>.allocate(capacity: tokens * cols)
            let d = UnsafeMutablePointer<Float>.allocate(capacity: tokens * nb)
            let sums = UnsafeMutablePointer<Int32>.allocate(capacity: tokens * nb)
            defer { q.deallocate(); d.deallocate(); sums.deallocate() }
            #if canImport(CKernels)
            let packed = UnsafeMutablePointer<Int32>.allocate(capacity: ck_gemm_packed_count(Int32(cols), Int32(tokens)))
            #else
            let packed = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
            #endif
            self.packed = packed
            // parts of whole tiles, so that each is quantized and packed on its own
            let tiles = (tokens + 7) / 8
            let parts = splitRange(tiles, parts: min(tiles, Threading.count * 2))
            parallelFor(parts.count) { p in
                let t0 = parts[p].lowerBound * 8, t1 = min(parts[p].upperBound * 8, tokens)
                for t in t0..<t1 {
                    Quant.quantizeActivations(x + t * cols, cols, q + t * cols, d + t * nb)
                    #if canImport(CKernels)
                    ck_block_sums(q + t * cols, Int32(cols), sums + t * nb)
                    #endif
                }
                #if canImport(CKernels)
                ck_gemm_pack(q + t0 * cols, d + t0 * nb, sums + t0 * nb, Int32(cols), Int32(t1 - t0), q4 ? 1 : 0,
                             packed + ck_gemm_packed_count(Int32(cols), Int32(t0)))
                #endif
            }
        }

        func deallocate() { packed.deallocate() }
    }

    /// Y[T, N] = X[T, K]·W[N, K]ᵀ (+ b) for an interleaved quantized W (`hasInt8GEMM`).
    public static func gemm(_ x: UnsafePointer<Float>, tokens: Int, weight w: WeightMatrix, bias: UnsafePointer<Float>?,
                            into y: UnsafeMutablePointer<Float>) {
        precondition(hasInt8GEMM(w), "Quant.gemm needs interleaved quantized weights and VNNI")
        #if canImport(CKernels)
        let n = w.rows, k = w.cols
        let xq = QuantizedRows(x, tokens: tokens, cols: k, q4: w.format == .q4_0)
        defer { xq.deallocate() }
        // groups of sixteen rows claimed in parts small enough that both cores finish together
        let groups = w.interleavedRows / WeightMatrix.interleaveGroup
        let parts = splitRange(groups, parts: min(groups, Threading.count * 8))
        parallelFor(parts.count) { p in
            let r0 = parts[p].lowerBound * WeightMatrix.interleaveGroup, r1 = parts[p].upperBound * WeightMatrix.interleaveGroup
            // the bias joins each tile as it is stored, not in a second pass over Y
            if w.format == .q8_0 {
                ck_gemm_q8_0x16_vnni(w.data.assumingMemoryBound(to: Int8.self), Int32(k), Int32(tokens), xq.packed, bias, y, Int32(n),
                                     Int32(r0), Int32(r1))
            } else {
                ck_gemm_q4_0x16_vnni(w.data.assumingMemoryBound(to: UInt8.self), Int32(k), Int32(tokens), xq.packed, bias, y, Int32(n),
                                     Int32(r0), Int32(r1))
            }
        }
        // the few rows past the last group (a vocabulary's) are plain rows: the one-token kernels, token by token
        let tail = w.interleavedRows..<n
        if !tail.isEmpty {
            let rows = WeightMatrix(rows: tail.count, cols: k, format: w.format, data: w.row(tail.lowerBound),
                                    scales: UnsafeRawPointer(w.rowScales(tail.lowerBound)), owner: w.owner)
            let out = UnsafeMutablePointer<Float>.allocate(capacity: tail.count)
            defer { out.deallocate() }
            for t in 0..<tokens {
                gemv([(rows, bias.map { $0 + tail.lowerBound }, out)], x + t * k)
                (y + t * n + tail.lowerBound).update(from: out, count: tail.count)
            }
        }
        #endif
    }

    /// Several tokens against plain quantized rows (ck_gemm_q8_0_plain / ck_gemm_q4_0_plain), for batched decode
    /// without VNNI: each token's activations quantized and prepared as the one-token GEMV prepares them, so
    /// every token's row is the bits decode gives it. Prefill keeps SGEMM there (no faster: pp512 Q8_0 0.79x).
    static func gemmPlain(_ x: UnsafePointer<Float>, tokens: Int, weight w: WeightMatrix, bias: UnsafePointer<Float>?,
                          into y: UnsafeMutablePointer<Float>) {
        #if canImport(CKernels)
        precondition(w.format.isQuantized && !w.interleaved)
        let n = w.rows, k = w.cols, nb = k / quantBlock, q4 = w.format == .q4_0
        let xq = UnsafeMutablePointer<Int8>.allocate(capacity: tokens * k), xd = UnsafeMutablePointer<Float>.allocate(capacity: tokens * nb)
        let xp = UnsafeMutablePointer<Int8>.allocate(capacity: q4 ? tokens * k : 1)
        let xs = UnsafeMutablePointer<Int32>.allocate(capacity: q4 ? max(tokens * (k / 8), 1) : 1)
        defer { xq.deallocate(); xd.deallocate(); xp.deallocate(); xs.deallocate() }
        let tokenParts = splitRange(tokens, parts: min(tokens, Threading.count * 2))
        parallelFor(tokenParts.count) { p in
            for t in tokenParts[p] {
                quantizeActivations(x + t * k, k, xq + t * k, xd + t * nb)
                if q4 { ck_prepare_q4_activations(xq + t * k, Int32(k), xp + t * k, xs + t * (k / 8)) }
            }
        }
        let parts = splitRange(n, parts: min(n, Threading.count * 8))
        parallelFor(parts.count) { p in
            let (r0, r1) = (Int32(parts[p].lowerBound), Int32(parts[p].upperBound))
            if q4 {
                ck_gemm_q4_0_plain(w.row(0).assumingMemoryBound(to: UInt8.self), w.rowScales(0), Int32(k), Int32(tokens), xq, xd, xp, xs,
                                   bias, y, Int32(n), r0, r1)
            } else {
                ck_gemm_q8_0_plain(w.row(0).assumingMemoryBound(to: Int8.self), w.rowScales(0), Int32(k), Int32(tokens), xq, xd,
                                   bias, y, Int32(n), r0, r1)
            }
        }
        #endif
    }

    /// The naive twin of `gemm`: the same per-block quantization of each token (the naive quantizer), exact
    /// integer block sums, and Σ_b d_w · d_x · sum in block order.
    public static func gemmNaive(_ x: UnsafePointer<Float>, tokens: Int, weight w: WeightMatrix, bias: UnsafePointer<Float>?,
                                 into y: UnsafeMutablePointer<Float>) {
        let k = w.cols, nb = k / quantBlock
        let xq = UnsafeMutablePointer<Int8>.allocate(capacity: k), xd = UnsafeMutablePointer<Float>.allocate(capacity: nb)
        let block = UnsafeMutableRawPointer.allocate(byteCount: quantBlock, alignment: 16)
        defer { xq.deallocate(); xd.deallocate(); block.deallocate() }
        for t in 0..<tokens {
            quantizeActivationsNaive(x + t * k, k, xq, xd)
            for r in 0..<w.rows {
                var acc: Float = 0
                for b in 0..<nb {
                    let dw = Float(Float16(bitPattern: w.copyBlock(r, b, to: block)))
                    var sum = 0
                    for i in 0..<quantBlock {
                        let q: Int
                        if w.format == .q8_0 {
                            q = Int(block.load(fromByteOffset: i, as: Int8.self))
                        } else {
                            let byte = block.load(fromByteOffset: i % 16, as: UInt8.self)
                            q = Int(i < 16 ? byte & 0x0F : byte >> 4) - 8
                        }
                        sum += q * Int(xq[b * quantBlock + i])
                    }
                    acc += dw * xd[b] * Float(sum)
                }
                y[t * w.rows + r] = acc + (bias?[r] ?? 0)
            }
        }
    }
}
