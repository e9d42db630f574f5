import Foundation
import Kernels

/// Fixed-size pages of key/value vectors shared by many sequences. One page holds `pageSize` positions
/// of every layer's keys and values, so a sequence needs one block-table entry per page. Within a page,
/// a layer's keys are [kvHeads][pageSize][headDim] (then its values, alike): decode attention reads each
/// head's positions as one stream (about 1.45x faster than position-major rows at ~900 positions here).
public final class KVPagePool: @unchecked Sendable {
    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    public let pageSize: Int
    /// Upper bound on pages, nil for unbounded.
    public let maxPages: Int?

    private var pages: [UnsafeMutablePointer<Float>] = []
    private var free: [Int] = []
    private let lock = NSLock()

    public init(layers: Int, kvHeads: Int, headDim: Int, pageSize: Int = 32, maxPages: Int? = nil) {
        precondition(pageSize > 0)
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.pageSize = pageSize
        self.maxPages = maxPages
    }

    /// Floats per position per layer for keys (and for values): kvHeads × headDim.
    public var rowStride: Int { kvHeads * headDim }

    deinit { for p in pages { p.deallocate() } }

    var floatsPerPage: Int { layers * 2 * pageSize * rowStride }
    public var bytesPerPage: Int { floatsPerPage * 4 }
    public var allocatedPages: Int { lock.withLock { pages.count } }
    public var pagesInUse: Int { lock.withLock { pages.count - free.count } }

    func allocate() throws -> Int {
        try lock.withLock {
            if let p = free.popLast() { return p }
            if let maxPages, pages.count >= maxPages { throw KVCacheError.outOfPages(maxPages) }
            pages.append(UnsafeMutablePointer<Float>.allocate(capacity: floatsPerPage))
            return pages.count - 1
        }
    }

    func release(_ page: Int) { lock.withLock { free.append(page) } }

    @inline(__always)
    func keys(page: Int, layer: Int) -> UnsafeMutablePointer<Float> {
        lock.withLock { pages[page] } + layer * 2 * pageSize * rowStride
    }

    @inline(__always)
    func values(page: Int, layer: Int) -> UnsafeMutablePointer<Float> {
        keys(page: page, layer: layer) + pageSize * rowStride
    }
}

public enum KVCacheError: Error, CustomStringConvertible {
    case outOfPages(Int)
    public var description: String {
        switch self { case let .outOfPages(n): return "KV cache is full (\(n) pages)" }
    }
}

/// One sequence's cache: a block table into the pool and the number of cached positions.
/// The model appends to it; the runtime truncates it to reuse a common prefix.
public final class KVSequence: @unchecked Sendable {
    public let pool: KVPagePool
    public private(set) var blockTable: [Int] = []
    public private(set) var length: Int = 0

    public init(pool: KVPagePool) { self.pool = pool }

    deinit { for p in blockTable { pool.release(p) } }

    /// Makes room for `count` more positions and returns the range they occupy.
    public func extend(by count: Int) throws -> Range<Int> {
        let newLength = length + count
        while blockTable.count * pool.pageSize < newLength {
            blockTable.append(try pool.allocate())
        }
        defer { length = newLength }
        return length..<newLength
    }

    /// Forgets positions ≥ n and returns whole pages past them to the pool.
    public func truncate(to n: Int) {
        length = min(length, max(0, n))
        let keep = (length + pool.pageSize - 1) / pool.pageSize
        while blockTable.count > keep { pool.release(blockTable.removeLast()) }
    }

    public func keyRows(layer: Int) -> KVRows {
        KVRows(headMajorPages: blockTable.map { pool.keys(page: $0, layer: layer) }, pageSize: pool.pageSize, headDim: pool.headDim)
    }

    public func valueRows(layer: Int) -> KVRows {
        KVRows(headMajorPages: blockTable.map { pool.values(page: $0, layer: layer) }, pageSize: pool.pageSize, headDim: pool.headDim)
    }
}
