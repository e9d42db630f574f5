import Foundation

/// The entries of a zip archive whose members are stored uncompressed, as `torch.save` writes them,
/// read in place from a memory map. Only the central directory is trusted for names and sizes (torch
/// sets the data-descriptor flag, so local headers carry zero sizes); every offset is checked against
/// the file before it is used, so a later read of an entry's bytes is always in bounds.
struct StoredZip {
    struct Entry {
        let name: String
        /// Offset of the member's bytes in the file, after its local header.
        let dataOffset: Int
        let size: Int
        let crc32: UInt32
    }

    let region: MappedRegion
    /// Entries by name, and their names in central-directory order.
    private(set) var entries: [String: Entry] = [:]
    private(set) var names: [String] = []

    /// Reads the central directory of `region` (`file` names the file in errors).
    init(region: MappedRegion, file: String) throws {
        self.region = region
        let r = ByteReader(base: UnsafeRawPointer(region.base), size: region.length, file: file)
        func bad(_ reason: String) -> TorchCheckpointError { .badZip(file: file, reason: reason) }

        let size = region.length
        guard size >= 22 else { throw bad("\(size) bytes, too short for a zip archive (truncated?)") }
        // The end record sits at the end, followed only by its comment (at most 65535 bytes).
        var eocd = -1
        var at = size - 22
        while at >= max(0, size - 22 - 0xFFFF) {
            if try r.u32(at) == 0x0605_4B50, at + 22 + Int(try r.u16(at + 20)) <= size { eocd = at; break }
            at -= 1
        }
        guard eocd >= 0 else { throw bad("no end-of-central-directory record (truncated or not a zip archive)") }
        var count = Int(try r.u16(eocd + 10))
        var cdSize = Int(try r.u32(eocd + 12))
        var cdOffset = Int(try r.u32(eocd + 16))
        // ZIP64: a locator right before the end record points at the 64-bit end record.
        if eocd >= 20, try r.u32(eocd - 20) == 0x0706_4B50 {
            let z = try r.offset(r.u64(eocd - 12), "ZIP64 end record offset")
            guard z <= eocd - 20 - 56, try r.u32(z) == 0x0606_4B50 else {
                throw bad("ZIP64 locator points at offset \(z), where there is no ZIP64 end record")
            }
            count = try r.offset(r.u64(z + 32), "ZIP64 entry count")
            cdSize = try r.offset(r.u64(z + 40), "ZIP64 central directory size")
            cdOffset = try r.offset(r.u64(z + 48), "ZIP64 central directory offset")
        }
        guard cdOffset <= size, cdSize <= size - cdOffset else {
            throw bad("central directory [\(cdOffset), +\(cdSize)) runs past the end of the \(size)-byte file (truncated?)")
        }
        // Each central header has at least 46 bytes, which bounds the entry count before any allocation.
        guard count <= cdSize / 46 else { throw bad("\(count) entries cannot fit a \(cdSize)-byte central directory") }

        var p = cdOffset
        let cdEnd = cdOffset + cdSize
        for _ in 0..<count {
            guard p + 46 <= cdEnd, try r.u32(p) == 0x0201_4B50 else {
                throw bad("bad central directory header at offset \(p)")
            }
            let flags = try r.u16(p + 8), method = try r.u16(p + 10), crc = try r.u32(p + 16)
            var csize = UInt64(try r.u32(p + 20)), usize = UInt64(try r.u32(p + 24))
            let nameLen = Int(try r.u16(p + 28)), extraLen = Int(try r.u16(p + 30)), commentLen = Int(try r.u16(p + 32))
            var local = UInt64(try r.u32(p + 42))
            let next = p + 46 + nameLen + extraLen + commentLen
            guard next <= cdEnd else { throw bad("central directory header at offset \(p) runs past the directory") }
            guard let name = String(validating: try r.bytes(p + 46, nameLen), as: UTF8.self) else {
                throw bad("entry name at offset \(p + 46) is not UTF-8")
            }
            // ZIP64 extra field: 64-bit values for exactly those fields saturated at 0xFFFFFFFF, in this order.
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = try r.u16(e), len = Int(try r.u16(e + 2))
                guard e + 4 + len <= extraEnd else { throw bad("entry '\(name)': extra field runs past its header") }
                if id == 0x0001 {
                    var q = e + 4
                    func take() throws -> UInt64 {
                        guard q + 8 <= e + 4 + len else { throw bad("entry '\(name)': short ZIP64 extra field") }
                        defer { q += 8 }
                        return try r.u64(q)
                    }
                    if usize == 0xFFFF_FFFF { usize = try take() }
                    if csize == 0xFFFF_FFFF { csize = try take() }
                    if local == 0xFFFF_FFFF { local = try take() }
                }
                e += 4 + len
            }
            guard flags & 1 == 0 else { throw bad("entry '\(name)' is encrypted") }
            guard method == 0 else {
                throw bad("entry '\(name)' is compressed (method \(method)); torch.save stores entries uncompressed")
            }
            guard csize == usize else { throw bad("entry '\(name)': stored sizes differ (\(csize) vs \(usize))") }
            let lo = try r.offset(local, "local header offset of '\(name)'")
            guard lo <= cdOffset - 30, try r.u32(lo) == 0x0403_4B50 else {
                throw bad("entry '\(name)': no local header at offset \(lo)")
            }
            let lNameLen = Int(try r.u16(lo + 26)), lExtraLen = Int(try r.u16(lo + 28))
            guard try r.bytes(lo + 30, lNameLen) == r.bytes(p + 46, nameLen) else {
                throw bad("entry '\(name)': local header names a different file")
            }
            let start = lo + 30 + lNameLen + lExtraLen
            let length = try r.offset(usize, "size of '\(name)'")
            guard start <= cdOffset, length <= cdOffset - start else {
                throw bad("entry '\(name)': \(length) bytes at offset \(start) run past the data area (truncated?)")
            }
            guard entries[name] == nil else { throw bad("duplicate entry '\(name)'") }
            entries[name] = Entry(name: name, dataOffset: start, size: length, crc32: crc)
            names.append(name)
            p = next
        }
    }

    /// The bytes of `entry`; valid while `region` lives.
    func bytes(_ entry: Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: UnsafeRawPointer(region.base) + entry.dataOffset, count: entry.size)
    }

    /// Whether `entry`'s bytes match the CRC-32 of its central header.
    func checksumMatches(_ entry: Entry) -> Bool { crc32(bytes(entry)) == entry.crc32 }
}

/// Bounds-checked little-endian reads from a mapped file.
struct ByteReader {
    let base: UnsafeRawPointer
    let size: Int
    let file: String

    private func check(_ at: Int, _ n: Int) throws {
        guard at >= 0, n >= 0, at <= size, n <= size - at else {
            throw TorchCheckpointError.badZip(file: file, reason: "read of \(n) bytes at offset \(at) runs past the end of the \(size)-byte file")
        }
    }
    func u16(_ at: Int) throws -> UInt16 { try check(at, 2); return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
    func u32(_ at: Int) throws -> UInt32 { try check(at, 4); return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    func u64(_ at: Int) throws -> UInt64 { try check(at, 8); return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
    func bytes(_ at: Int, _ n: Int) throws -> [UInt8] { try check(at, n); return Array(UnsafeRawBufferPointer(start: base + at, count: n)) }

    /// A 64-bit offset or size as an Int inside the file.
    func offset(_ v: UInt64, _ what: String) throws -> Int {
        guard v <= UInt64(size) else {
            throw TorchCheckpointError.badZip(file: file, reason: "\(what) \(v) exceeds the \(size)-byte file (truncated?)")
        }
        return Int(v)
    }
}

private let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

/// CRC-32 (IEEE, as zip uses it).
func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}
