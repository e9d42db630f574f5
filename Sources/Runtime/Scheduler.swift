import Foundation
import MiniCPMO

/// What the front ends ask of whoever runs the model. Requests are queued in arrival order; the
/// serial scheduler runs one at a time on its own thread, and a batching scheduler can run several
/// in one step behind the same interface.
public protocol RequestScheduler: AnyObject, Sendable {
    var engine: Engine { get }
    /// Queues a generation; its events arrive on the submission's stream. `cancel()`, ending the
    /// stream's iteration or cancelling the task that iterates it cancels the request, queued or
    /// running. Throws `RuntimeError.queueFull` when too many requests wait, `.stopped` after
    /// `shutdown()`.
    func submit(_ job: ChatJob) throws -> Submission
    /// Runs other work with the engine, in turn with the generations (e.g. encoding a voice).
    func perform<T: Sendable>(_ work: @escaping @Sendable (Engine) throws -> T) async throws -> T
    var status: SchedulerStatus { get }
    /// Refuses new work and cancels what waits; the running request finishes.
    func shutdown()
}

public struct SchedulerStatus: Sendable {
    public var queued: Int
    public var running: Int
    public var maxQueue: Int
    /// Requests that ran to their end.
    public var completed: Int
    /// Requests cancelled, refused at shutdown or failed.
    public var cancelled: Int
}

/// A queued request: its events, and a way to call it off.
public struct Submission: Sendable {
    public let events: AsyncThrowingStream<ChatEvent, Error>
    let flag: CancellationFlag
    public func cancel() { flag.cancel() }
    public var isCancelled: Bool { flag.isCancelled }
}

/// One worker thread that owns the model's compute, fed first come, first served.
public final class SerialScheduler: RequestScheduler, @unchecked Sendable {
    public let engine: Engine
    public let maxQueue: Int
    private struct Work: QueuedWork {
        var flag: CancellationFlag
        /// Returns whether the work ran to its end (not cancelled, no error).
        var run: () -> Bool
        var giveUp: (Error) -> Void
        func abandon(_ error: Error) { giveUp(error) }
    }
    private let condition = NSCondition()
    private var queue: [Work] = []
    private var running = 0
    private var completed = 0
    private var cancelledCount = 0
    private var stopped = false
    private var thread: Thread?

    /// - maxQueue: requests that may wait while one runs; more are refused.
    public init(engine: Engine, maxQueue: Int = 64) {
        self.engine = engine
        self.maxQueue = max(0, maxQueue)
        // the thread keeps the scheduler alive until shutdown() ends its loop
        let thread = Thread { self.loop() }
        thread.name = "minicpmo-worker"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    public var status: SchedulerStatus {
        condition.withLock {
            SchedulerStatus(queued: queue.count, running: running, maxQueue: maxQueue, completed: completed, cancelled: cancelledCount)
        }
    }

    private func enqueue(_ work: Work) throws {
        try condition.withLock {
            if stopped { throw RuntimeError.stopped }
            if queue.count >= maxQueue && (running > 0 || !queue.isEmpty) { throw RuntimeError.queueFull(depth: queue.count) }
            queue.append(work)
            condition.signal()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopped { condition.wait() }
            if queue.isEmpty && stopped {
                condition.unlock()
                return
            }
            let work = queue.removeFirst()
            running += 1
            condition.unlock()
            var ended = false
            if work.flag.isCancelled { work.abandon(RuntimeError.cancelled) } else { ended = work.run() }
            condition.withLock {
                running -= 1
                if ended { completed += 1 } else { cancelledCount += 1 }
            }
        }
    }

    public func submit(_ job: ChatJob) throws -> Submission {
        let flag = CancellationFlag()
        let (stream, continuation) = AsyncThrowingStream<ChatEvent, Error>.makeStream(bufferingPolicy: .unbounded)
        continuation.onTermination = { _ in flag.cancel() }
        let engine = self.engine
        try enqueue(Work(flag: flag, run: { runWhole(engine, job, flag, continuation) }, giveUp: { continuation.finish(throwing: $0) }))
        return Submission(events: stream, flag: flag)
    }

    public func perform<T: Sendable>(_ work: @escaping @Sendable (Engine) throws -> T) async throws -> T {
        try await performQueued(engine, work) { try enqueue(Work(flag: $0, run: $1, giveUp: $2)) }
    }

    public func shutdown() {
        stopQueue(condition) {
            stopped = true
            defer { queue = [] }
            return queue
        }
    }
}

/// Work waiting in a scheduler's queue.
protocol QueuedWork {
    var flag: CancellationFlag { get }
    /// Tells whoever waits for it that it will not run.
    func abandon(_ error: Error)
}

/// Stops a scheduler: `stop` (run under the queue's lock) marks it stopped and hands back what waited,
/// which is then called off.
func stopQueue<W: QueuedWork>(_ condition: NSCondition, _ stop: () -> [W]) {
    let waiting = condition.withLock {
        defer { condition.broadcast() }
        return stop()
    }
    for w in waiting {
        w.flag.cancel()
        w.abandon(RuntimeError.stopped)
    }
}

/// A chat job run whole on the engine, its events on `continuation`: whether it ran to its end.
func runWhole(_ engine: Engine, _ job: ChatJob, _ flag: CancellationFlag,
              _ continuation: AsyncThrowingStream<ChatEvent, Error>.Continuation) -> Bool {
    do {
        _ = try engine.run(job, cancelled: { flag.isCancelled }, emit: { continuation.yield($0) })
        continuation.finish()
        return true
    } catch {
        continuation.finish(throwing: error)
        return false
    }
}

/// `perform` for a scheduler whose queue takes work as (flag, run — whether it ran to its end, abandon).
func performQueued<T: Sendable>(_ engine: Engine, _ work: @escaping @Sendable (Engine) throws -> T,
                                enqueue: (CancellationFlag, @escaping () -> Bool, @escaping (Error) -> Void) throws -> Void) async throws -> T {
    let flag = CancellationFlag()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
            do {
                try enqueue(flag, {
                    let r = Result { try work(engine) }
                    c.resume(with: r)
                    if case .success = r { return true } else { return false }
                }, { c.resume(throwing: $0) })
            } catch {
                c.resume(throwing: error)
            }
        }
    } onCancel: { flag.cancel() }
}
