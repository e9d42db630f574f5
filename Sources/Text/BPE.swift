/// Byte-level BPE over token ids. The merge order reproduces `tokenizers`' `Word::merge_all`
/// exactly (a heap of candidate pairs ordered by merge rank, then position), rather than the
/// textbook "merge every occurrence of the best pair" loop, which can differ on unusual merge lists.
struct BPEModel: Sendable {
    /// Merge table: key `left << 32 | right` (token ids), value `rank << 32 | mergedID`.
    let merges: [UInt64: UInt64]
    /// Token id of each single byte's byte-level character, or -1 when the vocabulary lacks it
    /// (that byte is then dropped, as `tokenizers` does without an unknown token).
    let byteIDs: [Int32]

    init(merges: [UInt64: UInt64], byteIDs: [Int32]) {
        self.merges = merges
        self.byteIDs = byteIDs
    }

    @inline(__always)
    static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    private struct Symbol {
        var id: Int32
        var prev: Int32
        var next: Int32
        var alive: Bool
    }

    private struct Candidate {
        var rank: Int32
        var pos: Int32
        var newID: Int32

        @inline(__always)
        func precedes(_ other: Candidate) -> Bool {
            rank != other.rank ? rank < other.rank : pos < other.pos
        }
    }

    /// Appends the token ids of one pre-tokenized piece (raw UTF-8 bytes) to `out`.
    func encode(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int]) {
        if piece.count == 1 {
            let id = byteIDs[Int(piece[0])]
            if id >= 0 { out.append(Int(id)) }
            return
        }
        var symbols = [Symbol]()
        symbols.reserveCapacity(piece.count)
        for b in piece {
            let id = byteIDs[Int(b)]
            guard id >= 0 else { continue }
            let index = Int32(symbols.count)
            symbols.append(Symbol(id: id, prev: index - 1, next: index + 1, alive: true))
        }
        guard !symbols.isEmpty else { return }
        symbols[symbols.count - 1].next = -1

        var heap = [Candidate]()
        heap.reserveCapacity(symbols.count)
        for i in 0..<(symbols.count - 1) {
            if let m = merges[Self.key(symbols[i].id, symbols[i + 1].id)] {
                push(&heap, Candidate(rank: Int32(truncatingIfNeeded: m >> 32), pos: Int32(i),
                                      newID: Int32(truncatingIfNeeded: m)))
            }
        }

        while let top = pop(&heap) {
            let pos = Int(top.pos)
            guard symbols[pos].alive, symbols[pos].next >= 0 else { continue }
            let nextPos = Int(symbols[pos].next)
            let right = symbols[nextPos]
            // Skip stale candidates: the pair at `pos` changed since this one was queued.
            guard let current = merges[Self.key(symbols[pos].id, right.id)],
                  Int32(truncatingIfNeeded: current) == top.newID else { continue }

            symbols[pos].id = top.newID
            symbols[pos].next = right.next
            symbols[nextPos].alive = false
            if right.next >= 0 { symbols[Int(right.next)].prev = Int32(pos) }

            let prev = symbols[pos].prev
            if prev >= 0, let m = merges[Self.key(symbols[Int(prev)].id, top.newID)] {
                push(&heap, Candidate(rank: Int32(truncatingIfNeeded: m >> 32), pos: prev,
                                      newID: Int32(truncatingIfNeeded: m)))
            }
            let next = symbols[pos].next
            if next >= 0, let m = merges[Self.key(top.newID, symbols[Int(next)].id)] {
                push(&heap, Candidate(rank: Int32(truncatingIfNeeded: m >> 32), pos: Int32(pos),
                                      newID: Int32(truncatingIfNeeded: m)))
            }
        }

        var i = 0
        while i >= 0 {
            out.append(Int(symbols[i].id))
            i = Int(symbols[i].next)
        }
    }

    // A plain binary min-heap; words are short, so this beats a generic priority queue.
    private func push(_ heap: inout [Candidate], _ item: Candidate) {
        heap.append(item)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private func pop(_ heap: inout [Candidate]) -> Candidate? {
        guard let last = heap.popLast() else { return nil }
        guard !heap.isEmpty else { return last }
        let top = heap[0]
        heap[0] = last
        var parent = 0
        let n = heap.count
        while true {
            let left = 2 * parent + 1
            guard left < n else { break }
            var best = left
            if left + 1 < n, heap[left + 1].precedes(heap[left]) { best = left + 1 }
            guard heap[best].precedes(heap[parent]) else { break }
            heap.swapAt(best, parent)
            parent = best
        }
        return top
    }
}
