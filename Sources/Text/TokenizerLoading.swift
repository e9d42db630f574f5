import Foundation

// Loading from the two layouts checkpoints ship: a `tokenizers` `tokenizer.json`, or the older
// `vocab.json` + `merges.txt` pair with added tokens in `tokenizer_config.json` / `added_tokens.json`.
// Any of these files may be gzip-compressed (`tokenizer.json.gz`...): test fixtures are stored so.
extension Qwen2Tokenizer {
    /// Loads from a model directory: `tokenizer.json` (or `.json.gz`) when present, else
    /// `vocab.json` + `merges.txt` (each possibly `.gz`).
    public convenience init(directory: URL) throws {
        func find(_ name: String) -> URL? {
            for candidate in [name, name + ".gz"] {
                let url = directory.appendingPathComponent(candidate)
                if FileManager.default.fileExists(atPath: url.path) { return url }
            }
            return nil
        }
        if let json = find("tokenizer.json") {
            try self.init(tokenizerJSON: json)
            return
        }
        try self.init(vocabJSON: find("vocab.json") ?? directory.appendingPathComponent("vocab.json"),
                      merges: find("merges.txt") ?? directory.appendingPathComponent("merges.txt"),
                      addedTokens: find("added_tokens.json"),
                      tokenizerConfig: find("tokenizer_config.json"))
    }

    /// Loads a Hugging Face `tokenizer.json` (plain or gzip-compressed).
    public convenience init(tokenizerJSON url: URL) throws {
        try self.init(tokenizerJSONData: readFile(url), source: url.path)
    }

    /// Parses `tokenizer.json` contents (plain or gzip-compressed); `source` names the file in errors.
    public convenience init(tokenizerJSONData data: Data, source: String = "tokenizer.json") throws {
        let root = try jsonObject(data, source: source)
        let model = try tokenizerModel(root, type: "BPE", source: source)
        for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let affix = model[field] as? String, !affix.isEmpty {
                throw TokenizerError.unsupported(path: source, reason: "model.\(field) '\(affix)'")
            }
        }
        let vocab = try vocabulary(model["vocab"], source: source, field: "model.vocab")
        guard let rawMerges = model["merges"] as? [Any] else {
            throw TokenizerError.missingField(path: source, field: "model.merges")
        }
        var merges = [(String, String)]()
        merges.reserveCapacity(rawMerges.count)
        for entry in rawMerges {
            // Older files write "a b"; tokenizers >= 0.20 writes ["a", "b"].
            if let string = entry as? String {
                merges.append(try splitMerge(string, source: source))
            } else if let pair = entry as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String {
                merges.append((a, b))
            } else {
                throw TokenizerError.invalidMerge(path: source, merge: "\(entry)")
            }
        }
        let normalizesNFC = try checkNormalizer(root["normalizer"], source: source)
        try checkPreTokenizer(root["pre_tokenizer"], source: source)

