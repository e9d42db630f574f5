import Foundation
import MiniCPMO

/// Finished conversations' KV caches, kept so that the next request that starts with the same inputs
/// (clients resend the whole history each turn) prefills only what is new. Least recently used
/// sessions are dropped first once their pages exceed the budget. Used by the scheduler's worker only.
final class PrefixCache {
    let model: Qwen2Model
    let pool: KVPagePool
    let budgetBytes: Int
    /// Least recently used first.
    private var sessions: [LanguageSession] = []

    init(model: Qwen2Model, pool: KVPagePool, budgetBytes: Int) {
        self.model = model
        self.pool = pool
        self.budgetBytes = budgetBytes
    }

    var count: Int { sessions.count }
    var bytes: Int { sessions.reduce(0) { $0 + Self.bytes(of: $1) } }

    static func bytes(of session: LanguageSession) -> Int { session.cache.blockTable.count * session.cache.pool.bytesPerPage }

    /// The cached session sharing the longest prefix with `prompt` (taken out of the cache while in
    /// use), or a fresh one when none shares any.
    func checkout(for prompt: Prompt) -> LanguageSession {
        var best: (index: Int, length: Int)?
        for (i, s) in sessions.enumerated() {
            let n = s.reusableLength(for: prompt)
            if n > 0, n > (best?.length ?? 0) { best = (i, n) }
        }
        if let best { return sessions.remove(at: best.index) }
        return LanguageSession(model: model, pool: pool)
    }

    /// Keeps a finished session as the most recently used, then evicts down to the budget.
    func checkin(_ session: LanguageSession) {
        guard session.cache.length > 0 else { return }
        sessions.append(session)
        var total = bytes
        while total > budgetBytes, !sessions.isEmpty {
            let old = sessions.removeFirst()
            total -= Self.bytes(of: old)
            old.reset()  // its pages go back to the pool
        }
    }

    func removeAll() {
        for s in sessions { s.reset() }
        sessions = []
    }
}

/// A few recently encoded images and recordings by content, so that a conversation resent with the
/// same picture does not run the encoder again.
final class MediaCache<Value> {
    let capacity: Int
    private var entries: [(key: UInt64, value: Value)] = []

    init(capacity: Int) { self.capacity = capacity }

    func value(for key: UInt64, make: () throws -> Value) rethrows -> Value {
        if let i = entries.firstIndex(where: { $0.key == key }) {
            let hit = entries.remove(at: i)
            entries.append(hit)
            return hit.value
        }
        let v = try make()
        entries.append((key, v))
        if entries.count > capacity { entries.removeFirst(entries.count - capacity) }
        return v
    }
}

/// A stable content key for media bytes (and the settings that change their encoding).
func contentKey(_ data: Data, salt: UInt64 = 0) -> UInt64 {
    var h = Hasher64()
    h.add(salt)
    data.withUnsafeBytes { h.add(bytes: $0) }  // no copy of a large upload
    return h.value
}
