import CZlib
import Foundation

/// Compresses with zlib into gzip format, to exercise the module's own decoder on every DEFLATE
/// block type (level 0 gives stored blocks, Z_FIXED fixed-Huffman ones, the default dynamic ones).
func gzipCompress(_ data: Data, level: Int32 = Z_DEFAULT_COMPRESSION, strategy: Int32 = Z_DEFAULT_STRATEGY) throws -> Data {
    struct GzipError: Error {}
    var stream = z_stream()
    guard deflateInit2_(&stream, level, Z_DEFLATED, 31, 8, strategy, zlibVersion(),
                        Int32(MemoryLayout<z_stream>.size)) == Z_OK else { throw GzipError() }
    defer { deflateEnd(&stream) }
    var input = [UInt8](data)
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 64)
    let status = input.withUnsafeMutableBufferPointer { inputBuffer in
        output.withUnsafeMutableBufferPointer { outputBuffer -> Int32 in
            stream.next_in = inputBuffer.baseAddress
            stream.avail_in = uInt(inputBuffer.count)
            stream.next_out = outputBuffer.baseAddress
            stream.avail_out = uInt(outputBuffer.count)
            return deflate(&stream, Z_FINISH)
        }
    }
    guard status == Z_STREAM_END else { throw GzipError() }
    return Data(output[0..<Int(stream.total_out)])
}
