import Foundation

/// A BERT-style WordPiece tokenizer (ChatTTS's `BertTokenizerFast` in MiniCPM-o's TTS), producing
/// the same ids as Hugging Face `tokenizers` for the same `tokenizer.json`, without special tokens
/// added around the text (`add_special_tokens=False`).
///
/// Encoding runs the `tokenizers` pipeline: added tokens that are not `normalized` are cut out of
/// the raw text; each remaining span is normalized (BertNormalizer: clean_text, handle_chinese_chars,
/// strip_accents, lowercase, with `tokenizers`' own character tables); `normalized` added tokens
/// are cut out of that; the rest is split into words (BertPreTokenizer: whitespace and
/// punctuation) and each word becomes WordPiece pieces, or the unknown token. Immutable after
/// loading, so one instance can serve any number of threads.
public final class WordPieceTokenizer: Sendable {
    let model: WordPieceModel
    let normalizer: WordPieceNormalizer
    let preTokenizer: WordPiecePreTokenizer
    let decoder: WordPieceDecoder
    let vocab: [String: Int]
    let addedTokens: [AddedToken]
    let addedByContent: [String: Int]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    /// Text of every id (added token content, else vocabulary entry), flattened: id `i` is
    /// `tokenBytes[tokenOffsets[i]..<tokenOffsets[i + 1]]`; `known[i]` is false for ids with neither.
    let tokenBytes: [UInt8]
    let tokenOffsets: [Int]
    let known: [Bool]
    /// Whether the text of an id is the content of a special added token (skipped when decoding
    /// with `skipSpecial`; `tokenizers` decides by content, not by id).
    let skipped: [Bool]

    /// One more than the largest id, added tokens included: the embedding rows the ids index.
    public let vocabSize: Int
    /// The id of the unknown token (`model.unk_token`), which stands for words WordPiece cannot spell.
    public let unknownTokenID: Int
    /// `model.continuing_subword_prefix` ("##").
    public let continuingSubwordPrefix: String
    /// `model.max_input_chars_per_word`: longer words become the unknown token.
    public let maxInputCharsPerWord: Int

    init(vocab: [String: Int], unknownToken: String, prefix: String, maxInputCharsPerWord: Int,
         normalizer: WordPieceNormalizer, preTokenizer: WordPiecePreTokenizer, decoder: WordPieceDecoder,
         addedTokens: [AddedToken], addedTokenNormalizer: WordPieceNormalizer? = nil, source: String) throws {
        guard let unknownID = vocab[unknownToken] else {
            throw TokenizerError.missingField(path: source, field: "model.vocab[\"\(unknownToken)\"] (the unk_token)")
        }
        self.vocab = vocab
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.decoder = decoder
        unknownTokenID = unknownID
        continuingSubwordPrefix = prefix
        self.maxInputCharsPerWord = maxInputCharsPerWord
        model = WordPieceModel(vocab: vocab, prefix: prefix, unknownID: unknownID,
                               maxInputCharsPerWord: maxInputCharsPerWord)

        let (unique, byContent, _) = deduplicated(addedTokens)
        self.addedTokens = unique
        addedByContent = byContent
        rawMatcher = AddedTokenMatcher(unique.filter { !$0.normalized })
        // `normalized` tokens match the normalized text, so they are looked for in their
        // normalized spelling ("[Sbreak]" as "[sbreak]" under a lowercasing normalizer) — by the
        // normalizer they were added under, which a later replacement of it does not change
        let spelling = addedTokenNormalizer ?? normalizer
        normalizedMatcher = AddedTokenMatcher(unique.filter(\.normalized).map { token in
            var token = token
            token.content = String(decoding: spelling.normalize(Array(token.content.utf8)[...]), as: UTF8.self)
            return token
        })

        let size = max(vocab.values.max().map { $0 + 1 } ?? 0, unique.last.map { $0.id + 1 } ?? 0)
        vocabSize = size
        var spellings = [String?](repeating: nil, count: size)
        for (token, id) in vocab { spellings[id] = token }
        for token in unique { spellings[token.id] = token.content }
        let specialContents = Set(unique.filter(\.special).map(\.content))
        var bytes = [UInt8](), offsets = [Int](), known = [Bool](), skipped = [Bool]()
        offsets.reserveCapacity(size + 1)
        known.reserveCapacity(size)
        skipped.reserveCapacity(size)
        for spelling in spellings {
            offsets.append(bytes.count)
            if let spelling { bytes += spelling.utf8 }
            known.append(spelling != nil)
            skipped.append(spelling.map(specialContents.contains) ?? false)
        }
        offsets.append(bytes.count)
        tokenBytes = bytes
        tokenOffsets = offsets
        self.known = known
        self.skipped = skipped
    }

