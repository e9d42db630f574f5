import Foundation

/// Everything that can go wrong between bytes on disk and model-ready pixels. Decoding never traps:
/// malformed input always ends up as one of these.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The data is empty (0 bytes).
    case empty
    /// Neither PNG nor JPEG magic bytes; `prefix` is the first bytes in hex, for the message.
    case unknownFormat(prefix: String)
    /// The data ends before the image does.
    case truncated(format: String)
    /// The codec rejected the data.
    case corrupt(format: String, reason: String)
    /// The header declares a zero width or height.
    case zeroSize(format: String, width: Int, height: Int)
    /// The header declares more pixels than allowed (checked before any pixel buffer is allocated).
    case tooLarge(width: Int, height: Int, maxPixels: Int)
    /// A valid file in a layout this decoder does not handle.
    case unsupported(format: String, reason: String)
    /// Reading the file failed.
    case io(path: String, reason: String)
    /// Pixel buffer and dimensions disagree, or a size is not positive.
    case invalidImage(reason: String)
    /// A preprocessing parameter is out of range.
    case invalidConfiguration(reason: String)

    public var description: String {
        switch self {
        case .empty:
            return "image data is empty"
        case .unknownFormat(let prefix):
            return "unknown image format (not PNG or JPEG; first bytes: \(prefix.isEmpty ? "none" : prefix))"
        case .truncated(let format):
            return "\(format) data is truncated (the file ends before the image does)"
        case .corrupt(let format, let reason):
            return "corrupt \(format) data: \(reason)"
        case .zeroSize(let format, let width, let height):
            return "\(format) header declares an empty image (\(width)×\(height))"
        case .tooLarge(let width, let height, let maxPixels):
            return "image is \(width)×\(height) = \(width * height) pixels, above the limit of \(maxPixels) "
                + "(possible decompression bomb)"
        case .unsupported(let format, let reason):
            return "unsupported \(format): \(reason)"
        case .io(let path, let reason):
            return "cannot read image file \(path): \(reason)"
        case .invalidImage(let reason):
            return "invalid image: \(reason)"
        case .invalidConfiguration(let reason):
            return "invalid preprocessing configuration: \(reason)"
        }
    }
}
