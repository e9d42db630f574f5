import Foundation

extension Probe {
    /// pixel_values [N, 3, p, Lmax·p] (patch strips), tgt_sizes [N, 2], optional patch_attention_mask
    /// [N, 1, Lmax] → last_hidden_state [N, Lmax, C] (padded rows zero), resampler_output [N, Q, H].
    static func vision(_ m: VisionModel, inputs: SafetensorsFile) throws -> [SafetensorsWriter.Entry] {
        let p = m.config.siglip.patchSize, c = m.config.siglip.hiddenSize
        let strip = "[N, 3, \(p), Lmax·\(p)]"
        let pixels = try floatInput(inputs, "pixel_values", rank: 4, expected: strip)
        let (n, width) = (pixels.shape[0], pixels.shape[3])
        guard pixels.shape[1] == 3, pixels.shape[2] == p, width % p == 0 else {
            throw ProbeError.input("input 'pixel_values' has shape \(pixels.shape), expected \(strip)")
        }
        let lmax = width / p
        let sizes = try integerInput(inputs, "tgt_sizes", rank: 2, expected: "[\(n), 2]")
        guard sizes.shape == [n, 2] else {
            throw ProbeError.input("input 'tgt_sizes' has shape \(sizes.shape), expected [\(n), 2]")
        }
        let tgt = sizes.integers().map { Int($0) }
        for i in 0..<n where tgt[2 * i] < 1 || tgt[2 * i + 1] < 1 || tgt[2 * i] * tgt[2 * i + 1] > lmax {
            throw ProbeError.input("tgt_sizes[\(i)] = \(tgt[2 * i])×\(tgt[2 * i + 1]) patches does not fit the \(lmax) patches of pixel_values")
        }
        if let mask = inputs.tensors["patch_attention_mask"] {
            guard mask.shape == [n, 1, lmax], mask.dtype.weightFormat == nil else {
                throw ProbeError.input("input 'patch_attention_mask' has \(mask.dtype.rawValue) \(mask.shape), expected U8/I64 [\(n), 1, \(lmax)]")
            }
            let bits = mask.integers()
            for i in 0..<n {
                let real = tgt[2 * i] * tgt[2 * i + 1]
                let row = bits[(i * lmax)..<((i + 1) * lmax)]
                guard row.enumerated().allSatisfy({ ($0.offset < real) == ($0.element != 0) }) else {
                    throw ProbeError.input("patch_attention_mask[\(i)] must mark exactly the first \(real) patches (tgt_sizes[\(i)])")
                }
            }
        }
        let values = pixels.floats()
        let q = m.config.queryNum, h = m.config.embedDim
        var hidden = [Float](repeating: 0, count: n * lmax * c), resampled = [Float]()
        resampled.reserveCapacity(n * q * h)
        for i in 0..<n {
            let (rows, cols) = (tgt[2 * i], tgt[2 * i + 1])
            // this image's strip: the first rows·cols patches of each of the 3·p pixel rows
            let real = rows * cols * p
            var own = [Float](repeating: 0, count: 3 * p * real)
            for line in 0..<(3 * p) {
                let src = (i * 3 * p + line) * width
                own.replaceSubrange((line * real)..<((line + 1) * real), with: values[src..<(src + real)])
            }
            let (x, e) = own.withUnsafeBufferPointer { m.forward(strip: $0.baseAddress!, rows: rows, cols: cols) }
            hidden.replaceSubrange((i * lmax * c)..<((i * lmax + rows * cols) * c), with: x.array.prefix(rows * cols * c))
            resampled += e.array.prefix(q * h)
        }
        return [.f32("last_hidden_state", shape: [n, lmax, c], hidden), .f32("resampler_output", shape: [n, q, h], resampled)]
    }
}
