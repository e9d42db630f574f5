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
        let ranges = splitRange(count, parts: count >= 1 << 16 ? Threading.count : 1, align: 8)
        parallelFor(ranges.count) { p in
            for i in ranges[p] { let g = gate[i]; out[i] = g / (1 + Foundation.exp(-g)) * up[i] }
        }
    }

    /// Exact GELU: x/2 · (1 + erf(x/√2)) (PyTorch's default, Whisper's "gelu").
    public static func geluErf(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let r = Float(1 / 2.0.squareRoot())
        for i in 0..<count { let v = x[i]; x[i] = 0.5 * v * (1 + Foundation.erf(v * r)) }
    }

    /// Tanh GELU ("gelu_pytorch_tanh"): x/2 · (1 + tanh(√(2/π)·(x + 0.044715x³))).
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let c = Float((2 / Double.pi).squareRoot())
        for i in 0..<count {
            let v = x[i]
            x[i] = 0.5 * v * (1 + Foundation.tanh(c * (v + 0.044715 * v * v * v)))
        }
    }

    /// In-place numerically stable softmax of one row.
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        if count == 0 { return }
        var m = -Float.infinity
        var mv = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= count { mv = pointwiseMax(mv, load8(x + i)); i += 8 }
        m = mv.max()
        while i < count { m = max(m, x[i]); i += 1 }
        if m == -.infinity {  // fully masked row: PyTorch yields NaN; keep zeros to stay finite
            x.update(repeating: 0, count: count)
            return
        }
        var s: Float = 0
        for j in 0..<count { let e = Foundation.exp(x[j] - m); x[j] = e; s += e }
        let inv = 1 / s
        for j in 0..<count { x[j] *= inv }
    }
}
