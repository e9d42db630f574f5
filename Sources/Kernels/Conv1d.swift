/// 1-D convolutions over time-major activations [T, C] (a row per frame), the layout every encoder
/// here keeps between linear layers.
public enum Conv1d {
    /// Output frames of a convolution: ⌊(T + 2p − d·(k − 1) − 1) / s⌋ + 1.
    public static func outputFrames(_ t: Int, kernel k: Int, padding p: Int = 0, dilation d: Int = 1, stride s: Int = 1) -> Int {
        (t + 2 * p - d * (k - 1) - 1) / s + 1
    }

    /// Dense convolution as im2col + GEMM: `weight` is the PyTorch kernel [Cout, Cin, k] folded to
    /// [Cout, Cin·k]; frame i's column (c, j) holds x[i·s + j·d − p][c] (zero outside).
    /// x: [t, Cin] → y: [outputFrames, Cout].
    public static func forward(_ x: UnsafePointer<Float>, frames t: Int, channels cin: Int, weight: WeightMatrix,
                               bias: UnsafePointer<Float>?, kernel k: Int, padding p: Int, dilation d: Int = 1,
                               stride s: Int = 1, into y: UnsafeMutablePointer<Float>) {
        precondition(weight.cols == cin * k, "Conv1d: weight has \(weight.cols) columns, expected \(cin)·\(k)")
        let n = outputFrames(t, kernel: k, padding: p, dilation: d, stride: s)
        guard n > 0 else { return }
        if k == 1 && p == 0 && s == 1 {
            Linear.forward(x, tokens: t, weight: weight, bias: bias, into: y)
            return
        }
        let cols = FloatBuffer(zeros: n * cin * k)
        let ranges = splitRange(n, parts: n * cin * k >= 1 << 16 ? Threading.count : 1)
        parallelFor(ranges.count) { part in
            for i in ranges[part] {
                let row = cols.pointer + i * cin * k
                for j in 0..<k {
                    let src = i * s + j * d - p
                    guard src >= 0 && src < t else { continue }
                    let xr = x + src * cin
                    for c in 0..<cin { row[c * k + j] = xr[c] }
                }
            }
        }
        Linear.forward(cols.pointer, tokens: n, weight: weight, bias: bias, into: y)
    }

    /// Depthwise convolution (groups = channels, stride 1, "same" length when 2p = d·(k − 1)):
    /// y[i][c] = b[c] + Σⱼ w[c][j] · x[i + j·d − p][c]. weight: [C, k] (the kernel [C, 1, k]).
    public static func depthwise(_ x: UnsafePointer<Float>, frames t: Int, channels c: Int, weight: UnsafePointer<Float>,
                                 bias: UnsafePointer<Float>?, kernel k: Int, padding p: Int, dilation d: Int = 1,
                                 into y: UnsafeMutablePointer<Float>) {
        let n = outputFrames(t, kernel: k, padding: p, dilation: d)
        guard n > 0 else { return }
        // transposed taps [k, C], so that the inner loop runs over contiguous channels
        var taps = [Float](repeating: 0, count: k * c)
        for ch in 0..<c { for j in 0..<k { taps[j * c + ch] = weight[ch * k + j] } }
        let ranges = splitRange(n, parts: n * c * k >= 1 << 16 ? Threading.count : 1)
        taps.withUnsafeBufferPointer { tp in
            parallelFor(ranges.count) { part in
                for i in ranges[part] {
                    let out = y + i * c
                    if let bias { out.update(from: bias, count: c) } else { out.update(repeating: 0, count: c) }
                    for j in 0..<k {
                        let src = i + j * d - p
                        guard src >= 0 && src < t else { continue }
                        let xr = x + src * c, w = tp.baseAddress! + j * c
                        for ch in 0..<c { out[ch] += w[ch] * xr[ch] }
                    }
                }
            }
        }
    }
}
