import Foundation
@_exported import TestSupport
@testable import Kernels

/// SplitMix64: deterministic test randomness.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in Float.random(in: -scale...scale, using: &self) }
    }
    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &self) }
}

/// Relative error against the scale of the reference.
func relErr(_ a: [Float], _ ref: [Float]) -> Float {
    let scale = max(ref.reduce(0) { max($0, abs($1)) }, 1e-6)
    return maxAbs(a, ref) / scale
}

/// A weight matrix in `format` built from floats (values are rounded to the format first).
func weight(_ values: [Float], rows: Int, cols: Int, format: WeightFormat) -> (WeightMatrix, [Float]) {
    switch format {
    case .f32:
        return (WeightMatrix(rows: rows, cols: cols, values: values), values)
    case .bf16:
        let bits = values.map(floatToBF16)
        let buf = UnsafeMutablePointer<UInt16>.allocate(capacity: bits.count)
        buf.initialize(from: bits, count: bits.count)
        let box = Box(buf)
        return (WeightMatrix(rows: rows, cols: cols, format: .bf16, data: UnsafeRawPointer(buf), owner: box), bits.map(bf16ToFloat))
    case .f16:
        let halves = values.map { Float16($0) }
        let buf = UnsafeMutablePointer<Float16>.allocate(capacity: halves.count)
        buf.initialize(from: halves, count: halves.count)
        let box = Box(buf)
        return (WeightMatrix(rows: rows, cols: cols, format: .f16, data: UnsafeRawPointer(buf), owner: box), halves.map { Float($0) })
    case .q8_0, .q4_0:
        let w = Quant.quantize(WeightMatrix(rows: rows, cols: cols, values: values), to: format)
        return (w, w.toFloats())
    }
}

final class Box<T> {
    let p: UnsafeMutablePointer<T>
    init(_ p: UnsafeMutablePointer<T>) { self.p = p }
    deinit { p.deallocate() }
}