        var added = [AddedToken]()
        if let list = root["added_tokens"], !(list is NSNull) {
            guard let entries = list as? [Any] else {
                throw TokenizerError.missingField(path: source, field: "added_tokens")
            }
            for (i, entry) in entries.enumerated() {
                guard let object = entry as? [String: Any], let id = object["id"] as? Int else {
                    throw TokenizerError.missingField(path: source, field: "added_tokens[\(i)].id")
                }
                added.append(try addedToken(object, id: id, source: source, field: "added_tokens[\(i)]"))
            }
        }
        try self.init(vocab: vocab, merges: merges, addedTokens: added, normalizesNFC: normalizesNFC, source: source)
    }

    /// Loads the `vocab.json` + `merges.txt` layout. Added tokens come from `tokenizer_config.json`'s
    /// `added_tokens_decoder` and from `added_tokens.json` (taken as special unless the config says
    /// otherwise). NFC normalization is applied, as in Qwen2's slow tokenizer.
    public convenience init(vocabJSON: URL, merges: URL, addedTokens: URL? = nil, tokenizerConfig: URL? = nil) throws {
        try self.init(vocabJSONData: readFile(vocabJSON), mergesData: readFile(merges),
                      addedTokensData: try addedTokens.map(readFile), tokenizerConfigData: try tokenizerConfig.map(readFile),
                      sources: (vocabJSON.path, merges.path, addedTokens?.path ?? "added_tokens.json",
                                tokenizerConfig?.path ?? "tokenizer_config.json"))
    }

    /// Parses the `vocab.json` + `merges.txt` layout from memory (each plain or gzip-compressed).
    public convenience init(vocabJSONData: Data, mergesData: Data, addedTokensData: Data? = nil,
                            tokenizerConfigData: Data? = nil,
                            sources: (vocab: String, merges: String, addedTokens: String, tokenizerConfig: String)
                                = ("vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json")) throws {
        let vocab = try vocabulary(jsonObject(vocabJSONData, source: sources.vocab), source: sources.vocab, field: "(top level)")
        var merges = [(String, String)]()
        for var line in try decompressed(mergesData, source: sources.merges).split(separator: 0x0A) {
            if line.last == 0x0D { line = line.dropLast() }
            let string = String(decoding: line, as: UTF8.self)
            if string.isEmpty || string.hasPrefix("#version") { continue }
            merges.append(try splitMerge(string, source: sources.merges))
        }

        var byID = [Int: AddedToken]()
        if let data = addedTokensData {
            let object = try jsonObject(data, source: sources.addedTokens)
            for (content, value) in object {
                guard let id = value as? Int else {
                    throw TokenizerError.missingField(path: sources.addedTokens, field: content)
                }
                byID[id] = AddedToken(id: id, content: content, special: true, normalized: false)
            }
        }
        if let data = tokenizerConfigData {
            let config = try jsonObject(data, source: sources.tokenizerConfig)
            if let decoder = config["added_tokens_decoder"] as? [String: Any] {
                for (key, value) in decoder {
                    guard let id = Int(key), let object = value as? [String: Any] else {
                        throw TokenizerError.missingField(path: sources.tokenizerConfig, field: "added_tokens_decoder.\(key)")
                    }
                    byID[id] = try addedToken(object, id: id, source: sources.tokenizerConfig,
                                              field: "added_tokens_decoder.\(key)")
                }
            }
        }
        try self.init(vocab: vocab, merges: merges, addedTokens: byID.values.sorted { $0.id < $1.id },
                      normalizesNFC: true, source: sources.merges)
    }
}

// MARK: - Helpers

func readFile(_ url: URL) throws -> Data {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue else {
        throw TokenizerError.fileNotFound(path: url.path)
    }
    do {
        return try Data(contentsOf: url)
    } catch {
        throw TokenizerError.unreadable(path: url.path, reason: "\(error)")
    }
}

private func decompressed(_ data: Data, source: String) throws -> Data {
    guard Gzip.isCompressed(data) else { return data }
    do {
        return try Gzip.decompress(data)
    } catch {
        throw TokenizerError.unreadable(path: source, reason: "\(error)")
    }
}

func jsonObject(_ data: Data, source: String) throws -> [String: Any] {
    let data = try decompressed(data, source: source)
    let value: Any
    do {
        value = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    } catch {
        throw TokenizerError.malformedJSON(path: source, reason: "\(error.localizedDescription)")
    }
    guard let object = value as? [String: Any] else {
        throw TokenizerError.malformedJSON(path: source, reason: "top level is not an object")
    }
    return object
}

func vocabulary(_ value: Any?, source: String, field: String) throws -> [String: Int] {
    guard let object = value as? [String: Any] else {
        throw TokenizerError.missingField(path: source, field: field)
    }
    var vocab = [String: Int](minimumCapacity: object.count)
    for (token, id) in object {
        guard let id = id as? Int, id >= 0 else {
            throw TokenizerError.missingField(path: source, field: "\(field).\(token)")
        }
        vocab[token] = id
    }
    return vocab
}

