/// Float16/BFloat16 → Float32 in SIMD registers. The stdlib's SIMD conversion initialisers are
/// out-of-line calls; these element loops vectorize into vpmovzxwd/vpslld and vcvtph2ps.

@inline(__always)
public func bf16ToFloat(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

@inline(__always)
public func floatToBF16(_ x: Float) -> UInt16 {
    // round to nearest even, as PyTorch does; NaN stays NaN
    let b = x.bitPattern
    if x.isNaN { return UInt16(b >> 16) | 0x40 }
    return UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
}

@inline(__always)
func loadBF16x8(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    let h = p.loadUnaligned(as: SIMD8<UInt16>.self)
    var u = SIMD8<UInt32>()
    for i in 0..<8 { u[i] = UInt32(h[i]) &<< 16 }
    return unsafeBitCast(u, to: SIMD8<Float>.self)
}

@inline(__always)
func loadF16x8(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    let h = p.loadUnaligned(as: SIMD8<Float16>.self)
    var r = SIMD8<Float>()
    for i in 0..<8 { r[i] = Float(h[i]) }
    return r
}

@inline(__always)
func loadF32x8(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    p.loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func loadWeight(_ p: UnsafeRawPointer, _ format: WeightFormat, _ i: Int) -> Float {
    switch format {
    case .f32: return p.load(fromByteOffset: i * 4, as: Float.self)
    case .f16: return Float(p.loadUnaligned(fromByteOffset: i * 2, as: Float16.self))
    case .bf16: return bf16ToFloat(p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
    case .q8_0, .q4_0: preconditionFailure("quantized elements are read through Quant")
    }
}

/// Widens `count` stored elements (f32/f16/bf16) to Float32.
public func convertToFloat(_ src: UnsafeRawPointer, format: WeightFormat, count: Int,
                           into dst: UnsafeMutablePointer<Float>) {
    let raw = UnsafeMutableRawPointer(dst)
    var i = 0
    switch format {
    case .f32:
        dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        return
    case .bf16:
        while i + 8 <= count {
            raw.storeBytes(of: loadBF16x8(src + 2 * i), toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
    case .f16:
        while i + 8 <= count {
            raw.storeBytes(of: loadF16x8(src + 2 * i), toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
    case .q8_0, .q4_0:
        preconditionFailure("quantized rows are read through WeightMatrix.readRows")
    }
    while i < count {
        dst[i] = loadWeight(src, format, i)
        i += 1
    }
}
