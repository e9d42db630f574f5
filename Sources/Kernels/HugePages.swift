import Foundation

#if os(Linux)
/// Anonymous memory backed by 2 MiB transparent huge pages where the system allows it (the kernel's
/// `transparent_hugepage` setting is `always` or `madvise`); large arrays read in full on every token
/// (quantized weights, the bandwidth probe) live here.
public enum HugePages {
    public static let size = 2 << 20

    /// The mapping's length: whole 4 KiB pages. A last partial 2 MiB stretch stays on 4 KiB pages (a huge
    /// page must lie wholly inside the mapping), so no memory is spent on rounding.
    static func rounded(_ bytes: Int) -> Int { (max(bytes, 1) + 4095) / 4096 * 4096 }

    /// A zero-filled, 2 MiB-aligned mapping of at least `bytes` (nil if the system refuses), to be
    /// released with `unmap(_:bytes:)`.
    public static func map(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let length = rounded(bytes)
        // Over-map by one huge page and trim, so the usable range starts on a 2 MiB boundary.
        guard let raw = mmap(nil, length + size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED else { return nil }
        let address = UInt(bitPattern: raw)
        let aligned = (address + UInt(size) - 1) / UInt(size) * UInt(size)
        let head = Int(aligned - address)
        if head > 0 { munmap(raw, head) }
        let tail = size - head
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(length))!, tail) }
        let p = UnsafeMutableRawPointer(bitPattern: aligned)!
        _ = madvise(p, length, Int32(MADV_HUGEPAGE))
        return p
    }

    public static func unmap(_ p: UnsafeMutableRawPointer, bytes: Int) { munmap(p, rounded(bytes)) }
}
#endif
