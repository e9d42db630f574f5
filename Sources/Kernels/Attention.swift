import CKernels

/// Key or value rows of one layer, stored in fixed-size pages (a paged KV cache) or contiguously.
/// Row `pos` holds `rowStride` floats: kvHeads × headDim.
public struct KVRows: @unchecked Sendable {
    public let pages: [UnsafeMutablePointer<Float>]
    public let pageSize: Int
    public let rowStride: Int

    public init(pages: [UnsafeMutablePointer<Float>], pageSize: Int, rowStride: Int) {
        self.pages = pages
        self.pageSize = pageSize
        self.rowStride = rowStride
    }

    /// Rows stored back to back.
    public init(contiguous base: UnsafeMutablePointer<Float>, rowStride: Int) {
        self.init(pages: [base], pageSize: Int.max, rowStride: rowStride)
    }

    @inline(__always)
    public func row(_ pos: Int) -> UnsafeMutablePointer<Float> {
        pages[pos / pageSize] + (pos % pageSize) * rowStride
    }

    /// `body` gets row addresses that do not touch the page array's reference count: in a loop over
    /// thousands of rows on several threads, that shared count costs more than the arithmetic.
    @inline(__always)
    func withAddresses<R>(_ body: (RowAddresses) throws -> R) rethrows -> R {
        try pages.withUnsafeBufferPointer { try body(RowAddresses(pages: $0, pageSize: pageSize, rowStride: rowStride)) }
    }
}

struct RowAddresses: @unchecked Sendable {
    let pages: UnsafeBufferPointer<UnsafeMutablePointer<Float>>
    let pageSize: Int, rowStride: Int

    @inline(__always)
    func callAsFunction(_ pos: Int) -> UnsafeMutablePointer<Float> { pages[pos / pageSize] + (pos % pageSize) * rowStride }
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
                                rows[j] = UnsafePointer(keyRow(j) + kvh * hd)
                                rows[n + j] = UnsafePointer(valueRow(j) + kvh * hd)
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
