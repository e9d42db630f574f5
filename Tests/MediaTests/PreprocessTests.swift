import Foundation
import Testing
@testable import Media

@Suite struct PreprocessTests {
    static let cases = [
        "chelsea", "chelsea-small", "coffee", "coffee-max1", "moon-tie", "1x3", "3x2", "3x3", "3x3-max4",
        "wide", "narrow", "wide-sliced", "tiny-1x1", "tiny-5x7",
    ]

    /// Grid, tgt_sizes, resized slices (hash of the uint8 pixels) and a subsample of the normalized
    /// patch strips against tools/reference/minicpmv_image.py.
    @Test(arguments: cases)
    func matchesReferenceProcessor(_ name: String) throws {
        let ref = try Reference("image-preprocess.safetensors")
        let input = try decodeFixture(try ref.string("\(name)/input"))
        let maxSlices = try ref.int64("\(name)/max_slice_nums")[0]
        let processor = ImagePreprocessor(config: SliceConfig(maxSliceNums: maxSlices))
        let sliced = try processor.slice(input)
        let result = try processor.preprocess(input)

        let grid = try ref.int64("\(name)/grid")
        let expectedGrid = grid == [0, 0] ? nil : SliceGrid(columns: grid[0], rows: grid[1])
        #expect(result.grid == expectedGrid)
        #expect(sliced.grid == expectedGrid)

        let tgt = try ref.int64("\(name)/tgt_sizes")
        #expect(result.images.map { [$0.tgtRows, $0.tgtCols] } == stride(from: 0, to: tgt.count, by: 2).map { [tgt[$0], tgt[$0 + 1]] })

        let hashes = try ref.int64("\(name)/fnv")
        #expect(sliced.images.count == hashes.count)
        var worst: Float = 0
        for (k, image) in sliced.images.enumerated() where k < hashes.count {
            #expect(fnv1a64(image.pixels) == hashes[k], "\(name) image \(k) (\(image.width)×\(image.height)) differs")
            let strip = result.images[k]
            #expect(strip.pixels.count == 3 * 14 * strip.patchCount * 14)
            let expected = try ref.float32("\(name)/sub\(k)")
            let got = subsampleIndices(strip.pixels.count).map { strip.pixels[$0] }
            #expect(got.count == expected.count)
            worst = max(worst, zip(got, expected).reduce(0) { max($0, abs($1.0 - $1.1)) })
        }
        #expect(worst == 0, "\(name): max abs diff \(worst) after normalization")

        let placeholder = ImagePreprocessor.placeholderText(imageIndex: 0, grid: result.grid)
        #expect(placeholder == (try ref.string("\(name)/placeholder")))
    }

    /// Size arithmetic for many (w, h, max_slice_nums) without pixels: grid, source size, refine size.
    @Test func sizeTableMatchesReference() throws {
        let rows = try Reference("image-preprocess.safetensors").int64("sizes")
        #expect(rows.count % 9 == 0 && rows.count >= 9 * 100)
        for r in stride(from: 0, to: rows.count, by: 9) {
            let (w, h, m) = (rows[r], rows[r + 1], rows[r + 2])
            let grid = ImagePreprocessor.slicedGrid(width: w, height: h, maxSliceNums: m, scaleResolution: 448)
            let g = grid.map { [$0.columns, $0.rows] } ?? [0, 0]
            let size = (w: Double(w), h: Double(h))
            let src = ImagePreprocessor.bestResize(size, scaleResolution: 448, patchSize: 14, allowUpscale: grid == nil)
            let refine = grid.map { ImagePreprocessor.refineSize(size, grid: $0, scaleResolution: 448, patchSize: 14) } ?? (0, 0)
            #expect(g + [src.0, src.1, refine.0, refine.1] == Array(rows[(r + 3)..<(r + 9)]), "\(w)×\(h) max \(m)")
        }
    }

    @Test func ensureDivideUsesBankersRounding() throws {
        // round(2.5) = 2, round(3.5) = 4, round(0.5) = 0 (then max with the patch size).
        #expect(ImagePreprocessor.ensureDivide(35, 14) == 28)
        #expect(ImagePreprocessor.ensureDivide(49, 14) == 56)
        #expect(ImagePreprocessor.ensureDivide(21, 14) == 28)  // 1.5 -> 2
        #expect(ImagePreprocessor.ensureDivide(7, 14) == 14)   // 0.5 -> 0 -> max(0, 14)
        #expect(ImagePreprocessor.ensureDivide(5, 2) == 4)
        let table = try Reference("image-preprocess.safetensors").int64("ensure_divide")
        for r in stride(from: 0, to: table.count, by: 3) {
            #expect(ImagePreprocessor.ensureDivide(Double(table[r]), table[r + 1]) == table[r + 2])
        }
    }

