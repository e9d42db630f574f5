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
    public static func forward(q: UnsafePointer<Float>, tokens: Int, queryStart: Int, shape: AttentionShape,
                               keys: KVRows, values: KVRows, kvLength: Int, causal: Bool,
                               mask: UnsafePointer<Float>? = nil, into out: UnsafeMutablePointer<Float>) {
        let hd = shape.headDim, heads = shape.heads
        let group = heads / shape.kvHeads
        let qStride = heads * hd
        let items = tokens * heads
        let ranges = splitRange(items, parts: items * kvLength * hd >= 1 << 14 ? Threading.count * 4 : 1)
        parallelFor(ranges.count) { part in
            let scores = FloatBuffer(count: max(kvLength, 1))
            defer { withExtendedLifetime(scores) {} }  // its pointer outlives the last use of the object
            for item in ranges[part] {
                let t = item / heads, h = item % heads
                let kvh = h / group
                let qv = q + t * qStride + h * hd
                let o = out + t * qStride + h * hd
                let visible = causal ? min(kvLength, queryStart + t + 1) : kvLength
                let s = scores.pointer
                for j in 0..<visible {
                    s[j] = dot(qv, keys.row(j) + kvh * hd, hd) * shape.scale
                }
                if let mask {
                    let mr = mask + t * kvLength
                    for j in 0..<visible { s[j] += mr[j] }
                }
                Activation.softmax(s, count: visible)
                o.update(repeating: 0, count: hd)
                for j in 0..<visible where s[j] != 0 {
                    axpy(s[j], values.row(j) + kvh * hd, o, hd)
                }
            }
        }
    }
}
