import CImageCodecs
import Foundation

/// Decodes PNG and JPEG into `RGBImage`, matching Pillow's `Image.open(f).convert("RGB")`, which is
/// what the MiniCPM-V reference pipeline does:
/// - PNG: palette expanded, alpha and tRNS dropped (Pillow drops alpha, it does not composite),
///   gray replicated, 16-bit RGB reduced to its high byte, no gamma/ICC. One deliberate difference:
///   Pillow clips 16-bit grayscale to 255 (I;16 → RGB), which turns such images white; we keep the
///   high byte instead.
/// - JPEG: ISLOW DCT with fancy upsampling (Pillow's settings), CMYK/YCCK with Adobe polarity.
public struct ImageDecoder: Sendable {
    public enum Format: String, Sendable { case png = "PNG", jpeg = "JPEG" }

    /// Refuse images above this many pixels, decided from the header before allocating.
    public var maxPixels: Int
    /// Rotate/flip JPEGs by their EXIF orientation. The reference (Pillow `Image.open` +
    /// `convert("RGB")`) does NOT do this, but users expect upright photos, so it defaults to on;
    /// turn it off to reproduce the reference bit for bit on rotated phone photos.
    public var appliesEXIFOrientation: Bool

    public static let defaultMaxPixels = 64 * 1024 * 1024

    public init(maxPixels: Int = ImageDecoder.defaultMaxPixels, appliesEXIFOrientation: Bool = true) {
        self.maxPixels = maxPixels
        self.appliesEXIFOrientation = appliesEXIFOrientation
    }

    public static func decode(data: Data) throws -> RGBImage { try ImageDecoder().decode(data: data) }
    public static func decode(contentsOf url: URL) throws -> RGBImage { try ImageDecoder().decode(contentsOf: url) }