    /// Naive twin of the grid search: enumerate candidates in the reference order, keep the first minimum.
    @Test func gridSearchTiesKeepTheFirstCandidate() {
        // Square images with 448² < area ≤ 2·448²: 1×2 and 2×1 tie, 1×2 comes first.
        #expect(ImagePreprocessor.slicedGrid(width: 512, height: 512, maxSliceNums: 9, scaleResolution: 448)
                == SliceGrid(columns: 1, rows: 2))
        #expect(ImagePreprocessor.slicedGrid(width: 448, height: 448, maxSliceNums: 9, scaleResolution: 448) == nil)
        #expect(ImagePreprocessor.slicedGrid(width: 600, height: 400, maxSliceNums: 1, scaleResolution: 448) == nil)
        for w in stride(from: 100, through: 3000, by: 97) {
            for h in stride(from: 100, through: 3000, by: 89) {
                #expect(ImagePreprocessor.slicedGrid(width: w, height: h, maxSliceNums: 9, scaleResolution: 448)
                        == naiveGrid(w, h, 9))
            }
        }
    }

    func naiveGrid(_ w: Int, _ h: Int, _ maxSlices: Int) -> SliceGrid? {
        let multiple = min(Int((Double(w * h) / Double(448 * 448)).rounded(.up)), maxSlices)
        guard multiple > 1 else { return nil }
        var candidates: [(Int, Int)] = []
        for n in (multiple - 1)...(multiple + 1) where n != 1 && n <= maxSlices {
            for m in 1...n where n % m == 0 { candidates.append((m, n / m)) }
        }
        let errors = candidates.map { abs(log(Double(w) / Double(h)) - log(Double($0.0) / Double($0.1))) }
        guard let best = errors.indices.min(by: { errors[$0] < errors[$1] }) else { return nil }  // first minimum
        return SliceGrid(columns: candidates[best].0, rows: candidates[best].1)
    }

    @Test func patchStripLayout() throws {
        // A 28×14 image (2 patches side by side) with distinct values per pixel and channel.
        var pixels = [UInt8](repeating: 0, count: 28 * 14 * 3)
        for i in pixels.indices { pixels[i] = UInt8(i % 251) }
        let image = try RGBImage(width: 28, height: 14, pixels: pixels)
        let strip = ImagePreprocessor().patchStrip(image)
        #expect(strip.tgtRows == 1 && strip.tgtCols == 2 && strip.pixels.count == 3 * 14 * 28)
        for c in 0..<3 {
            for ky in 0..<14 {
                for l in 0..<2 {
                    for kx in 0..<14 {
                        let v = Float(pixels[(ky * 28 + l * 14 + kx) * 3 + c])
                        #expect(strip.pixels[(c * 14 + ky) * 28 + l * 14 + kx] == (v / 255 - 0.5) / 0.5)
                    }
                }
            }
        }
    }

    @Test func placeholderText() {
        let unk = String(repeating: "<unk>", count: 64)
        #expect(ImagePreprocessor.placeholderText(imageIndex: 0, grid: nil)
                == "<image_id>0</image_id><image>\(unk)</image>")
        let cell = "<slice>\(unk)</slice>"
        #expect(ImagePreprocessor.placeholderText(imageIndex: 3, grid: SliceGrid(columns: 2, rows: 2))
                == "<image_id>3</image_id><image>\(unk)</image>\(cell)\(cell)\n\(cell)\(cell)")
        #expect(ImagePreprocessor.placeholderText(imageIndex: 0, grid: SliceGrid(columns: 1, rows: 3), queryNum: 1,
                                                  useImageID: false)
                == "<image><unk></image><slice><unk></slice>\n<slice><unk></slice>\n<slice><unk></slice>")
    }

    @Test func invalidConfigurationThrows() throws {
        let image = try decodeFixture("png-rgb.png")
        #expect(throws: ImageError.self) { try ImagePreprocessor(config: SliceConfig(maxSliceNums: 0)).preprocess(image) }
        #expect(throws: ImageError.self) { try RGBImage(width: 2, height: 2, pixels: [1, 2, 3]) }
    }
}
