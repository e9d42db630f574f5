import Foundation
import Testing
@testable import Media

@Suite struct DecodeTests {
    static let pngFiles = [
        "png-rgb.png", "png-gray.png", "png-gray-alpha.png", "png-rgba.png", "png-palette.png",
        "png-palette-trns.png", "png-palette-4bit.png", "png-rgb16.png", "png-rgba16.png", "png-gray16.png",
        "png-gray-1bit.png", "png-gray-2bit.png", "png-gray-4bit.png", "png-interlaced.png",
        "png-interlaced-rgba16.png", "png-rgb-trns.png", "png-odd-1x1.png", "png-odd-5x7.png",
        "chelsea.png", "coffee.png", "chelsea-small.png", "moon.png",
    ]

    @Test(arguments: pngFiles)
    func pngMatchesPillowExactly(_ name: String) throws {
        let ref = try Reference("image-decode.safetensors")
        let image = try decodeFixture(name)
        let mismatch = try compare(image, ref, name)
        #expect(mismatch == nil, "\(mismatch ?? "")")
    }

    static let jpegFiles = [
        "jpeg-color.jpg", "jpeg-color-422.jpg", "jpeg-color-444.jpg", "jpeg-gray.jpg", "jpeg-progressive.jpg",
        "jpeg-cmyk.jpg", "jpeg-odd-13x7.jpg",
    ] + (1...8).map { "jpeg-exif-\($0).jpg" }

    /// Debian's libjpeg-turbo 2.1 against Pillow 12's bundled 3.1: measured max diff 0 on every file,
    /// so the test asserts exact equality.
    @Test(arguments: jpegFiles)
    func jpegMatchesPillow(_ name: String) throws {
        let ref = try Reference("image-decode.safetensors")
        let image = try decodeFixture(name)
        #expect([image.height, image.width, 3] == (try ref.shape(name)))
        let diff = maxDiff(image.pixels, try ref.bytes(name))
        #expect(diff == 0, "\(name): max diff \(diff) vs Pillow")
    }

    @Test func exifOrientationCanBeTurnedOff() throws {
        let ref = try Reference("image-decode.safetensors")
        let raw = try decodeFixture("jpeg-exif-6.jpg", exif: false)
        #expect(raw.width == 32 && raw.height == 24)
        #expect(raw.pixels == (try ref.bytes("jpeg-exif-6.jpg#noexif")))
        let upright = try decodeFixture("jpeg-exif-6.jpg")
        #expect(upright.width == 24 && upright.height == 32)
    }

    @Test func exifOrientationParsing() throws {
        for o in 1...8 {
            let bytes = [UInt8](try Data(contentsOf: imageURL("jpeg-exif-\(o).jpg")))
            #expect(EXIF.orientation(inJPEG: bytes) == o)
        }
        #expect(EXIF.orientation(inJPEG: [UInt8](try Data(contentsOf: imageURL("jpeg-color.jpg")))) == nil)
        // Big-endian TIFF, orientation 3; then cut short at every length: never a crash.
        let tiff: [UInt8] = [0x4D, 0x4D, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 3, 0, 0]
        #expect(EXIF.tiffOrientation(tiff) == 3)
        for n in 0..<tiff.count { _ = EXIF.tiffOrientation(Array(tiff.prefix(n))) }
    }

    @Test func decodeFromDataSniffsTheFormat() throws {
        let data = try Data(contentsOf: imageURL("jpeg-color.jpg"))
        #expect(ImageDecoder.sniff([UInt8](data)) == .jpeg)
        let image = try ImageDecoder.decode(data: data)
        #expect(image.width == 64 && image.height == 48)
        #expect(ImageDecoder.sniff([UInt8](try Data(contentsOf: imageURL("png-rgb.png")))) == .png)
    }

    // MARK: - Bad input: always a clear ImageError

    static let badFiles: [(String, ImageError)] = [
        ("bad-empty.png", .empty),
        ("bad-garbage.bin", .unknownFormat(prefix: "")),
        ("bad-truncated.png", .truncated(format: "PNG")),
        ("bad-truncated.jpg", .truncated(format: "JPEG")),
        ("bad-header-only.png", .truncated(format: "PNG")),
        ("bad-zero-size.png", .zeroSize(format: "PNG", width: 0, height: 48)),
        ("bad-zero-size.jpg", .zeroSize(format: "JPEG", width: 64, height: 0)),
        ("bad-bomb.png", .tooLarge(width: 100000, height: 100000, maxPixels: ImageDecoder.defaultMaxPixels)),
        ("bad-bomb.jpg", .tooLarge(width: 65000, height: 65000, maxPixels: ImageDecoder.defaultMaxPixels)),
        ("bad-corrupt.png", .corrupt(format: "PNG", reason: "")),
    ]

    @Test(arguments: badFiles)
    func badFileGivesClearError(_ name: String, _ expected: ImageError) throws {
        do {
            _ = try decodeFixture(name)
            Issue.record("\(name) decoded without error")
        } catch let error as ImageError {
            switch (error, expected) {
            case (.unknownFormat, .unknownFormat), (.corrupt, .corrupt): break
            default: #expect(error == expected)
            }
            #expect(!error.description.isEmpty)
        }
    }

    @Test func missingFileIsAnIOError() {
        #expect(throws: ImageError.self) { try decodeFixture("no-such-file.png") }
    }

    /// The bomb is refused from the header: a tiny limit also refuses a normal image before decoding,
    /// and the C decoders enforce the same limit on their own.
    @Test func pixelLimitIsCheckedBeforeDecoding() throws {
        let data = try Data(contentsOf: imageURL("png-rgb.png"))
        #expect(throws: ImageError.tooLarge(width: 64, height: 48, maxPixels: 1000)) {
            try ImageDecoder(maxPixels: 1000).decode(data: data)
        }
        // The C decoders enforce the limit on their own too (nothing allocated, no pixels returned).
        for file in ["png-rgb.png", "jpeg-color.jpg"] {
            let bytes = [UInt8](try Data(contentsOf: imageURL(file)))
            let format: ImageDecoder.Format = file.hasSuffix("png") ? .png : .jpeg
            #expect(throws: ImageError.tooLarge(width: 64, height: 48, maxPixels: 1000)) {
                try ImageDecoder(maxPixels: 1000).decodePixels(bytes, format: format)
            }
        }
    }

    /// Every prefix of a valid PNG and JPEG, and byte flips in them, give an error or an image, never a crash.
    @Test func truncationAndCorruptionNeverCrash() throws {
        for file in ["png-interlaced.png", "png-palette-trns.png", "jpeg-progressive.jpg", "jpeg-color.jpg"] {
            let bytes = [UInt8](try Data(contentsOf: imageURL(file)))
            // Up to 16 bytes short only IEND / EOI may be missing, which decodes fine; shorter must fail.
            for n in stride(from: 0, to: bytes.count - 16, by: max(1, bytes.count / 97)) {
                #expect(throws: ImageError.self) { try ImageDecoder.decode(data: Data(bytes.prefix(n))) }
            }
            var rng = SeededRNG(seed: 42)
            for _ in 0..<40 {
                var copy = bytes
                for _ in 0..<4 { copy[Int(rng.next() % UInt64(copy.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1) }
                _ = try? ImageDecoder.decode(data: Data(copy))
            }
        }
    }
}
