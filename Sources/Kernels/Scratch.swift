import Foundation

/// Reusable memory for kernels' temporaries (attention scores, row tables). Allocating them afresh on
/// every call of a decode step costs page faults: the allocator hands freed pages back and the kernel
/// zeroes them again on the next touch. Buffers are taken from a shared stack, so concurrent callers
/// never share one.
enum Scratch {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var free: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []

    /// Runs `body` with at least `bytes` bytes (64-byte aligned) that no one else uses meanwhile.
    static func with<R>(bytes: Int, _ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
        var buffer = lock.withLock { free.popLast() }
        if let b = buffer, b.bytes < bytes {
            b.pointer.deallocate()
            buffer = nil
        }
        let b = buffer ?? {
            let size = max(bytes, 1 << 16)
            return (UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64), size)
        }()
        defer { lock.withLock { free.append(b) } }
        return try body(b.pointer)
    }
}
