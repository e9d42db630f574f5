import Foundation

/// Elementwise activations and softmax over float32 activations.
public enum Activation {
    /// silu(x) = x · σ(x)
    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { let v = x[i]; x[i] = v / (1 + Foundation.exp(-v)) }
    }

    /// out = silu(gate) ⊙ up — the SwiGLU of the Qwen2/Llama MLP.
    public static func swiglu(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                              into out: UnsafeMutablePointer<Float>) {
        // eight lanes at a time: a decode step's 18944 scalar expf calls cost about 2% of the step
        let ranges = splitRange(count, parts: count >= 1 << 16 ? Threading.count : 1, align: 8)
        parallelFor(ranges.count) { p in
            var i = ranges[p].lowerBound
            let end = ranges[p].upperBound
            while i + 8 <= end {
                let g = load8(gate + i)
                store8(g / (1 + exp8(-g)) * load8(up + i), out + i)
                i += 8
            }
            while i < end { let g = gate[i]; out[i] = g / (1 + Foundation.exp(-g)) * up[i]; i += 1 }
        }
    }

    /// Exact GELU: x/2 · (1 + erf(x/√2)) (PyTorch's default, Whisper's "gelu").
    public static func geluErf(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let r = Float(1 / 2.0.squareRoot())
        elementwise(x, count: count, { v in 0.5 * v * (1 + erf8(v * r)) }, { v in 0.5 * v * (1 + Foundation.erf(v * r)) })
    }

    /// Tanh GELU ("gelu_pytorch_tanh"): x/2 · (1 + tanh(√(2/π)·(x + 0.044715x³))), with
    /// tanh(u) = 1 − 2/(e^{2u} + 1) on eight lanes.
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let c = Float((2 / Double.pi).squareRoot())
        elementwise(x, count: count, { v in
            let u = c * (v + 0.044715 * v * v * v)
            return 0.5 * v * (1 + (1 - 2 / (exp8(2 * u) + 1)))
        }, { v in 0.5 * v * (1 + Foundation.tanh(c * (v + 0.044715 * v * v * v))) })
    }

    /// x[i] = f(x[i]) eight lanes at a time (`lanes`; `one` for the last few), split across threads
    /// for large buffers.
    @inline(__always)
    static func elementwise(_ x: UnsafeMutablePointer<Float>, count: Int, _ lanes: (SIMD8<Float>) -> SIMD8<Float>,
                            _ one: (Float) -> Float) {
        let ranges = splitRange(count, parts: count >= 1 << 15 ? Threading.count * 2 : 1, align: 8)
        parallelFor(ranges.count) { p in
            var i = ranges[p].lowerBound
            let end = ranges[p].upperBound
            while i + 8 <= end {
                store8(lanes(load8(x + i)), x + i)
                i += 8
            }
            while i < end { x[i] = one(x[i]); i += 1 }
        }
    }

    /// In-place numerically stable softmax of one row.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        if count == 0 { return }
        var m = -Float.infinity
        var mv = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= count { let v = load8(x + i); mv.replace(with: v, where: v .> mv); i += 8 }
        m = mv.max()
        while i < count { m = max(m, x[i]); i += 1 }
        if m == -.infinity {  // fully masked row: PyTorch yields NaN; keep zeros to stay finite
            x.update(repeating: 0, count: count)
            return
        }
        let inv = 1 / expInPlace(x, count: count, subtracting: m)
        i = 0
        let inv8 = SIMD8<Float>(repeating: inv)
        while i + 8 <= count { store8(load8(x + i) * inv8, x + i); i += 8 }
        while i < count { x[i] *= inv; i += 1 }
    }
}
