import CZlib
import Foundation

/// gzip decompression through zlib, so tokenizer files may be stored compressed (`tokenizer.json.gz`).
public enum Gzip {
    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    public static func isCompressed(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
    }

    /// Decompresses every gzip member of `data`; corrupt or truncated input is an error.
    public static func decompress(_ data: Data) throws -> Data {
        var stream = z_stream()
        // windowBits 31 = a 32 KiB window + a gzip header. inflateInit2 is a C macro.
        guard inflateInit2_(&stream, 31, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Error(description: "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var input = [UInt8](data)
        var output = Data()
        output.reserveCapacity(data.count * 4)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        try input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            while true {
                let status = chunk.withUnsafeMutableBufferPointer { out -> Int32 in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(out.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                output.append(contentsOf: chunk[0..<(chunk.count - Int(stream.avail_out))])
                if status == Z_STREAM_END {
                    if stream.avail_in == 0 { return }
                    inflateReset(&stream)  // concatenated members
                    continue
                }
                guard status == Z_OK else {
                    throw Error(description: "gzip data is corrupt (zlib status \(status))")
                }
                if stream.avail_in == 0 && stream.avail_out != 0 {
                    throw Error(description: "gzip data is truncated")
                }
            }
        }
        return output
    }
}
