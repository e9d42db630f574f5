import Foundation
import MiniCPMO

/// Finished conversations' KV caches, kept so that the next request that starts with the same inputs
/// (clients resend the whole history each turn; many chats open with the same system prompt) prefills
/// only what is new. A request gets a new session sharing the cached pages of the longest common prefix
/// (copy-on-write), so several at once can start from one cached prompt and the cached one stays for the
/// next. Least recently used sessions are dropped first once the pages they hold exceed the budget. Used
/// by the scheduler's worker only.
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
    /// The pages the kept sessions hold, each counted once however many share it.
    var bytes: Int { Set(sessions.flatMap(\.cache.blockTable)).count * pool.bytesPerPage }

    /// A session holding the longest cached prefix of `prompt` (shared pages), or a fresh one when no
    /// cached session shares any.
    func checkout(for prompt: Prompt) -> LanguageSession {
        var best: (index: Int, length: Int)?
        for (i, s) in sessions.enumerated() {
            let n = s.reusableLength(for: prompt)
            if n > 0, n > (best?.length ?? 0) { best = (i, n) }
        }
        guard let best else { return LanguageSession(model: model, pool: pool) }
        let source = sessions.remove(at: best.index)
        sessions.append(source)  // the most recently used
        return LanguageSession(sharing: source, length: best.length)
    }

    /// Keeps a finished session as the most recently used, in place of the kept ones it extends (their
    /// pages are its pages, but for the last one each, which goes back to the pool), then evicts down to
    /// the budget.
    func checkin(_ session: LanguageSession) {
        guard session.cache.length > 0 else { return }
        sessions.removeAll { old in
            guard old.isPrefix(of: session) else { return false }
            old.reset()
            return true
        }
        sessions.append(session)
        while bytes > budgetBytes, !sessions.isEmpty {
            sessions.removeFirst().reset()  // its pages go back to the pool unless another holds them
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