private func splitMerge(_ merge: String, source: String) throws -> (String, String) {
    let parts = merge.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
        throw TokenizerError.invalidMerge(path: source, merge: merge)
    }
    return (String(parts[0]), String(parts[1]))
}

/// `tokenizer.json`'s `model` object, refused unless its `type` (when given) is `type`.
func tokenizerModel(_ root: [String: Any], type: String, source: String) throws -> [String: Any] {
    guard let model = root["model"] as? [String: Any] else {
        throw TokenizerError.missingField(path: source, field: "model")
    }
    if let found = model["type"], (found as? String) != type {
        throw TokenizerError.unsupported(path: source, reason: "model type '\(found)' (only \(type) is supported)")
    }
    return model
}

func addedToken(_ object: [String: Any], id: Int, source: String, field: String) throws -> AddedToken {
    guard let content = object["content"] as? String else {
        throw TokenizerError.missingField(path: source, field: "\(field).content")
    }
    let special = object["special"] as? Bool ?? false
    return AddedToken(id: id, content: content, special: special,
                      lstrip: object["lstrip"] as? Bool ?? false, rstrip: object["rstrip"] as? Bool ?? false,
                      singleWord: object["single_word"] as? Bool ?? false,
                      normalized: object["normalized"] as? Bool ?? !special)
}

/// Qwen2 uses NFC; no normalizer is fine too. Anything else would silently change ids.
private func checkNormalizer(_ value: Any?, source: String) throws -> Bool {
    guard let value, !(value is NSNull) else { return false }
    guard let object = value as? [String: Any], let type = object["type"] as? String else {
        throw TokenizerError.missingField(path: source, field: "normalizer.type")
    }
    if type == "NFC" { return true }
    if type == "Sequence", let list = object["normalizers"] as? [Any] {
        var nfc = false
        for item in list { nfc = try checkNormalizer(item, source: source) || nfc }
        return nfc
    }
    throw TokenizerError.unsupported(path: source, reason: "normalizer '\(type)' (only NFC is supported)")
}

/// The pre-tokenizer must be Qwen2's: its Split regex (the scanner implements exactly that pattern)
/// followed by a ByteLevel step that does not apply GPT-2's own regex.
private func checkPreTokenizer(_ value: Any?, source: String) throws {
    guard let object = value as? [String: Any], let type = object["type"] as? String else {
        throw TokenizerError.missingField(path: source, field: "pre_tokenizer")
    }
    let steps = type == "Sequence" ? (object["pretokenizers"] as? [[String: Any]] ?? []) : [object]
    var sawSplit = false
    for step in steps {
        switch step["type"] as? String {
        case "Split":
            let pattern = (step["pattern"] as? [String: Any])?["Regex"] as? String
            guard pattern == Qwen2PreTokenizer.pattern else {
                throw TokenizerError.unsupported(path: source, reason: "pre_tokenizer split pattern \(pattern ?? "(none)") is not Qwen2's")
            }
            guard step["behavior"] as? String ?? "Isolated" == "Isolated", !(step["invert"] as? Bool ?? false) else {
                throw TokenizerError.unsupported(path: source, reason: "pre_tokenizer split behavior other than Isolated")
            }
            sawSplit = true
        case "ByteLevel":
            if step["use_regex"] as? Bool ?? true {
                throw TokenizerError.unsupported(path: source, reason: "ByteLevel pre_tokenizer with use_regex (GPT-2 splitting)")
            }
            if step["add_prefix_space"] as? Bool ?? false {
                throw TokenizerError.unsupported(path: source, reason: "ByteLevel pre_tokenizer with add_prefix_space")
            }
        default:
            throw TokenizerError.unsupported(path: source, reason: "pre_tokenizer '\(step["type"] ?? "?")'")
        }
    }
    if !sawSplit {
        throw TokenizerError.unsupported(path: source, reason: "pre_tokenizer without Qwen2's Split regex")
    }
}