    public func decode(contentsOf url: URL) throws -> RGBImage {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .mappedIfSafe)
        } catch {
            throw ImageError.io(path: url.path, reason: (error as NSError).localizedDescription)
        }
        return try decode(data: data)
    }

    public func decode(data: Data) throws -> RGBImage {
        let bytes = [UInt8](data)
        guard !bytes.isEmpty else { throw ImageError.empty }
        guard let format = Self.sniff(bytes) else {
            throw ImageError.unknownFormat(prefix: bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " "))
        }
        // Our own header check first: gives precise errors and refuses bombs before libpng/libjpeg run.
        if let (w, h) = try Self.headerSize(bytes, format: format) {
            try checkSize(width: w, height: h, format: format)
        }
        var image = try decodePixels(bytes, format: format)
        if format == .jpeg, appliesEXIFOrientation, let orientation = EXIF.orientation(inJPEG: bytes) {
            image = image.applyingEXIFOrientation(orientation)
        }
        return image
    }

    /// The format from the magic bytes, or nil.
    public static func sniff(_ bytes: [UInt8]) -> Format? {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    private func checkSize(width: Int, height: Int, format: Format) throws {
        guard width > 0, height > 0 else {
            throw ImageError.zeroSize(format: format.rawValue, width: width, height: height)
        }
        guard width <= maxPixels / height else {
            throw ImageError.tooLarge(width: width, height: height, maxPixels: maxPixels)
        }
    }

    func decodePixels(_ bytes: [UInt8], format: Format) throws -> RGBImage {
        var result = cic_image()
        let limit = UInt64(max(0, maxPixels))
        let status = bytes.withUnsafeBufferPointer { buffer in
            format == .png
                ? cic_png_decode(buffer.baseAddress, buffer.count, limit, &result)
                : cic_jpeg_decode(buffer.baseAddress, buffer.count, limit, &result)
        }
        defer { cic_free(result.pixels) }
        let message = withUnsafeBytes(of: result.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let (w, h) = (Int(result.width), Int(result.height))
        switch status {
        case CIC_OK:
            guard let pixels = result.pixels, w > 0, h > 0 else {
                throw ImageError.corrupt(format: format.rawValue, reason: "decoder returned no pixels")
            }
            let out = Array(UnsafeBufferPointer(start: pixels, count: w * h * 3))
            return RGBImage(uncheckedWidth: w, height: h, pixels: out)
        case CIC_TRUNCATED: throw ImageError.truncated(format: format.rawValue)
        case CIC_TOO_LARGE: throw ImageError.tooLarge(width: w, height: h, maxPixels: maxPixels)
        case CIC_ZERO_SIZE: throw ImageError.zeroSize(format: format.rawValue, width: w, height: h)
        case CIC_UNSUPPORTED: throw ImageError.unsupported(format: format.rawValue, reason: message)
        case CIC_NO_MEMORY: throw ImageError.corrupt(format: format.rawValue, reason: "out of memory: \(message)")
        default: throw ImageError.corrupt(format: format.rawValue, reason: message.isEmpty ? "decoder error" : message)
        }
    }

    /// Width and height from the header (PNG IHDR, JPEG SOFn), or nil when the header is not found
    /// (the codec then reports the problem). Throws `.truncated` when the data stops inside it.
    static func headerSize(_ b: [UInt8], format: Format) throws -> (Int, Int)? {
        switch format {
        case .png:
            // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4).
            guard b.count >= 24 else { throw ImageError.truncated(format: "PNG") }
            guard b[12...15].elementsEqual("IHDR".utf8) else {
                throw ImageError.corrupt(format: "PNG", reason: "first chunk is not IHDR")
            }
            return (Int(be32(b, 16)), Int(be32(b, 20)))
        case .jpeg:
            var i = 2
            while i + 1 < b.count {
                guard b[i] == 0xFF else { i += 1; continue }  // tolerate junk between segments, like Pillow
                let marker = b[i + 1]
                if marker == 0xFF || marker == 0x00 { i += 1; continue }
                if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { i += 2; continue }
                if marker == 0xD9 || marker == 0xDA { return nil }  // EOI/SOS before any SOF
                guard i + 3 < b.count else { throw ImageError.truncated(format: "JPEG") }
                let length = Int(be16(b, i + 2))
                let isSOF = (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
                if isSOF {
                    guard i + 8 < b.count else { throw ImageError.truncated(format: "JPEG") }
                    return (Int(be16(b, i + 7)), Int(be16(b, i + 5)))
                }
                i += 2 + length
            }
            throw ImageError.truncated(format: "JPEG")
        }
    }
}

@inline(__always) func be16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
@inline(__always) func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
}

/// Just enough EXIF to read the orientation tag (0x0112) of IFD0 in the first APP1 "Exif" segment,
/// which is the one Pillow uses. Every read is bounds-checked; anything odd yields nil.
enum EXIF {
    static func orientation(inJPEG b: [UInt8]) -> Int? {
        var i = 2
        while i + 3 < b.count {
            guard b[i] == 0xFF else { i += 1; continue }
            let marker = b[i + 1]
            if marker == 0xFF || marker == 0x00 { i += 1; continue }
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { i += 2; continue }
            if marker == 0xDA || marker == 0xD9 { return nil }
            let length = Int(be16(b, i + 2))
            let start = i + 4, end = min(b.count, i + 2 + length)
            if marker == 0xE1, end - start >= 6, b[start..<(start + 6)].elementsEqual([0x45, 0x78, 0x69, 0x66, 0, 0]) {
                return tiffOrientation(Array(b[(start + 6)..<end]))
            }
            i += 2 + length
        }
        return nil
    }

    static func tiffOrientation(_ t: [UInt8]) -> Int? {
        guard t.count >= 8 else { return nil }
        let little: Bool
        switch (t[0], t[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return nil
        }
        func u16(_ o: Int) -> Int? {
            guard o >= 0, o + 2 <= t.count else { return nil }
            return little ? Int(t[o]) | Int(t[o + 1]) << 8 : Int(t[o]) << 8 | Int(t[o + 1])
        }
        func u32(_ o: Int) -> Int? {
            guard let lo = u16(little ? o : o + 2), let hi = u16(little ? o + 2 : o) else { return nil }
            return hi << 16 | lo
        }
        guard u16(2) == 42, let ifd = u32(4), let count = u16(ifd) else { return nil }
        for n in 0..<count {
            let entry = ifd + 2 + 12 * n
            guard let tag = u16(entry) else { return nil }
            if tag == 0x0112 {
                guard u16(entry + 2) == 3, let value = u16(entry + 8) else { return nil }  // SHORT
                return value
            }
        }
        return nil
    }
}
