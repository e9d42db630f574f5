import Foundation

/// Row-wise normalisations over [rows, dim] float32 activations (in place allowed: out may equal x).
public enum Norm {
    /// RMSNorm: x · rsqrt(mean(x²) + eps) · w, computed in float32 as Hugging Face does.
    public static func rms(_ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>,
                           eps: Float, into out: UnsafeMutablePointer<Float>) {
        forEachRow(rows, dim) { r in
            let xr = x + r * dim, o = out + r * dim
            let ms = sumOfSquares(xr, dim) / Float(dim)
            let s = 1 / (ms + eps).squareRoot()
            scaleMultiply(xr, s, weight, nil, dim, o)
        }
    }

    /// LayerNorm: (x − mean) · rsqrt(var + eps) · w + b (biased variance, as PyTorch).
    public static func layer(_ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>,
                             bias: UnsafePointer<Float>?, eps: Float, into out: UnsafeMutablePointer<Float>) {
        forEachRow(rows, dim) { r in
            let xr = x + r * dim, o = out + r * dim
            let mean = sum(xr, dim) / Float(dim)
            var acc = SIMD8<Float>()
            var i = 0
            let m8 = SIMD8<Float>(repeating: mean)
            while i + 8 <= dim {
                let d = load8(xr + i) - m8
                acc = acc.addingProduct(d, d)
                i += 8
            }
            var v = acc.sum()
            while i < dim { let d = xr[i] - mean; v += d * d; i += 1 }
            let s = 1 / (v / Float(dim) + eps).squareRoot()
            // out = (x - mean) * s * w + b
            i = 0
            while i < dim { o[i] = (xr[i] - mean) * s * weight[i] + (bias?[i] ?? 0); i += 1 }
        }
    }

    @inline(__always)
    static func forEachRow(_ rows: Int, _ dim: Int, _ body: (Int) -> Void) {
        if rows * dim < 1 << 15 {
            for r in 0..<rows { body(r) }
        } else {
            let ranges = splitRange(rows, parts: Threading.count)
            parallelFor(ranges.count) { p in for r in ranges[p] { body(r) } }
        }
    }
}

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always) func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

@inline(__always) func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>()
    var i = 0
    while i + 8 <= n { acc += load8(x + i); i += 8 }
    var s = acc.sum()
    while i < n { s += x[i]; i += 1 }
    return s
}

@inline(__always) func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>()
    var i = 0
    while i + 8 <= n { let v = load8(x + i); acc = acc.addingProduct(v, v); i += 8 }
    var s = acc.sum()
    while i < n { s += x[i] * x[i]; i += 1 }
    return s
}

/// Dot product of two float32 vectors, SIMD-accumulated.
@inline(__always) public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
    var i = 0
    while i + 16 <= n {
        a0 = a0.addingProduct(load8(a + i), load8(b + i))
        a1 = a1.addingProduct(load8(a + i + 8), load8(b + i + 8))
        i += 16
    }
    if i + 8 <= n { a0 = a0.addingProduct(load8(a + i), load8(b + i)); i += 8 }
    var s = (a0 + a1).sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// y += a · x
@inline(__always) public func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let a8 = SIMD8<Float>(repeating: a)
    var i = 0
    while i + 8 <= n { store8(load8(y + i).addingProduct(a8, load8(x + i)), y + i); i += 8 }
    while i < n { y[i] += a * x[i]; i += 1 }
}

/// o = (x · s) · w  — the order Hugging Face's RMSNorm multiplies in.
@inline(__always) func scaleMultiply(_ x: UnsafePointer<Float>, _ s: Float, _ w: UnsafePointer<Float>,
                                     _ b: UnsafePointer<Float>?, _ n: Int, _ o: UnsafeMutablePointer<Float>) {
    let s8 = SIMD8<Float>(repeating: s)
    var i = 0
    while i + 8 <= n { store8(load8(x + i) * s8 * load8(w + i), o + i); i += 8 }
    while i < n { o[i] = x[i] * s * w[i]; i += 1 }
}
