import Foundation

/// Qwen2's byte-level BPE tokenizer (also MiniCPM-o's), producing the same ids as Hugging Face
/// `tokenizers` for the same `tokenizer.json`.
///
/// Encoding runs the `tokenizers` pipeline: added tokens are cut out of the raw text first (so chat
/// markers typed by a user do become marker ids unless `allowSpecial` is false), each remaining span
/// is NFC-normalized (with Unicode 9.0 data, like `tokenizers`), split by Qwen2's regex, mapped to
/// GPT-2 byte characters and merged by BPE rank. Immutable after loading, so one instance can serve
/// any number of threads.
public final class Qwen2Tokenizer: Sendable {
    /// Base BPE vocabulary (byte-level spellings), without added tokens.
    let vocab: [String: Int]
    /// Byte-level spelling by id, for base ids only.
    let baseTokens: [String?]
    let addedTokens: [AddedToken]
    let addedByContent: [String: Int]
    let addedByID: [Int: AddedToken]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let model: BPEModel
    let normalizesNFC: Bool
    /// Decoded bytes of every id, flattened: id `i` is `tokenBytes[tokenOffsets[i]..<tokenOffsets[i + 1]]`.
    let tokenBytes: [UInt8]
    let tokenOffsets: [Int]
    let specialIDs: [Bool]

    /// One more than the largest id, added tokens included: the embedding rows the ids index.
    public let vocabularySize: Int

    /// Builds the tokenizer from its parts. `merges` are in rank order; `source` names the file(s)
    /// for error messages.
    init(vocab: [String: Int], merges: [(String, String)], addedTokens: [AddedToken],
         normalizesNFC: Bool, source: String) throws {
        self.vocab = vocab
        self.normalizesNFC = normalizesNFC

        var mergeTable = [UInt64: UInt64](minimumCapacity: merges.count)
        for (rank, (left, right)) in merges.enumerated() {
            guard let a = vocab[left], let b = vocab[right], let merged = vocab[left + right] else {
                throw TokenizerError.invalidMerge(path: source, merge: "\(left) \(right)")
            }
            // A repeated pair keeps its last rank, as `tokenizers` (it collects merges into a map).
            mergeTable[BPEModel.key(Int32(a), Int32(b))] = UInt64(rank) << 32 | UInt64(merged)
        }
        let byteIDs = ByteLevel.characters.map { Int32(vocab[String($0)] ?? -1) }
        model = BPEModel(merges: mergeTable, byteIDs: byteIDs)

        let (unique, byContent, byID) = deduplicated(addedTokens)
        self.addedTokens = unique
        addedByContent = byContent
        addedByID = byID
        rawMatcher = AddedTokenMatcher(unique.filter { !$0.normalized })
        normalizedMatcher = AddedTokenMatcher(unique.filter { $0.normalized })

        let size = max(vocab.values.max().map { $0 + 1 } ?? 0, unique.last.map { $0.id + 1 } ?? 0)
        vocabularySize = size
        var spellings = [String?](repeating: nil, count: size)
        for (token, id) in vocab where id >= 0 { spellings[id] = token }
        baseTokens = spellings

        var bytes = [UInt8](), offsets = [Int](), special = [Bool](repeating: false, count: size)
        bytes.reserveCapacity(size * 7)
        offsets.reserveCapacity(size + 1)
        for id in 0..<size {
            offsets.append(bytes.count)
            if let added = byID[id] {
                bytes += ByteLevel.decode(added.content)
                special[id] = added.special
            } else if let token = spellings[id] {
                bytes += ByteLevel.decode(token)
            }
        }
        offsets.append(bytes.count)
        tokenBytes = bytes
        tokenOffsets = offsets
        specialIDs = special
    }

    // MARK: - Lookup

    /// The id of a token given by its vocabulary spelling (byte-level characters, e.g. "Ġthe") or
    /// by an added token's content (e.g. "<|im_end|>").
    public func id(of token: String) -> Int? {
        addedByContent[token] ?? vocab[token]
    }

    /// The vocabulary spelling of `id` (see `id(of:)`); nil for unknown ids.
    public func token(of id: Int) -> String? {
        if let added = addedByID[id] { return added.content }
        guard id >= 0, id < baseTokens.count else { return nil }
        return baseTokens[id]
    }

