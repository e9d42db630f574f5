import Foundation
import MiniCPMO
import Runtime
import Synchronization
import Testing
import TestSupport

/// The batching scheduler by the work it does: answers advance together, a long prompt goes in between
/// the others' tokens, cancelled answers leave the batch, and each answer equals the one served alone.
@Suite struct BatchSchedulerTests {
    static func job(_ text: String, maxTokens: Int) -> ChatJob {
        ChatJob(messages: [ChatInput(role: .user, parts: [.text(text)])],
                options: GenerationOptions(sampling: .greedy, maxTokens: maxTokens))
    }

    /// Runs a submission to its end: its text, or the error it ended with.
    static func collect(_ s: Submission, onText: @escaping @Sendable () -> Void = {}) async -> Result<String, Error> {
        do {
            var text = ""
            for try await event in s.events {
                if case let .text(t) = event { text += t; onText() }
            }
            return .success(text)
        } catch { return .failure(error) }
    }

    @Test func concurrentAnswersAdvanceTogetherAndEqualTheServedAlone() async throws {
        let engine = try Engine(model: TestServer.model, contextLength: 2048, cacheBytes: 0)
        let serial = SerialScheduler(engine: engine)
        defer { serial.shutdown() }
        let prompts = (0..<8).map { "Request \($0): " + String(repeating: "word\($0) ", count: 1 + $0 * 5) }
        var alone: [String] = []
        for p in prompts { alone.append(try await Self.collect(try serial.submit(Self.job(p, maxTokens: 24))).get()) }
        let batch = BatchScheduler(engine: engine, maxBatch: 8)
        defer { batch.shutdown() }
        let subs = try prompts.map { try batch.submit(Self.job($0, maxTokens: 24)) }
        var together: [String] = []
        for s in subs { together.append(try await Self.collect(s).get()) }
        #expect(together == alone)
        #expect(batch.largestBatch >= 4, "largest batch \(batch.largestBatch)")
        // 8 answers of 24 tokens in far fewer steps than 8 × 24
        #expect(batch.batchedSteps < 8 * 24 / 2, "\(batch.batchedSteps) steps")
        #expect(batch.status.completed == 8 && batch.status.running == 0)
    }

    /// A long prompt joining mid-stream goes in one chunk per step: the running answer keeps getting
    /// tokens while it does.
    @Test func aLongPromptDoesNotFreezeTheOthers() async throws {
        let engine = try Engine(model: TestServer.model, contextLength: 4096, cacheBytes: 0)
        let batch = BatchScheduler(engine: engine, maxBatch: 8, prefillBudget: 64)
        defer { batch.shutdown() }
        let order = EventOrder()
        let short = try batch.submit(Self.job("Tell me a long story.", maxTokens: 200))
        let shortTask = Task { await Self.collect(short) { order.append("s") } }
        while order.all.count < 2 { try await Task.sleep(for: .milliseconds(2)) }
        let long = try batch.submit(Self.job(String(repeating: "many words here ", count: 400), maxTokens: 4))
        let longTask = Task { await Self.collect(long) { order.append("L") } }
        _ = try await longTask.value.get()
        _ = try await shortTask.value.get()
        let seq = order.all
        let firstLong = try #require(seq.firstIndex(of: "L"))
        // ~1600 prompt tokens in chunks of 64: the short answer got a token at (nearly) every one of ~25 steps
        let between = seq[2..<firstLong].filter { $0 == "s" }.count
        #expect(between >= 15, "\(between) tokens of the running answer while the long prompt went in")
    }

    /// A KV pool too small for every answer at once: the newest are set aside and recomputed later, and
    /// every answer is still the one served alone.
    @Test func aFullKVPoolPreemptsAndRecomputes() async throws {
        let prompts = (0..<4).map { "Preempt \($0): " + String(repeating: "token\($0) ", count: 2 + $0 * 3) }
        let roomy = SerialScheduler(engine: try Engine(model: TestServer.model, contextLength: 2048, cacheBytes: 0))
        defer { roomy.shutdown() }
        var alone: [String] = []
        for p in prompts { alone.append(try await Self.collect(try roomy.submit(Self.job(p, maxTokens: 80))).get()) }
        // each answer needs 3–5 pages of 32 positions; 9 pages hold about two of them
        let engine = try Engine(model: TestServer.model, contextLength: 2048, cacheBytes: 0, kvPages: 9)
        let batch = BatchScheduler(engine: engine, maxBatch: 4)
        defer { batch.shutdown() }
        let subs = try prompts.map { try batch.submit(Self.job($0, maxTokens: 80)) }
        var together: [String] = []
        for s in subs { together.append(try await Self.collect(s).get()) }
        #expect(together == alone)
        #expect(batch.preemptions > 0)
        #expect(batch.status.completed == 4)
        #expect(engine.cacheStats.kvPagesInUse == 0)
    }

    @Test func aCancelledAnswerLeavesTheBatch() async throws {
        let engine = try Engine(model: TestServer.model, contextLength: 8192, cacheBytes: 0)
        let batch = BatchScheduler(engine: engine, maxBatch: 4)
        defer { batch.shutdown() }
        let a = try batch.submit(Self.job("First.", maxTokens: 6000)), b = try batch.submit(Self.job("Second.", maxTokens: 30))
        let aTask = Task { await Self.collect(a) }
        // both are in the batch (seen from the scheduler, not from a consumer that may lag): call one off.
        // A thread of its own watches, so the call comes within a step or two even while other tests keep
        // the cooperative pool busy (a sleeping task could wake after the 6000 tokens are all out).
        let called = Mutex(false)
        Thread.detachNewThread {
            while batch.batchedSteps < 3 { usleep(200) }
            a.cancel()
            called.withLock { $0 = true }
        }
        let bText = try await Self.collect(b).get()
        let aResult = await aTask.value
        #expect(called.withLock { $0 })
        #expect(!bText.isEmpty)
        guard case let .failure(e) = aResult else { Issue.record("the cancelled answer finished"); return }
        #expect(e as? RuntimeError == .cancelled)
        for _ in 0..<200 where batch.status.running > 0 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(batch.status.running == 0 && batch.status.cancelled == 1 && batch.status.completed == 1)
        #expect(engine.cacheStats.kvPagesInUse == 0)
    }
}

/// Events in the order they came, from any thread.
final class EventOrder: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}