    // MARK: - Lookup

    /// The id of a vocabulary entry (e.g. "##ing") or of an added token's content (e.g. "[Stts]").
    public func id(of token: String) -> Int? {
        addedByContent[token] ?? vocab[token]
    }

    /// The vocabulary entry or added token content of `id`; nil for unknown ids.
    public func token(of id: Int) -> String? {
        guard id >= 0, id < vocabSize, known[id] else { return nil }
        return String(decoding: tokenBytes[tokenOffsets[id]..<tokenOffsets[id + 1]], as: UTF8.self)
    }

    /// Whether `id` spells a special added token (skipped by `decode(_:skipSpecial: true)`).
    public func isSpecial(_ id: Int) -> Bool {
        id >= 0 && id < vocabSize && skipped[id]
    }

    /// The added tokens, by id.
    public var addedTokenList: [AddedToken] { addedTokens }

    // MARK: - Encoding

    /// Token ids of `text`, without special tokens added around it (`add_special_tokens=False`).
    /// Added tokens written in the text do become their ids; with `allowSpecial` false, special
    /// ones are encoded as ordinary text instead (`tokenizers`' `encode_special_tokens`).
    public func encode(_ text: String, allowSpecial: Bool = true) -> [Int] {
        var out = [Int]()
        out.reserveCapacity(text.utf8.count / 2 + 1)
        let utf8 = Array(text.utf8)
        if rawMatcher.isEmpty {
            encodeSpan(utf8[...], allowSpecial: allowSpecial, into: &out)
            return out
        }
        utf8.withUnsafeBufferPointer { buffer in
            rawMatcher.split(buffer, allowSpecial: allowSpecial) { segment in
                switch segment {
                case .token(let id): out.append(id)
                case .text(let range): encodeSpan(utf8[range], allowSpecial: allowSpecial, into: &out)
                }
            }
        }
        return out
    }

    /// Normalizes one span between raw added tokens, then splits out normalized added tokens.
    private func encodeSpan(_ span: ArraySlice<UInt8>, allowSpecial: Bool, into out: inout [Int]) {
        let text = normalizer.normalize(span)
        text.withUnsafeBufferPointer { buffer in
            if normalizedMatcher.isEmpty {
                encodeWords(buffer, into: &out)
                return
            }
            normalizedMatcher.split(buffer, allowSpecial: allowSpecial) { segment in
                switch segment {
                case .token(let id): out.append(id)
                case .text(let range): encodeWords(UnsafeBufferPointer(rebasing: buffer[range]), into: &out)
                }
            }
        }
    }

    private func encodeWords(_ text: UnsafeBufferPointer<UInt8>, into out: inout [Int]) {
        preTokenizer.split(text) { start, end in
            model.encode(UnsafeBufferPointer(rebasing: text[start..<end]), into: &out)
        }
    }

    /// `text` after the normalizer alone (`normalizer.normalize_str` in `tokenizers`).
    public func normalize(_ text: String) -> String {
        String(decoding: normalizer.normalize(Array(text.utf8)[...]), as: UTF8.self)
    }

    /// The words the pre-tokenizer alone makes of `text` (`pre_tokenizer.pre_tokenize_str`).
    public func preTokenize(_ text: String) -> [String] {
        let utf8 = Array(text.utf8)
        var words = [String]()
        utf8.withUnsafeBufferPointer { buffer in
            preTokenizer.split(buffer) { start, end in
                words.append(String(decoding: buffer[start..<end], as: UTF8.self))
            }
        }
        return words
    }

    // MARK: - Decoding

