import Foundation

/// Plain scalar twins of every fast kernel. They define what the fast kernels must compute and
/// accumulate in Double so that disagreements point at the fast path.
public enum Naive {
    public static func linear(_ x: [Float], tokens: Int, weight w: WeightMatrix, bias: [Float]?) -> [Float] {
        let wf = w.toFloats()
        var y = [Float](repeating: 0, count: tokens * w.rows)
        for t in 0..<tokens {
            for r in 0..<w.rows {
                var s = 0.0
                for c in 0..<w.cols { s += Double(x[t * w.cols + c]) * Double(wf[r * w.cols + c]) }
                y[t * w.rows + r] = Float(s) + (bias?[r] ?? 0)
            }
        }
        return y
    }

    public static func rmsNorm(_ x: [Float], dim: Int, weight: [Float], eps: Float) -> [Float] {
        var out = x
        for r in 0..<(x.count / dim) {
            var ss = 0.0
            for i in 0..<dim { ss += Double(x[r * dim + i]) * Double(x[r * dim + i]) }
            let s = 1 / (ss / Double(dim) + Double(eps)).squareRoot()
            for i in 0..<dim { out[r * dim + i] = Float(Double(x[r * dim + i]) * s) * weight[i] }
        }
        return out
    }

    public static func layerNorm(_ x: [Float], dim: Int, weight: [Float], bias: [Float]?, eps: Float) -> [Float] {
        var out = x
        for r in 0..<(x.count / dim) {
            let row = (0..<dim).map { Double(x[r * dim + $0]) }
            let mean = row.reduce(0, +) / Double(dim)
            let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(dim)
            for i in 0..<dim {
                out[r * dim + i] = Float((row[i] - mean) / (v + Double(eps)).squareRoot()) * weight[i] + (bias?[i] ?? 0)
            }
        }
        return out
    }

    public static func softmax(_ x: [Float]) -> [Float] {
        let m = x.max() ?? 0
        let e = x.map { Foundation.exp(Double($0 - m)) }
        let s = e.reduce(0, +)
        return e.map { Float($0 / s) }
    }

    public static func silu(_ x: [Float]) -> [Float] { x.map { Float(Double($0) / (1 + Foundation.exp(-Double($0)))) } }

    public static func geluErf(_ x: [Float]) -> [Float] {
        x.map { Float(0.5 * Double($0) * (1 + Foundation.erf(Double($0) / 2.0.squareRoot()))) }
    }

    public static func geluTanh(_ x: [Float]) -> [Float] {
        x.map { v in
            let d = Double(v)
            return Float(0.5 * d * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (d + 0.044715 * d * d * d))))
        }
    }

    /// rotate_half RoPE on x [tokens, heads, dim] with angle pos·θ^(−2i/d) in Double.
    public static func rope(_ x: [Float], positions: [Int], heads: Int, dim: Int, theta: Double) -> [Float] {
        var out = x
        let half = dim / 2
        for (t, p) in positions.enumerated() {
            for h in 0..<heads {
                let base = (t * heads + h) * dim
                for i in 0..<half {
                    let a = Double(p) * Foundation.pow(theta, -Double(2 * i) / Double(dim))
                    let x1 = Double(x[base + i]), x2 = Double(x[base + half + i])
                    out[base + i] = Float(x1 * Foundation.cos(a) - x2 * Foundation.sin(a))
                    out[base + half + i] = Float(x2 * Foundation.cos(a) + x1 * Foundation.sin(a))
                }
            }
        }
        return out
    }

    /// GQA attention with q [T, H·d], k/v [L, Hkv·d], queries at positions queryStart + t.
    public static func attention(q: [Float], k: [Float], v: [Float], tokens: Int, queryStart: Int,
                                 kvLength: Int, shape: AttentionShape, causal: Bool, mask: [Float]?) -> [Float] {
        let hd = shape.headDim, group = shape.heads / shape.kvHeads
        var out = [Float](repeating: 0, count: tokens * shape.heads * hd)
        for t in 0..<tokens {
            for h in 0..<shape.heads {
                let kvh = h / group
                var scores = [Double](repeating: -.infinity, count: kvLength)
                for j in 0..<kvLength {
                    if causal && j > queryStart + t { continue }
                    var s = 0.0
                    for d in 0..<hd {
                        s += Double(q[(t * shape.heads + h) * hd + d]) * Double(k[(j * shape.kvHeads + kvh) * hd + d])
                    }
                    scores[j] = s * Double(shape.scale) + Double(mask?[t * kvLength + j] ?? 0)
                }
                let m = scores.max() ?? 0
                if m == -.infinity { continue }
                let e = scores.map { Foundation.exp($0 - m) }
                let z = e.reduce(0, +)
                for d in 0..<hd {
                    var acc = 0.0
                    for j in 0..<kvLength where e[j] > 0 {
                        acc += e[j] / z * Double(v[(j * shape.kvHeads + kvh) * hd + d])
                    }
                    out[(t * shape.heads + h) * hd + d] = Float(acc)
                }
            }
        }
        return out
    }

    /// PyTorch Conv1d (groups 1 or = channels) on channels-first [Cin, T] input with weight [Cout, Cin/groups, k].
    public static func conv1d(_ x: [Float], channels cin: Int, frames t: Int, weight: [Float], outChannels cout: Int,
                              bias: [Float]?, kernel k: Int, padding p: Int, dilation d: Int, stride s: Int,
                              groups: Int) -> [Float] {
        let n = (t + 2 * p - d * (k - 1) - 1) / s + 1
        let perGroupIn = cin / groups, perGroupOut = cout / groups
        var y = [Float](repeating: 0, count: cout * max(n, 0))
        for o in 0..<cout {
            let g = o / perGroupOut
            for i in 0..<max(n, 0) {
                var acc = Double(bias?[o] ?? 0)
                for ci in 0..<perGroupIn {
                    for j in 0..<k {
                        let src = i * s + j * d - p
                        guard src >= 0 && src < t else { continue }
                        acc += Double(weight[(o * perGroupIn + ci) * k + j]) * Double(x[(g * perGroupIn + ci) * t + src])
                    }
                }
                y[o * n + i] = Float(acc)
            }
        }
        return y
    }
}
