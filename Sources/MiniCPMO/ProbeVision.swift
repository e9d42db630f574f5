import Foundation
import Media

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

extension Probe {
    /// image U8 [h, w, 3], optional max_slice_nums [1] → pixel_values [K, 3, p, Lmax·p], tgt_sizes [K, 2],
    /// grid [2] (columns, rows; 0, 0 unsliced), placeholder_ids [P] (image index 0).
    static func image(_ model: MiniCPMOModel, inputs: SafetensorsFile) throws -> [SafetensorsWriter.Entry] {
        guard let t = inputs.tensors["image"] else { throw ProbeError.input("missing input 'image' (expected U8 [h, w, 3])") }
        guard t.dtype == .u8, t.shape.count == 3, t.shape[2] == 3, t.shape[0] > 0, t.shape[1] > 0 else {
            throw ProbeError.input("input 'image' has \(t.dtype.rawValue) \(t.shape), expected U8 [h, w, 3]")
        }
        var maxSlices: Int?
        if inputs.tensors["max_slice_nums"] != nil {
            let m = try integerInput(inputs, "max_slice_nums", rank: 1, expected: "[1]")
            guard m.shape == [1], let v = m.integers().first, v >= 1, v <= 1024 else {
                throw ProbeError.input("input 'max_slice_nums' must be one integer in 1…1024")
            }
            maxSlices = Int(v)
        }
        let pixels = [UInt8](UnsafeRawBufferPointer(start: t.data, count: t.byteCount))
        let rgb: RGBImage
        do { rgb = try RGBImage(width: t.shape[1], height: t.shape[0], pixels: pixels) } catch { throw ProbeError.input("\(error)") }
        let vc = try model.vision().config
        let config = SliceConfig(maxSliceNums: vc.sliceMode ? maxSlices ?? vc.slice.maxSliceNums : 1,
                                 scaleResolution: vc.slice.scaleResolution, patchSize: vc.slice.patchSize)
        let pre: PreprocessedImage
        do { pre = try ImagePreprocessor(config: config).preprocess(rgb) } catch { throw ProbeError.input("\(error)") }
        let p = vc.slice.patchSize
        let lmax = pre.images.map(\.patchCount).max() ?? 0
        var values = [Float](repeating: 0, count: pre.images.count * 3 * p * lmax * p)
        for (k, strip) in pre.images.enumerated() {
            let w = strip.patchCount * p
            for line in 0..<(3 * p) {
                let dst = (k * 3 * p + line) * lmax * p
                values.replaceSubrange(dst..<(dst + w), with: strip.pixels[(line * w)..<((line + 1) * w)])
            }
        }
        let text = ImagePreprocessor.placeholderText(imageIndex: 0, grid: pre.grid, queryNum: vc.queryNum, useImageID: vc.useImageID)
        let ids = try model.tokenizer().encode(text).map(Int64.init)
        return [
            .f32("pixel_values", shape: [pre.images.count, 3, p, lmax * p], values),
            .i64("tgt_sizes", shape: [pre.images.count, 2], pre.images.flatMap { [Int64($0.tgtRows), Int64($0.tgtCols)] }),
            .i64("grid", shape: [2], [Int64(pre.grid?.columns ?? 0), Int64(pre.grid?.rows ?? 0)]),
            .i64("placeholder_ids", shape: [ids.count], ids),
        ]
    }
}