    /// The text of `ids`, as `tokenizers`' `decode`: unknown ids are ignored, special added tokens
    /// dropped when `skipSpecial`, and the rest joined by the file's decoder. With
    /// `cleanUpTokenizationSpaces`, the whole text then goes through `transformers`'
    /// `clean_up_tokenization` as well ("i ' m" becomes "i'm"), which is what a `transformers`
    /// `BertTokenizerFast.decode` returns when its `clean_up_tokenization_spaces` is true (its
    /// default).
    public func decode(_ ids: [Int], skipSpecial: Bool = false, cleanUpTokenizationSpaces: Bool = false) -> String {
        var out = [UInt8]()
        out.reserveCapacity(ids.count * 4)
        var piece = [UInt8]()
        var first = true
        for id in ids {
            guard id >= 0, id < vocabSize, known[id], !(skipSpecial && skipped[id]) else { continue }
            let bytes = tokenBytes[tokenOffsets[id]..<tokenOffsets[id + 1]]
            switch decoder {
            case .none:
                if !first { out.append(0x20) }
                out += bytes
            case let .wordPiece(prefix, cleanup):
                piece.removeAll(keepingCapacity: true)
                if first {
                    piece += bytes
                } else if bytes.starts(with: prefix.utf8) {
                    piece += bytes.dropFirst(prefix.utf8.count)
                } else {
                    piece.append(0x20)
                    piece += bytes
                }
                if cleanup { Self.replace(Self.wordPieceCleanup, in: &piece) }
                out += piece
            }
            first = false
        }
        if cleanUpTokenizationSpaces { Self.replace(Self.transformersCleanup, in: &out) }
        return String(decoding: out, as: UTF8.self)
    }

