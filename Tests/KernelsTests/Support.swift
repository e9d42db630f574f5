import Foundation
@_exported import TestSupport
@testable import Kernels


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
