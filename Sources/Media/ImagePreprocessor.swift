import Foundation

/// MiniCPM-V slicing parameters (spec §3.1).
public struct SliceConfig: Equatable, Sendable {
    public var maxSliceNums: Int
    public var scaleResolution: Int
    public var patchSize: Int
    public var mean: Float
    public var std: Float

    public init(maxSliceNums: Int = 9, scaleResolution: Int = 448, patchSize: Int = 14,
                mean: Float = 0.5, std: Float = 0.5) {
        self.maxSliceNums = maxSliceNums
        self.scaleResolution = scaleResolution
        self.patchSize = patchSize
        self.mean = mean
        self.std = std
    }
}

/// How the refined image is cut: `columns × rows` cells.
public struct SliceGrid: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var columns: Int
    public var rows: Int
    public init(columns: Int, rows: Int) {
        self.columns = columns
        self.rows = rows
    }
    public var description: String { "\(columns)×\(rows)" }
}

/// One model input image in the patch-strip layout [3, P, L·P] (spec §3.1 step 6):
/// `pixels[(c * P + ky) * (L * P) + l * P + kx]` = normalized channel c at row `py * P + ky`,
/// column `px * P + kx`, with patch index `l = py * tgtCols + px`.
public struct PatchStrip: Equatable, Sendable {
    public let tgtRows: Int
    public let tgtCols: Int
    public let patchSize: Int
    public let pixels: [Float]
    public var patchCount: Int { tgtRows * tgtCols }
}

public struct PreprocessedImage: Equatable, Sendable {
    /// nil when the image is not sliced.
    public let grid: SliceGrid?
    /// Model order: source (overview) image first, then slices row by row.
    public let images: [PatchStrip]
}

/// The resized RGB images before normalization, in model order.
public struct SlicedImage: Equatable, Sendable {
    public let grid: SliceGrid?
    public let images: [RGBImage]
}

/// Swift equivalent of MiniCPM-V's `MiniCPMVImageProcessor` (source image + up to `maxSliceNums`
/// slices, Pillow-exact bicubic resizes, 0.5/0.5 normalization, patch strips).
public struct ImagePreprocessor: Sendable {
    public var config: SliceConfig

    public init(config: SliceConfig = SliceConfig()) { self.config = config }

    public func preprocess(_ image: RGBImage) throws -> PreprocessedImage {
        let sliced = try slice(image)
        return PreprocessedImage(grid: sliced.grid, images: sliced.images.map { patchStrip($0) })
    }

    /// Steps 1–3 of spec §3.1: the resized source image and the grid cells, as RGB.
    public func slice(_ image: RGBImage) throws -> SlicedImage {
        let (s, p) = (config.scaleResolution, config.patchSize)
        // Upper bounds keep the size arithmetic far from overflow.
        guard (1...1024).contains(config.maxSliceNums), (1...65536).contains(s), (1...s).contains(p),
              config.std != 0 else {
            throw ImageError.invalidConfiguration(
                reason: "maxSliceNums \(config.maxSliceNums) (1...1024), scaleResolution \(s) (1...65536), "
                    + "patchSize \(p) (1...scaleResolution), std \(config.std) (non-zero)")
        }
        let size = (w: Double(image.width), h: Double(image.height))
        guard let grid = Self.slicedGrid(width: image.width, height: image.height,
                                         maxSliceNums: config.maxSliceNums, scaleResolution: s) else {
            let best = Self.bestResize(size, scaleResolution: s, patchSize: p, allowUpscale: true)
            return SlicedImage(grid: nil, images: [try PillowResize.bicubic(image, width: best.0, height: best.1)])
        }
        let best = Self.bestResize(size, scaleResolution: s, patchSize: p, allowUpscale: false)
        let source = try PillowResize.bicubic(image, width: best.0, height: best.1)
        let refine = Self.refineSize(size, grid: grid, scaleResolution: s, patchSize: p)
        let refined = try PillowResize.bicubic(image, width: refine.0, height: refine.1)
        let (cw, ch) = (refine.0 / grid.columns, refine.1 / grid.rows)
        var images = [source]
        for row in 0..<grid.rows {
            for col in 0..<grid.columns {
                images.append(try refined.cropped(x: col * cw, y: row * ch, width: cw, height: ch))
            }
        }
        return SlicedImage(grid: grid, images: images)
    }

