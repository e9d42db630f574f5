/// Eight-lane exp for the softmax and GELU loops: libm's scalar expf is a call per element, which
/// dominates encoder attention. Cody–Waite range reduction x = n·ln2 + r and a degree-6 polynomial
/// for eʳ (relative error about 2e-7, the same order as float32 rounding).
@inline(__always)
public func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // masked moves, not `clamped`: that one calls generic pointwiseMin/Max out of line
    let lo = SIMD8<Float>(repeating: -87.33654), hi = SIMD8<Float>(repeating: 88.72283)
    var clamped = x
    clamped.replace(with: lo, where: x .< lo)
    clamped.replace(with: hi, where: x .> hi)
    // n = round(x·log2 e) by the 1.5·2²³ trick: adding it leaves the rounded integer in the low
    // mantissa bits (Swift's generic SIMD rounding and Float→Int conversions are not vectorized)
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let shifted = clamped * 1.442695041 + magic
    let n = shifted - magic
    var r = clamped - n * 0.693359375   // ln2 split in two parts keeps r exact
    r = r - n * -2.12194440e-4
    var p = SIMD8<Float>(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let er = p * r * r + r + 1
    let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
    let scale = unsafeBitCast((ni &+ 127) &<< 23, to: SIMD8<Float>.self)
    var y = er * scale
    y.replace(with: SIMD8(repeating: 0), where: x .< -87.33654)
    y.replace(with: SIMD8(repeating: .infinity), where: x .> 88.72283)
    return y
}

/// Eight-lane erf (Abramowitz & Stegun 7.1.26, the form PyTorch's vectorized erf uses): with
/// t = 1/(1 + p|x|), erf(x) = sign(x)·(1 − t·P(t)·e^{−x²}); absolute error below 1.5e-7. Scalar erff
/// per element took 5% of a Whisper unit.
@inline(__always)
public func erf8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    var a = x
    a.replace(with: -x, where: x .< 0)
    let t = 1 / (1 + 0.3275911 * a)
    var p = SIMD8<Float>(repeating: 1.061405429)
    p = p * t - 1.453152027
    p = p * t + 1.421413741
    p = p * t - 0.284496736
    p = p * t + 0.254829592
    var y = 1 - t * p * exp8(-(a * a))
    y.replace(with: -y, where: x .< 0)
    return y
}

/// exp over a buffer in place; returns the sum of the results.
@inline(__always)
func expInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, subtracting m: Float) -> Float {
    var acc = SIMD8<Float>()
    let m8 = SIMD8<Float>(repeating: m)
    var i = 0
    while i + 8 <= count {
        let e = exp8(load8(x + i) - m8)
        store8(e, x + i)
        acc += e
        i += 8
    }
    var s = acc.sum()
    if i < count {
        var tail = SIMD8<Float>(repeating: -.infinity)
        for j in i..<count { tail[j - i] = x[j] - m }
        let e = exp8(tail)
        for j in i..<count { x[j] = e[j - i]; s += e[j - i] }
    }
    return s
}

/// Index of the first largest element, the one a scalar `x[i] > x[best]` scan from 0 picks (NaNs never
/// win; a NaN at 0 stays). Eight lanes: the greedy pick reads 152k logits every decode step.
public func indexOfMax(_ x: UnsafeBufferPointer<Float>) -> Int {
    guard x.count > 1, let p = x.baseAddress, !p[0].isNaN else { return 0 }
    let n = x.count
    var mv = SIMD8<Float>(repeating: p[0])
    var i = 0
    while i + 8 <= n { let v = load8(p + i); mv.replace(with: v, where: v .> mv); i += 8 }
    var m = mv.max()
    while i < n { if p[i] > m { m = p[i] }; i += 1 }
    let m8 = SIMD8<Float>(repeating: m)
    i = 0
    while i + 8 <= n, !any(load8(p + i) .== m8) { i += 8 }
    while p[i] != m { i += 1 }
    return i
}
