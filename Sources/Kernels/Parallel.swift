import Dispatch
import Foundation

/// How many threads the kernels use. Decode is memory-bound and wants every core; tests may pin it.
public enum Threading {
    nonisolated(unsafe) private static var _count: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    public static var count: Int {
        get { _count }
        set { _count = max(1, newValue) }
    }
}

/// Runs `body(i)` for i in 0..<n on up to `Threading.count` threads.
/// The work items should be coarse: each call costs a few microseconds of dispatch.
@inline(__always)
public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    if n <= 0 { return }
    if n == 1 || Threading.count == 1 {
        for i in 0..<n { body(i) }
        return
    }
    // Kernels hand raw pointers to disjoint slices of their outputs to each iteration; that is safe
    // by construction but invisible to Sendable checking.
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: n, execute: unsafeBitCast(body, to: (@Sendable (Int) -> Void).self))
    }
}

/// Splits 0..<total into at most `parts` contiguous ranges whose bounds are multiples of `align`.
public func splitRange(_ total: Int, parts: Int, align: Int = 1) -> [Range<Int>] {
    let units = (total + align - 1) / align
    let p = max(1, min(parts, units))
    var out: [Range<Int>] = []
    out.reserveCapacity(p)
    for i in 0..<p {
        let lo = min(total, (units * i / p) * align)
        let hi = min(total, (units * (i + 1) / p) * align)
        if hi > lo { out.append(lo..<hi) }
    }
    return out
}