    /// Whether `id` is a special added token (skipped by `decode(_:skipSpecial:)`).
    public func isSpecial(_ id: Int) -> Bool {
        id >= 0 && id < specialIDs.count && specialIDs[id]
    }

    /// The added tokens, by id.
    public var addedTokenList: [AddedToken] { addedTokens }

    // MARK: - Encoding

    /// Token ids of `text`. With `allowSpecial` false, special added tokens in `text` are encoded
    /// as ordinary text, which is what untrusted user input needs (non-special added tokens such as
    /// `<tool_call>` still match, as in `tokenizers`' `encode_special_tokens`).
    public func encode(_ text: String, allowSpecial: Bool = true) -> [Int] {
        var out = [Int]()
        out.reserveCapacity(text.utf8.count / 3 + 1)
        var cache = [ArraySlice<UInt8>: [Int]]()
        let utf8 = Array(text.utf8)
        if rawMatcher.isEmpty {
            encodeSpan(utf8[...], allowSpecial: allowSpecial, cache: &cache, into: &out)
            return out
        }
        utf8.withUnsafeBufferPointer { buffer in
            rawMatcher.split(buffer, allowSpecial: allowSpecial) { segment in
                switch segment {
                case .token(let id): out.append(id)
                case .text(let range): encodeSpan(utf8[range], allowSpecial: allowSpecial, cache: &cache, into: &out)
                }
            }
        }
        return out
    }

    /// Normalizes one span between raw added tokens, then splits out normalized added tokens.
    private func encodeSpan(_ span: ArraySlice<UInt8>, allowSpecial: Bool,
                            cache: inout [ArraySlice<UInt8>: [Int]], into out: inout [Int]) {
        var text = span
        if normalizesNFC, let normalized = NFC.normalize(span) { text = normalized }
        if normalizedMatcher.isEmpty {
            encodePieces(text, cache: &cache, into: &out)
            return
        }
        let owned = Array(text)
        owned.withUnsafeBufferPointer { buffer in
            normalizedMatcher.split(buffer, allowSpecial: allowSpecial) { segment in
                switch segment {
                case .token(let id): out.append(id)
                case .text(let range): encodePieces(owned[range], cache: &cache, into: &out)
                }
            }
        }
    }

    /// Pre-tokenizes normalized text and runs BPE on each piece, caching repeated pieces.
    private func encodePieces(_ text: ArraySlice<UInt8>, cache: inout [ArraySlice<UInt8>: [Int]],
                              into out: inout [Int]) {
        text.withUnsafeBufferPointer { buffer in
            let base = text.startIndex
            Qwen2PreTokenizer.split(buffer) { start, end in
                if end - start == 1 {
                    let id = model.byteIDs[Int(buffer[start])]
                    if id >= 0 { out.append(Int(id)) }
                    return
                }
                let key = text[(base + start)..<(base + end)]
                if let ids = cache[key] {
                    out += ids
                    return
                }
                var ids = [Int]()
                model.encode(UnsafeBufferPointer(rebasing: buffer[start..<end]), into: &ids)
                cache[key] = ids
                out += ids
            }
        }
    }

    // MARK: - Decoding

    /// The text of `ids`. Bytes that do not form valid UTF-8 become U+FFFD, as in `tokenizers`;
    /// unknown ids are ignored.
    public func decode(_ ids: [Int], skipSpecial: Bool = false) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(ids.count * 4)
        for id in ids { appendBytes(of: id, skipSpecial: skipSpecial, to: &bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the raw bytes `id` stands for (nothing for unknown ids or skipped special tokens).
    func appendBytes(of id: Int, skipSpecial: Bool, to bytes: inout [UInt8]) {
        guard id >= 0, id < vocabularySize, !(skipSpecial && specialIDs[id]) else { return }
        bytes += tokenBytes[tokenOffsets[id]..<tokenOffsets[id + 1]]
    }

    /// A decoder for ids arriving one at a time, e.g. from generation.
    public func streamingDecoder(skipSpecial: Bool = false) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecial: skipSpecial)
    }
}