    /// `tokenizers`' `decoders::wordpiece::cleanup`, applied to each piece.
    static let wordPieceCleanup: [([UInt8], [UInt8])] = [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
        (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ].map { (Array($0.0.utf8), Array($0.1.utf8)) }

    /// `transformers`' `PreTrainedTokenizerBase.clean_up_tokenization`, applied to the whole text.
    static let transformersCleanup: [([UInt8], [UInt8])] = [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
        (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ].map { (Array($0.0.utf8), Array($0.1.utf8)) }

    /// Each replacement in turn over all of `text`, left to right without overlaps (Rust's
    /// `str::replace`, Python's `str.replace`). Every pattern starts with a space.
    static func replace(_ rules: [([UInt8], [UInt8])], in piece: inout [UInt8]) {
        guard piece.contains(0x20) else { return }
        for (pattern, replacement) in rules {
            guard piece.count >= pattern.count else { continue }
            var result = [UInt8]()
            var i = 0
            var changed = false
            while i < piece.count {
                if piece[i] == pattern[0], i + pattern.count <= piece.count,
                   piece[i..<(i + pattern.count)].elementsEqual(pattern) {
                    result += replacement
                    i += pattern.count
                    changed = true
                } else {
                    result.append(piece[i])
                    i += 1
                }
            }
            if changed { piece = result }
        }
    }
}

/// How a WordPiece tokenizer joins ids back into text (`decoder` of `tokenizer.json`).
enum WordPieceDecoder: Sendable, Equatable {
    /// `tokenizers`' WordPiece decoder: pieces after the first lose `prefix` when they start with
    /// it and get a leading space otherwise; `cleanup` removes spaces before punctuation and
    /// contractions, piece by piece.
    case wordPiece(prefix: String, cleanup: Bool)
    /// No decoder: pieces joined with spaces.
    case none
}

// MARK: - Loading

extension WordPieceTokenizer {
    /// Loads from a model directory holding `tokenizer.json` (or `tokenizer.json.gz`) and, when there
    /// is one, `tokenizer_config.json`, read as `transformers`' BertTokenizerFast reads it: its
    /// `do_lower_case`, `strip_accents` and `tokenize_chinese_chars` (defaults true, null, true)
    /// replace a BertNormalizer's settings whenever any of them differs.
    public convenience init(directory: URL) throws {
        let plain = directory.appendingPathComponent("tokenizer.json")
        let compressed = directory.appendingPathComponent("tokenizer.json.gz")
        let url = FileManager.default.fileExists(atPath: plain.path) || !FileManager.default.fileExists(atPath: compressed.path)
            ? plain : compressed
        let root = try jsonObject(readFile(url), source: url.path)
        var normalizer: Any? = root["normalizer"]
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: configURL.path) {
            let config = try jsonObject(readFile(configURL), source: configURL.path)
            normalizer = try bertNormalizer(root["normalizer"], configuredBy: config, source: configURL.path)
        }
        try self.init(tokenizerJSONRoot: root, normalizer: normalizer, source: url.path)
    }

    /// Loads a Hugging Face `tokenizer.json` whose model is WordPiece (plain or gzip-compressed).
    public convenience init(tokenizerJSON url: URL) throws {
        try self.init(tokenizerJSONData: readFile(url), source: url.path)
    }

    /// Parses `tokenizer.json` contents (plain or gzip-compressed); `source` names the file in errors.
    public convenience init(tokenizerJSONData data: Data, source: String = "tokenizer.json") throws {
        let root = try jsonObject(data, source: source)
        try self.init(tokenizerJSONRoot: root, normalizer: root["normalizer"], source: source)
    }

    /// `normalizer` replaces the file's for the text (BertTokenizerFast's configuration); added
    /// tokens keep the spelling the file's own normalizer gives them, as in `tokenizers`.
    convenience init(tokenizerJSONRoot root: [String: Any], normalizer: Any?, source: String) throws {
        let model = try tokenizerModel(root, type: "WordPiece", source: source)
        if model["type"] == nil, model["merges"] != nil {
            throw TokenizerError.unsupported(path: source, reason: "model with merges (BPE), not WordPiece")
        }
        let vocab = try vocabulary(model["vocab"], source: source, field: "model.vocab")
        let unknown = try optional(model, "unk_token", as: String.self, source: source, field: "model.unk_token") ?? "[UNK]"
        let prefix = try optional(model, "continuing_subword_prefix", as: String.self, source: source,
                                  field: "model.continuing_subword_prefix") ?? "##"
        let maxChars = try optional(model, "max_input_chars_per_word", as: Int.self, source: source,
                                    field: "model.max_input_chars_per_word") ?? 100
        guard maxChars >= 0 else {
            throw TokenizerError.missingField(path: source, field: "model.max_input_chars_per_word")
        }

        var added = [AddedToken]()
        if let list = root["added_tokens"], !(list is NSNull) {
            guard let entries = list as? [Any] else {
                throw TokenizerError.missingField(path: source, field: "added_tokens")
            }
            for (i, entry) in entries.enumerated() {
                guard let object = entry as? [String: Any], let id = object["id"] as? Int, id >= 0 else {
                    throw TokenizerError.missingField(path: source, field: "added_tokens[\(i)].id")
                }
                added.append(try addedToken(object, id: id, source: source, field: "added_tokens[\(i)]"))
            }
        }
        try self.init(vocab: vocab, unknownToken: unknown, prefix: prefix, maxInputCharsPerWord: maxChars,
                      normalizer: WordPieceNormalizer(steps: parseNormalizer(normalizer, source: source, field: "normalizer")),
                      preTokenizer: parsePreTokenizer(root["pre_tokenizer"], source: source),
                      decoder: parseDecoder(root["decoder"], source: source),
                      addedTokens: added,
                      addedTokenNormalizer: WordPieceNormalizer(steps: parseNormalizer(root["normalizer"], source: source, field: "normalizer")),
                      source: source)
    }
}

/// BertTokenizerFast's rule: the config's flags (or their defaults) replace the normalizer's when any
/// differs; other normalizers are left alone.
private func bertNormalizer(_ normalizer: Any?, configuredBy config: [String: Any], source: String) throws -> Any? {
    guard var state = normalizer as? [String: Any], state["type"] as? String == "BertNormalizer" else { return normalizer }
    let lower = try optional(config, "do_lower_case", as: Bool.self, source: source, field: "do_lower_case") ?? true
    let strip = try optional(config, "strip_accents", as: Bool.self, source: source, field: "strip_accents")
    let chinese = try optional(config, "tokenize_chinese_chars", as: Bool.self, source: source, field: "tokenize_chinese_chars") ?? true
    func bool(_ key: String) -> Bool? { state[key] as? Bool }
    let current = (lower: bool("lowercase") ?? lower, strip: state.keys.contains("strip_accents") ? bool("strip_accents") : strip,
                   chinese: bool("handle_chinese_chars") ?? chinese)
    guard current.lower != lower || current.strip != strip || current.chinese != chinese else { return normalizer }
    state["lowercase"] = lower
    state["strip_accents"] = strip.map { $0 as Any } ?? NSNull()
    state["handle_chinese_chars"] = chinese
    return state
}

/// `object[key]` as a `T`; nil when absent or null, an error when of another type.
private func optional<T>(_ object: [String: Any], _ key: String, as: T.Type, source: String, field: String) throws -> T? {
    guard let value = object[key], !(value is NSNull) else { return nil }
    guard let typed = value as? T else { throw TokenizerError.missingField(path: source, field: field) }
    return typed
}

/// The normalizer as steps; anything the Swift side would not reproduce exactly is an error.
private func parseNormalizer(_ value: Any?, source: String, field: String) throws -> [WordPieceNormalizerStep] {
    guard let value, !(value is NSNull) else { return [] }
    guard let object = value as? [String: Any], let type = object["type"] as? String else {
        throw TokenizerError.missingField(path: source, field: "\(field).type")
    }
    switch type {
    case "BertNormalizer":
        let flag = { (key: String, fallback: Bool) throws -> Bool in
            try optional(object, key, as: Bool.self, source: source, field: "\(field).\(key)") ?? fallback
        }
        let lowercase = try flag("lowercase", true)
        return [.bert(cleanText: try flag("clean_text", true), chineseChars: try flag("handle_chinese_chars", true),
                      // null means "strip accents when lowercasing", as in the original BERT.
                      stripAccents: try flag("strip_accents", lowercase), lowercase: lowercase)]
    case "Lowercase":
        return [.lowercase]
    case "StripAccents":
        return [.stripAccents]
    case "NFD":
        return [.nfd]
    case "NFC":
        return [.nfc]
    case "Sequence":
        guard let list = object["normalizers"] as? [Any] else {
            throw TokenizerError.missingField(path: source, field: "\(field).normalizers")
        }
        var steps = [WordPieceNormalizerStep]()
        for (i, item) in list.enumerated() {
            steps += try parseNormalizer(item, source: source, field: "\(field).normalizers[\(i)]")
        }
        return steps
    default:
        throw TokenizerError.unsupported(
            path: source,
            reason: "normalizer '\(type)' (supported: BertNormalizer, Lowercase, StripAccents, NFD, NFC, Sequence)")
    }
}

private func parsePreTokenizer(_ value: Any?, source: String) throws -> WordPiecePreTokenizer {
    var result = WordPiecePreTokenizer(splitsOnWhitespace: false, isolatesPunctuation: false)
    guard let value, !(value is NSNull) else { return result }
    func add(_ value: Any, field: String) throws {
        guard let object = value as? [String: Any], let type = object["type"] as? String else {
            throw TokenizerError.missingField(path: source, field: "\(field).type")
        }
        switch type {
        case "BertPreTokenizer":
            result.splitsOnWhitespace = true
            result.isolatesPunctuation = true
        case "WhitespaceSplit":
            result.splitsOnWhitespace = true
        case "Punctuation":
            let behavior = try optional(object, "behavior", as: String.self, source: source, field: "\(field).behavior")
            guard (behavior ?? "Isolated").lowercased() == "isolated" else {
                throw TokenizerError.unsupported(path: source, reason: "Punctuation pre_tokenizer with behavior '\(behavior!)'")
            }
            result.isolatesPunctuation = true
        case "Sequence":
            guard let list = object["pretokenizers"] as? [Any] else {
                throw TokenizerError.missingField(path: source, field: "\(field).pretokenizers")
            }
            // Splitting on whitespace and isolating punctuation commute, so order does not matter.
            for (i, item) in list.enumerated() { try add(item, field: "\(field).pretokenizers[\(i)]") }
        default:
            throw TokenizerError.unsupported(
                path: source,
                reason: "pre_tokenizer '\(type)' (supported: BertPreTokenizer, WhitespaceSplit, Punctuation, Sequence)")
        }
    }
    try add(value, field: "pre_tokenizer")
    return result
}

private func parseDecoder(_ value: Any?, source: String) throws -> WordPieceDecoder {
    guard let value, !(value is NSNull) else { return .none }
    guard let object = value as? [String: Any], let type = object["type"] as? String else {
        throw TokenizerError.missingField(path: source, field: "decoder.type")
    }
    guard type == "WordPiece" else {
        throw TokenizerError.unsupported(path: source, reason: "decoder '\(type)' (only WordPiece is supported)")
    }
    return .wordPiece(
        prefix: try optional(object, "prefix", as: String.self, source: source, field: "decoder.prefix") ?? "##",
        cleanup: try optional(object, "cleanup", as: Bool.self, source: source, field: "decoder.cleanup") ?? true)
}
