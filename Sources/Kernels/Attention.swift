import CKernels

/// Key or value vectors of one layer, in fixed-size pages (a paged KV cache) or contiguous. The vector
/// of position `pos` and kv head `h` (headDim floats) starts at
///   pages[pos / pageSize] + (pos % pageSize)·positionStride + h·headStride.
/// A paged cache stores each page head-major (one head's positions back to back), so decode attention
/// reads every head as one sequential stream; rows as a projection writes them are position-major.
public struct KVRows: @unchecked Sendable {
    public let pages: [UnsafeMutablePointer<Float>]
    public let pageSize: Int
    public let positionStride: Int
    public let headStride: Int

    public init(pages: [UnsafeMutablePointer<Float>], pageSize: Int, positionStride: Int, headStride: Int) {
        self.pages = pages
        self.pageSize = pageSize
        self.positionStride = positionStride
        self.headStride = headStride
    }

    /// Pages of `pageSize` positions, each page [heads][pageSize][headDim].
    public init(headMajorPages pages: [UnsafeMutablePointer<Float>], pageSize: Int, headDim: Int) {
        self.init(pages: pages, pageSize: pageSize, positionStride: headDim, headStride: pageSize * headDim)
    }

    /// Rows of [heads × headDim] back to back.
    public init(contiguous base: UnsafeMutablePointer<Float>, heads: Int, headDim: Int) {
        self.init(pages: [base], pageSize: Int.max, positionStride: heads * headDim, headStride: headDim)
    }

    @inline(__always)
    public func vector(_ pos: Int, head: Int) -> UnsafeMutablePointer<Float> { withAddresses { $0(pos, head: head) } }

    /// Stores position `pos` from a row [heads × headDim] as the k or v projection writes it.
    public func store(_ pos: Int, row: UnsafePointer<Float>, heads: Int, headDim: Int) {
        for h in 0..<heads { vector(pos, head: h).update(from: row + h * headDim, count: headDim) }
    }

    /// `body` gets vector addresses that do not touch the page array's reference count: in a loop over
    /// thousands of positions on several threads, that shared count costs more than the arithmetic.
    @inline(__always)
    func withAddresses<R>(_ body: (VectorAddresses) throws -> R) rethrows -> R {
        try pages.withUnsafeBufferPointer {
            try body(VectorAddresses(pages: $0, pageSize: pageSize, positionStride: positionStride, headStride: headStride))
        }
    }
}

struct VectorAddresses: @unchecked Sendable {
    let pages: UnsafeBufferPointer<UnsafeMutablePointer<Float>>
    let pageSize: Int, positionStride: Int, headStride: Int

    @inline(__always)
    func callAsFunction(_ pos: Int, head: Int) -> UnsafeMutablePointer<Float> {
        pages[pos / pageSize] + (pos % pageSize) * positionStride + head * headStride
    }
}

/// Grouped-query scaled dot-product attention.
public struct AttentionShape: Sendable {
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var scale: Float

    public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil) {
        precondition(heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
    }
}

public enum Attention {
    /// out[t, h] = softmax(q[t,h]·Kᵀ·scale + mask[t]) · V for query rows t at positions
    /// queryStart + t over key positions 0..<kvLength.
    /// - causal: query at position p sees keys 0...p.
    /// - mask: optional additive [tokens, kvLength] float mask (−∞ hides a key), e.g. key padding.
    /// Query head h reads kv head h / (heads / kvHeads).
    ///
    /// The query heads that share a kv head go together, so each key and value row is read once per
    /// group instead of once per head (7× less cache traffic for Qwen2.5-7B), and the loops over rows
    /// (ck_attn_scores, ck_attn_values) prefetch ahead: at long contexts the cache is a strided stream
    /// from memory. Each head's result is the same.
    public static func forward(q: UnsafePointer<Float>, tokens: Int, queryStart: Int, shape: AttentionShape,
                               keys: KVRows, values: KVRows, kvLength: Int, causal: Bool,
                               mask: UnsafePointer<Float>? = nil, into out: UnsafeMutablePointer<Float>) {
        let hd = shape.headDim, kvHeads = shape.kvHeads
        let group = shape.heads / kvHeads
        let qStride = shape.heads * hd
        let items = tokens * kvHeads, n = max(kvLength, 1)
        let ranges = splitRange(items, parts: items * group * kvLength * hd >= 1 << 14 ? Threading.count * 4 : 1)
        // per part: scores (one row of n per head of the group), then the key and value row tables
        let scratchBytes = n * (4 * group + 2 * MemoryLayout<UnsafeRawPointer>.stride)
        keys.withAddresses { keyRow in
            values.withAddresses { valueRow in
                parallelFor(ranges.count) { part in
                    Scratch.with(bytes: scratchBytes) { raw in
                        let s = raw.bindMemory(to: Float.self, capacity: n * group)
                        let rows = (raw + 4 * n * group).bindMemory(to: UnsafePointer<Float>?.self, capacity: 2 * n)
                        for item in ranges[part] {
                            let t = item / kvHeads, kvh = item % kvHeads
                            let qv = q + t * qStride + kvh * group * hd, o = out + t * qStride + kvh * group * hd
                            let visible = causal ? min(kvLength, queryStart + t + 1) : kvLength
                            for j in 0..<visible {
                                rows[j] = UnsafePointer(keyRow(j, head: kvh))
                                rows[n + j] = UnsafePointer(valueRow(j, head: kvh))
                            }
                            ck_attn_scores(qv, Int32(group), Int32(hd), rows, Int32(visible), shape.scale, s, Int32(n))
                            for g in 0..<group {
                                let sg = s + g * n
                                if let mask {
                                    let mr = mask + t * kvLength
                                    for j in 0..<visible { sg[j] += mr[j] }
                                }
                                Activation.softmax(sg, count: visible)
                            }
                            ck_attn_values(s, Int32(n), Int32(group), Int32(hd), rows + n, Int32(visible), o)
                        }
                    }
                }
            }
        }
    }
}
