import Foundation
import Testing
@testable import Media

@Suite struct ResizeTests {
    /// Every `name@WxH` entry of image-resize.safetensors: Pillow's BICUBIC output, bit for bit.
    @Test func matchesPillowBicubicExactly() throws {
        let ref = try Reference("image-resize.safetensors")
        let cases = Set(ref.keys.map { String($0.split(separator: "#")[0]) })
        #expect(cases.count >= 15)
        var inputs: [String: RGBImage] = [:]
        for key in cases.sorted() {
            let parts = key.split(separator: "@")
            let name = String(parts[0])
            let size = parts[1].split(separator: "x").compactMap { Int($0) }
            let input = try inputs[name] ?? decodeFixture(name)
            inputs[name] = input
            let out = try PillowResize.bicubic(input, width: size[0], height: size[1])
            let mismatch = try compare(out, ref, key)
            #expect(mismatch == nil, "\(mismatch ?? "")")
        }
    }

    @Test func sameSizeIsIdentityAndBadSizesThrow() throws {
        let image = try decodeFixture("png-rgb.png")
        #expect(try PillowResize.bicubic(image, width: 64, height: 48) == image)
        #expect(throws: ImageError.self) { try PillowResize.bicubic(image, width: 0, height: 10) }
        #expect(throws: ImageError.self) { try PillowResize.bicubic(image, width: 10, height: -1) }
    }

    /// Coefficients are normalised: each output's fixed-point taps sum to ~1.0 (2^22).
    @Test func coefficientsSumToOne() {
        for (inSize, outSize) in [(100, 7), (7, 100), (451, 448), (3000, 448), (1, 5)] {
            let c = PillowResize.coefficients(inSize: inSize, outSize: outSize)
            for i in 0..<outSize {
                let sum = (0..<c.count[i]).reduce(0) { $0 + Int(c.weights[i * c.taps + $1]) }
                #expect(abs(sum - (1 << 22)) <= c.count[i], "in \(inSize) out \(outSize) i \(i)")
                #expect(c.start[i] >= 0 && c.start[i] + c.count[i] <= inSize)
            }
        }
    }

    /// A 4000×3000 photo-sized image to the source size MiniCPM-V would use; timing is printed, not asserted
    /// (debug builds are much slower than release).
    @Test func largeResizeTiming() throws {
        let small = try decodeFixture("coffee.png")
        let big = try PillowResize.bicubic(small, width: 4000, height: 3000)
        let start = ContinuousClock.now
        let out = try PillowResize.bicubic(big, width: 518, height: 392)
        let elapsed = ContinuousClock.now - start
        let start2 = ContinuousClock.now
        let processed = try ImagePreprocessor().preprocess(big)
        let elapsed2 = ContinuousClock.now - start2
        print("resize 4000×3000 → 518×392: \(elapsed); full preprocess (grid \(processed.grid.map { "\($0)" } ?? "none"), "
              + "\(processed.images.count) images): \(elapsed2)")
        #expect(out.width == 518 && out.height == 392)
    }
}
