import Dispatch
import Foundation
import Synchronization

/// How many threads the kernels use. Decode is memory-bound and wants every core; tests may pin it.
public enum Threading {
    nonisolated(unsafe) private static var _count: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    public static var count: Int {
        get { _count }
        set { _count = max(1, newValue) }
    }
}

/// Runs `body(i)` for i in 0..<n on up to `Threading.count` threads.
///
/// A decode step is hundreds of short parallel kernels, so the pool's workers spin briefly between
/// jobs instead of sleeping: waking a sleeping thread costs tens of microseconds, a GEMV of a small
/// matrix not much more. Items are claimed one by one from a shared counter, so a core slowed by
/// other work takes fewer of them.
@inline(__always)
public func parallelFor(_ n: Int, _ body: (Int) -> Void) {
    if n <= 0 { return }
    let threads = Threading.count
    if n == 1 || threads == 1 {
        for i in 0..<n { body(i) }
        return
    }
    ThreadPool.shared(size: threads).run(n, body)
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

/// Rows of several matrices of one GEMV pass, cut for threads that claim parts in order: each part
/// takes a share of what is left (remaining ÷ 2·threads, at least `minimum` rows), so parts shrink
/// toward the end and the threads finish together. Equal parts leave one core idle for half a part
/// on average at the end of every pass. Bounds are multiples of `align` (except at an item's end).
public func guidedParts(_ rows: [Int], threads: Int, align: Int, minimum: Int) -> [(item: Int, rows: Range<Int>)] {
    if threads <= 1 { return rows.enumerated().filter { $0.element > 0 }.map { ($0.offset, 0..<$0.element) } }
    var out: [(item: Int, rows: Range<Int>)] = []
    var remaining = rows.reduce(0, +)
    let step = max(1, align), least = max(step, (minimum + step - 1) / step * step)
    var item = 0, at = 0
    while remaining > 0 {
        var size = max(least, (remaining / (2 * threads) + step - 1) / step * step)
        while size > 0 && item < rows.count {  // one part per item the share spans
            let take = min(size, rows[item] - at)
            if take > 0 { out.append((item, at..<(at + take))) }
            size -= take
            at += take
            remaining -= take
            // the next item's parts start on its own groups
            if at == rows[item] { item += 1; at = 0; size = (size + step - 1) / step * step }
        }
    }
    return out
}

/// The caller plus `size − 1` persistent workers. One job runs at a time; a job submitted while
/// another runs (another thread, or nested) falls back to Dispatch.
final class ThreadPool: @unchecked Sendable {
    let size: Int
    private let generation = Atomic<Int>(0)
    private let next = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let condition = NSCondition()
    // Written by the submitting thread before `generation` is bumped (release), read by workers after
    // they observe the bump (acquire).
    private var job: ((Int) -> Void)?
    private var count = 0

    /// How long a worker spins for the next job before it sleeps.
    static let spinSeconds = 0.002

    // Pools live for the process (a changed thread count makes a new one; idle workers sleep).
    nonisolated(unsafe) private static var pools: [Int: ThreadPool] = [:]
    private static let lock = NSLock()

    static func shared(size: Int) -> ThreadPool {
        lock.withLock {
            if let p = pools[size] { return p }
            let p = ThreadPool(size: size)
            pools[size] = p
            return p
        }
    }

    private init(size: Int) {
        self.size = size
        for w in 1..<size {
            let t = Thread { [unowned self] in self.work(w) }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    func run(_ n: Int, _ body: (Int) -> Void) {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            withoutActuallyEscaping(body) { b in
                DispatchQueue.concurrentPerform(iterations: n, execute: unsafeBitCast(b, to: (@Sendable (Int) -> Void).self))
            }
            return
        }
        withoutActuallyEscaping(body) { b in
            job = b
            count = n
            next.store(0, ordering: .relaxed)
            finished.store(0, ordering: .relaxed)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                condition.lock(); condition.broadcast(); condition.unlock()
            }
            claim(b, n)
            while finished.load(ordering: .acquiring) < size - 1 {}
            job = nil
        }
        busy.store(false, ordering: .releasing)
    }

    private func work(_ w: Int) {
        var seen = 0
        while true {
            var spins = 0
            var deadline: Date?
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins & 1023 == 0 {
                    let now = Date()
                    if deadline == nil { deadline = now.addingTimeInterval(Self.spinSeconds) }
                    if now > deadline! { sleep(until: seen); break }
                }
            }
            seen = generation.load(ordering: .acquiring)
            execute(w)
            finished.add(1, ordering: .releasing)
        }
    }

    /// Runs this worker's share of the job. A function of its own so that its reference to the
    /// job's closure is released before the caller is told the work is finished (the closure is
    /// only borrowed by `run`).
    @inline(never)
    private func execute(_ w: Int) {
        guard let b = job else { return }
        claim(b, count)
    }

    @inline(__always)
    private func claim(_ b: (Int) -> Void, _ n: Int) {
        while true {
            let i = next.add(1, ordering: .relaxed).oldValue
            if i >= n { return }
            b(i)
        }
    }

    private func sleep(until seen: Int) {
        condition.lock()
        sleepers.add(1, ordering: .sequentiallyConsistent)
        while generation.load(ordering: .sequentiallyConsistent) == seen { condition.wait() }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        condition.unlock()
    }
}
