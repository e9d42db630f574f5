import Dispatch

/// Pillow's `Image.resize(size, Image.Resampling.BICUBIC)` for 8-bit RGB, bit for bit.
///
/// Mirrors libImaging/Resample.c: a = −0.5 cubic kernel whose support grows with the downscale factor
/// (antialiasing), weights normalised in double and rounded to 22-bit fixed point, a horizontal pass
/// (only over the source rows the vertical pass reads) into an 8-bit intermediate, then a vertical pass;
/// a pass is skipped when its dimension is unchanged.
public enum PillowResize {
    static let precisionBits: Int32 = 32 - 8 - 2

    /// Fixed-point filter taps for one axis: output i reads `count[i]` inputs from `start[i]`
    /// with weights `weights[i * taps ..< i * taps + count[i]]`.
    struct Coefficients {
        var taps = 0
        var start: [Int] = []
        var count: [Int] = []
        var weights: [Int32] = []
    }

    @inline(__always) static func bicubic(_ v: Double) -> Double {
        let a = -0.5
        let x = v < 0 ? -v : v
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    static func coefficients(inSize: Int, outSize: Int) -> Coefficients {
        // Pillow passes the box as floats (in0 = 0, in1 = inSize) and computes in double.
        let in0 = Double(Float(0)), in1 = Double(Float(inSize))
        let scale = (in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 2.0 * filterScale
        let taps = Int(support.rounded(.up)) * 2 + 1
        var c = Coefficients()
        c.taps = taps
        c.start = [Int](repeating: 0, count: outSize)
        c.count = [Int](repeating: 0, count: outSize)
        c.weights = [Int32](repeating: 0, count: outSize * taps)
        var k = [Double](repeating: 0, count: taps)
        let one = Double(Int32(1) << precisionBits)
        for i in 0..<outSize {
            let center = in0 + (Double(i) + 0.5) * scale
            let ss = 1.0 / filterScale
            let lo = max(Int(center - support + 0.5), 0)       // C (int) cast truncates toward zero
            let hi = min(Int(center + support + 0.5), inSize)
            let n = max(hi - lo, 0)
            var total = 0.0
            for x in 0..<n {
                let w = bicubic((Double(x + lo) - center + 0.5) * ss)
                k[x] = w
                total += w
            }
            for x in 0..<n {
                let w = total != 0 ? k[x] / total : k[x]
                c.weights[i * taps + x] = w < 0 ? Int32(-0.5 + w * one) : Int32(0.5 + w * one)
            }
            c.start[i] = lo
            c.count[i] = n
        }
        return c
    }

    @inline(__always) static func clip8(_ v: Int32) -> UInt8 {
        let s = v >> precisionBits
        return s < 0 ? 0 : s > 255 ? 255 : UInt8(truncatingIfNeeded: s)
    }

    /// Resizes `image` to `width × height` (both ≥ 1) with Pillow's BICUBIC filter.
    public static func bicubic(_ image: RGBImage, width: Int, height: Int) throws -> RGBImage {
        guard width > 0, height > 0 else {
            throw ImageError.invalidImage(reason: "resize target \(width)×\(height) is not positive")
        }
        let (_, overflow) = (width * 3).multipliedReportingOverflow(by: height)
        guard !overflow, width <= 1 << 24, height <= 1 << 24 else {
            throw ImageError.invalidImage(reason: "resize target \(width)×\(height) is too large")
        }
        let needH = width != image.width
        let needV = height != image.height
        if !needH && !needV { return image }

        let vert = coefficients(inSize: image.height, outSize: height)
        var source = image.pixels
        var rows = image.height
        var vStart = vert.start
        if needH {
            // Only the source rows the vertical pass will read.
            let first = vert.start[0]
            let last = vert.start[height - 1] + vert.count[height - 1]
            let horiz = coefficients(inSize: image.width, outSize: width)
            source = horizontalPass(image.pixels, inWidth: image.width, firstRow: first, rows: last - first, c: horiz)
            rows = last - first
            vStart = vert.start.map { $0 - first }
        }
        if !needV {
            return RGBImage(uncheckedWidth: width, height: rows, pixels: source)
        }
        var v = vert
        v.start = vStart
        let out = verticalPass(source, width: width, outHeight: height, c: v)
        return RGBImage(uncheckedWidth: width, height: height, pixels: out)
    }

    /// Splits `count` rows over the cores; tiny jobs stay on the calling thread.
    static func parallelRows(_ count: Int, work: Int, _ body: (Range<Int>) -> Void) {
        let chunks = work < 1 << 18 ? 1 : min(count, 32)
        if chunks <= 1 { body(0..<count); return }
        // Chunks write disjoint rows; the closure only lives for the duration of this call.
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let body = body
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                body((count * chunk / chunks)..<(count * (chunk + 1) / chunks))
            }
        }
    }

    static func horizontalPass(_ src: [UInt8], inWidth: Int, firstRow: Int, rows: Int, c: Coefficients) -> [UInt8] {
        let outWidth = c.start.count
        var out = [UInt8](repeating: 0, count: outWidth * rows * 3)
        let half = Int32(1) << (precisionBits - 1)
        src.withUnsafeBufferPointer { s in
            c.weights.withUnsafeBufferPointer { wts in
                c.start.withUnsafeBufferPointer { starts in
                    c.count.withUnsafeBufferPointer { counts in
                        out.withUnsafeMutableBufferPointer { o in
                            guard let sp = s.baseAddress, let wp = wts.baseAddress, let op = o.baseAddress else { return }
                            parallelRows(rows, work: rows * outWidth * c.taps) { range in
                                for y in range {
                                    let row = sp + (y + firstRow) * inWidth * 3
                                    let orow = op + y * outWidth * 3
                                    for x in 0..<outWidth {
                                        let k = wp + x * c.taps
                                        let p = row + starts[x] * 3
                                        var r = half, g = half, b = half
                                        for t in 0..<counts[x] {
                                            let w = k[t]
                                            r &+= Int32(p[3 * t]) &* w
                                            g &+= Int32(p[3 * t + 1]) &* w
                                            b &+= Int32(p[3 * t + 2]) &* w
                                        }
                                        orow[3 * x] = clip8(r)
                                        orow[3 * x + 1] = clip8(g)
                                        orow[3 * x + 2] = clip8(b)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    static func verticalPass(_ src: [UInt8], width: Int, outHeight: Int, c: Coefficients) -> [UInt8] {
        let stride = width * 3
        var out = [UInt8](repeating: 0, count: stride * outHeight)
        let half = Int32(1) << (precisionBits - 1)
        src.withUnsafeBufferPointer { s in
            c.weights.withUnsafeBufferPointer { wts in
                out.withUnsafeMutableBufferPointer { o in
                    guard let sp = s.baseAddress, let wp = wts.baseAddress, let op = o.baseAddress else { return }
                    parallelRows(outHeight, work: outHeight * stride * c.taps) { range in
                        // Accumulate whole rows at a time so the inner loop runs over contiguous bytes.
                        var acc = [Int32](repeating: 0, count: stride)
                        acc.withUnsafeMutableBufferPointer { a in
                            for y in range {
                                let k = wp + y * c.taps
                                let first = c.start[y]
                                for i in 0..<stride { a[i] = half }
                                for t in 0..<c.count[y] {
                                    let w = k[t]
                                    let row = sp + (first + t) * stride
                                    for i in 0..<stride { a[i] &+= Int32(row[i]) &* w }
                                }
                                let orow = op + y * stride
                                for i in 0..<stride { orow[i] = clip8(a[i]) }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
