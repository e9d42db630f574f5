/// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes.
    public let pixels: [UInt8]

    /// Throws `ImageError.invalidImage` unless both sizes are positive and `pixels` holds exactly
    /// `width * height * 3` bytes.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw ImageError.invalidImage(reason: "size \(width)×\(height) is not positive")
        }
        let (area, o1) = width.multipliedReportingOverflow(by: height)
        let (count, o2) = area.multipliedReportingOverflow(by: 3)
        guard !o1, !o2, pixels.count == count else {
            throw ImageError.invalidImage(reason: "\(pixels.count) bytes for \(width)×\(height) RGB")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// For internal producers that already guarantee the invariant.
    init(uncheckedWidth width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The sub-image `[x, x + width) × [y, y + height)`; throws if it leaves the image.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) throws -> RGBImage {
        guard x >= 0, y >= 0, w > 0, h > 0, x <= width - w, y <= height - h else {
            throw ImageError.invalidImage(reason: "crop \(w)×\(h) at (\(x), \(y)) outside \(width)×\(height)")
        }
        var out = [UInt8](repeating: 0, count: w * h * 3)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for row in 0..<h {
                    let s = ((y + row) * width + x) * 3
                    let d = row * w * 3
                    for i in 0..<(w * 3) { dst[d + i] = src[s + i] }
                }
            }
        }
        return RGBImage(uncheckedWidth: w, height: h, pixels: out)
    }

    /// Applies an EXIF orientation (1–8) so the result is upright, exactly like Pillow's
    /// `ImageOps.exif_transpose`. Values outside 2...8 return the image unchanged.
    public func applyingEXIFOrientation(_ orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return self }
        let (w, h) = (width, height)
        let swaps = orientation >= 5  // 5–8 swap width and height
        let ow = swaps ? h : w
        let oh = swaps ? w : h
        // Source pixel for output (x, y), per orientation (Pillow's transpose method in parentheses).
        let source: (Int, Int) -> (Int, Int)
        switch orientation {
        case 2: source = { x, y in (w - 1 - x, y) }              // FLIP_LEFT_RIGHT
        case 3: source = { x, y in (w - 1 - x, h - 1 - y) }      // ROTATE_180
        case 4: source = { x, y in (x, h - 1 - y) }              // FLIP_TOP_BOTTOM
        case 5: source = { x, y in (y, x) }                      // TRANSPOSE
        case 6: source = { x, y in (y, h - 1 - x) }              // ROTATE_270 (90° clockwise)
        case 7: source = { x, y in (w - 1 - y, h - 1 - x) }      // TRANSVERSE
        default: source = { x, y in (w - 1 - y, x) }             // 8: ROTATE_90 (counter-clockwise)
        }
        var out = [UInt8](repeating: 0, count: ow * oh * 3)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<oh {
                    for x in 0..<ow {
                        let (sx, sy) = source(x, y)
                        let s = (sy * w + sx) * 3
                        let d = (y * ow + x) * 3
                        dst[d] = src[s]
                        dst[d + 1] = src[s + 1]
                        dst[d + 2] = src[s + 2]
                    }
                }
            }
        }
        return RGBImage(uncheckedWidth: ow, height: oh, pixels: out)
    }
}