    /// Steps 4–6: normalize and lay out 14×14 patches as a strip. Sizes must be multiples of the patch
    /// size (true for everything `slice` returns); a remainder is dropped like torch's unfold does.
    public func patchStrip(_ image: RGBImage) -> PatchStrip {
        let p = config.patchSize
        let rows = image.height / p, cols = image.width / p
        let l = rows * cols
        // Same float32 ops as the reference: x / 255, then (x - mean) / std.
        var lut = [Float](repeating: 0, count: 256)
        for v in 0..<256 { lut[v] = (Float(v) / 255 - config.mean) / config.std }
        var out = [Float](repeating: 0, count: 3 * p * l * p)
        let lineLength = l * p
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for py in 0..<rows {
                    for ky in 0..<p {
                        let srcRow = ((py * p + ky) * image.width) * 3
                        for px in 0..<cols {
                            let base = (py * cols + px) * p
                            for kx in 0..<p {
                                let s = srcRow + (px * p + kx) * 3
                                for c in 0..<3 {
                                    dst[(c * p + ky) * lineLength + base + kx] = lut[Int(src[s + c])]
                                }
                            }
                        }
                    }
                }
            }
        }
        return PatchStrip(tgtRows: rows, tgtCols: cols, patchSize: p, pixels: out)
    }

    // MARK: - Size arithmetic (spec §3.1 helpers; sizes are (width, height))

    /// `max(round(length / patch) * patch, patch)` with Python's round-half-to-even.
    public static func ensureDivide(_ length: Double, _ patchSize: Int) -> Int {
        let q = (length / Double(patchSize)).rounded(.toNearestOrEven)
        return max(Int(q) * patchSize, patchSize)
    }

    public static func bestResize(_ size: (w: Double, h: Double), scaleResolution s: Int, patchSize p: Int,
                                  allowUpscale: Bool) -> (Int, Int) {
        var (w, h) = size
        if w * h > Double(s * s) || allowUpscale {
            let r = w / h
            let newH = (Double(s) / r.squareRoot()).rounded(.towardZero)  // Python int()
            h = newH
            w = (newH * r).rounded(.towardZero)
        }
        return (ensureDivide(w, p), ensureDivide(h, p))
    }

    public static func refineSize(_ size: (w: Double, h: Double), grid: SliceGrid, scaleResolution s: Int,
                                  patchSize p: Int) -> (Int, Int) {
        let rw = ensureDivide(size.w, grid.columns)
        let rh = ensureDivide(size.h, grid.rows)
        let cell = bestResize((Double(rw) / Double(grid.columns), Double(rh) / Double(grid.rows)),
                              scaleResolution: s, patchSize: p, allowUpscale: true)
        return (cell.0 * grid.columns, cell.1 * grid.rows)
    }

    /// The slicing grid, or nil when the image is not sliced. Candidates: n ∈ {multiple−1, multiple,
    /// multiple+1} without 1 and without n > maxSliceNums; for each n (ascending) every m | n
    /// (ascending) gives columns m, rows n/m. The smallest |log(W/H) − log(m/(n/m))| wins; ties keep
    /// the first found (so a square 512×512 image gets 1×2, not 2×1).
    public static func slicedGrid(width: Int, height: Int, maxSliceNums: Int, scaleResolution s: Int) -> SliceGrid? {
        let logRatio = log(Double(width) / Double(height))
        let ratio = Double(width) * Double(height) / Double(s * s)
        let multiple = min(Int(ratio.rounded(.up)), maxSliceNums)
        if multiple <= 1 { return nil }
        var best = SliceGrid(columns: 1, rows: 1)
        var minError = Double.infinity
        for n in [multiple - 1, multiple, multiple + 1] where n != 1 && n <= maxSliceNums {
            for m in 1...n where n % m == 0 {
                let error = abs(logRatio - log(Double(m) / Double(n / m)))
                if error < minError {
                    best = SliceGrid(columns: m, rows: n / m)
                    minError = error
                }
            }
        }
        return best
    }

    // MARK: - Placeholder text (spec §3.2)

    /// The text that replaces one image tag: optional `<image_id>i</image_id>`, the source image's
    /// `<image>` + `<unk>`×queryNum + `</image>`, then (when sliced) one line per grid row of
    /// `<slice>…</slice>` cells, lines joined by "\n", no trailing newline.
    public static func placeholderText(imageIndex: Int, grid: SliceGrid?, queryNum: Int = 64,
                                       useImageID: Bool = true) -> String {
        let unks = String(repeating: "<unk>", count: max(queryNum, 0))
        var text = useImageID ? "<image_id>\(imageIndex)</image_id>" : ""
        text += "<image>" + unks + "</image>"
        if let grid, grid.columns > 0, grid.rows > 0 {
            let row = String(repeating: "<slice>" + unks + "</slice>", count: grid.columns)
            text += Array(repeating: row, count: grid.rows).joined(separator: "\n")
        }
        return text
    }
}
