/// Why a tokenizer could not be loaded. Every case names the file, because a model directory holds
/// several candidate files and "malformed JSON" alone does not say which one to fix.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file does not exist (or is not a regular file).
    case fileNotFound(path: String)
    /// The file exists but could not be read.
    case unreadable(path: String, reason: String)
    /// The file is not valid JSON, or its top level is not the expected kind of value.
    case malformedJSON(path: String, reason: String)
    /// A required field is absent or has the wrong type (`field` is a dotted path).
    case missingField(path: String, field: String)
    /// The file describes a tokenizer this implementation would not reproduce faithfully.
    case unsupported(path: String, reason: String)
    /// A merge refers to tokens that are not in the vocabulary, or is not two tokens.
    case invalidMerge(path: String, merge: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "tokenizer file not found: \(path)"
        case .unreadable(let path, let reason):
            return "cannot read tokenizer file \(path): \(reason)"
        case .malformedJSON(let path, let reason):
            return "malformed JSON in \(path): \(reason)"
        case .missingField(let path, let field):
            return "\(path): missing or invalid field '\(field)'"
        case .unsupported(let path, let reason):
            return "\(path): unsupported tokenizer: \(reason)"
        case .invalidMerge(let path, let merge):
            return "\(path): invalid merge '\(merge)'"
        }
    }
}
