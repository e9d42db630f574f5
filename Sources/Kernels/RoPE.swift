import Foundation

/// Rotary position embedding in Hugging Face's "rotate_half" layout (not interleaved): the pair for
/// dimension i is (i, i + d/2).
public struct RoPE: Sendable {
    public let dim: Int
    public let theta: Float
    /// inv_freq[i] = θ^(−2i/d), rounded to float32 as the reference computes it.
    public let inverseFrequencies: [Float]

    public init(dim: Int, theta: Float) {
        self.dim = dim
        self.theta = theta
        inverseFrequencies = (0..<(dim / 2)).map { i in
            Float(1.0 / Foundation.pow(Double(theta), Double(Float(2 * i) / Float(dim))))
        }
    }

    /// cos/sin tables [positions.count, d/2]; angle = Float(pos) · inv_freq in float32.
    public func table(positions: [Int]) -> (cos: [Float], sin: [Float]) {
        let half = dim / 2
        var c = [Float](repeating: 0, count: positions.count * half)
        var s = c
        for (t, p) in positions.enumerated() {
            for i in 0..<half {
                let a = Float(p) * inverseFrequencies[i]
                c[t * half + i] = Foundation.cos(a)
                s[t * half + i] = Foundation.sin(a)
            }
        }
        return (c, s)
    }

    /// Rotates x [tokens, heads·dim] in place; row t uses table row t.
    public func apply(_ x: UnsafeMutablePointer<Float>, tokens: Int, heads: Int,
                      cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        let half = dim / 2
        for t in 0..<tokens {
            let ct = cos + t * half, st = sin + t * half
            for h in 0..<heads {
                let v = x + (t * heads + h) * dim
                var i = 0
                while i + 8 <= half {
                    let x1 = load8(v + i), x2 = load8(v + half + i), c = load8(ct + i), s = load8(st + i)
                    store8(x1 * c - x2 * s, v + i)
                    store8(x2 * c + x1 * s, v + half + i)
                    i += 8
                }
                while i < half {
                    let x1 = v[i], x2 = v[half + i]
                    v[i] = x1 * ct[i] - x2 * st[i]
                    v[half + i] = x2 * ct[i] + x1 * st[i]
                    i += 1
                }
            }
        }
    }
}
