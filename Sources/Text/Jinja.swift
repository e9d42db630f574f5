import Foundation

/// The part of Jinja that chat templates of the ChatML family use, rendered as `transformers`'
/// apply_chat_template renders them (trim_blocks and lstrip_blocks on): text, `{{ }}`, `{% if %}`
/// / `elif` / `else`, `{% for %}` with `loop`, `{% set %}`, `{# #}`, `-` whitespace control;
/// literals, `.attr` and `[key]`, `+ - * / % ~`, comparisons, `in`, `and or not`, `is [not]
/// defined/none/string/…`, filters (`tojson`, `trim`, `length`, `lower`, `upper`, `string`), string
/// methods and `raise_exception`.
public struct JinjaTemplate: Sendable {
    let nodes: [Node]

    public init(_ source: String) throws {
        var parser = Parser(tokens: try lex(source))
        nodes = try parser.nodes(until: [])
    }

    public func render(_ context: [String: JValue]) throws -> String {
        var scope = Scope(vars: context)
        var out = ""
        try run(nodes, &scope, &out)
        return out
    }
}

public enum JinjaError: Error, CustomStringConvertible {
    case syntax(String)
    case raised(String)
    case type(String)
    public var description: String {
        switch self {
        case let .syntax(s): return "chat template: \(s)"
        case let .raised(s): return "chat template: \(s)"
        case let .type(s): return "chat template: \(s)"
        }
    }
}

/// A template value.
public indirect enum JValue: Sendable, Equatable {
    case undefined, none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JValue])
    /// Keys in insertion order (tojson keeps it).
    case object([String], [String: JValue])

    public static func object(_ pairs: [(String, JValue)]) -> JValue {
        .object(pairs.map(\.0), Dictionary(pairs, uniquingKeysWith: { $1 }))
    }

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .object(k, _): return !k.isEmpty
        }
    }

    /// As `{{ }}` prints it (Python's str()).
    var text: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d): return d == d.rounded() && abs(d) < 1e16 ? String(format: "%.1f", d) : String(d)
        case let .string(s): return s
        case .array, .object: return json(pythonStyle: true)
        }
    }

    /// json.dumps(ensure_ascii=False) with its default separators.
    func json(pythonStyle: Bool = false) -> String {
        switch self {
        case .undefined, .none: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return String(i)
        case let .double(d): return String(d)
        case let .string(s):
            var o = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": o += "\\\""
                case "\\": o += "\\\\"
                case "\n": o += "\\n"
                case "\r": o += "\\r"
                case "\t": o += "\\t"
                case "\u{08}": o += "\\b"
                case "\u{0C}": o += "\\f"
                default: o += u.value < 0x20 ? String(format: "\\u%04x", u.value) : String(u)
                }
            }
            return o + "\""
        case let .array(a): return "[" + a.map { $0.json() }.joined(separator: ", ") + "]"
        case let .object(keys, d): return "{" + keys.map { JValue.string($0).json() + ": " + d[$0]!.json() }.joined(separator: ", ") + "}"
        }
    }
}

// MARK: - Lexing

enum Token: Equatable {
    case text(String)
    case output([Lexeme])
    case statement([Lexeme])
}

enum Lexeme: Equatable {
    case name(String), string(String), int(Int), double(Double), op(String)
}

/// Splits the source into text and tags, applying `-` markers, trim_blocks and lstrip_blocks.
func lex(_ source: String) throws -> [Token] {
    let s = Array(source.unicodeScalars)
    var tokens: [Token] = []
    var text: [Unicode.Scalar] = []
    var i = 0
    var trimNextNewline = false
    var stripLeading = false
    func flushText(stripTrailing: Bool, lstripLine: Bool) {
        var t = text
        if lstripLine && !stripTrailing {
            // lstrip_blocks: spaces and tabs from a line's start up to a block tag go
            var k = t.count
            while k > 0, t[k - 1] == " " || t[k - 1] == "\t" { k -= 1 }
            if k > 0 ? t[k - 1] == "\n" : tokens.isEmpty { t.removeLast(t.count - k) }
        }
        if stripLeading { while let f = t.first, f.properties.isWhitespace { t.removeFirst() } }
        if trimNextNewline, t.first == "\n" { t.removeFirst() }
        if stripTrailing { while let l = t.last, l.properties.isWhitespace { t.removeLast() } }
        if !t.isEmpty { tokens.append(.text(String(String.UnicodeScalarView(t)))) }
        text = []
        trimNextNewline = false
        stripLeading = false
    }
    while i < s.count {
        if s[i] == "{", i + 1 < s.count, s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" {
            let kind = s[i + 1]
            let close: Unicode.Scalar = kind == "{" ? "}" : kind == "%" ? "%" : "#"
            var j = i + 2
            let dashBefore = j < s.count && s[j] == "-"
            if dashBefore || (j < s.count && s[j] == "+") { j += 1 }
            // find the closing marker
            var end = j
            var quote: Unicode.Scalar?
            while end + 1 < s.count {
                if let q = quote {
                    if s[end] == "\\" { end += 2; continue }
                    if s[end] == q { quote = nil }
                } else if kind != "#" && (s[end] == "'" || s[end] == "\"") {
                    quote = s[end]
                } else if s[end] == close && s[end + 1] == "}" { break }
                end += 1
            }
            guard end + 1 < s.count else { throw JinjaError.syntax("an unclosed tag") }
            var inner = Array(s[j..<end])
            let dashAfter = inner.last == "-"
            if dashAfter { inner.removeLast() }
            flushText(stripTrailing: dashBefore, lstripLine: kind != "{" && !dashBefore)
            let body = String(String.UnicodeScalarView(inner))
            if kind == "{" { tokens.append(.output(try lexExpression(body))) }
            else if kind == "%" { tokens.append(.statement(try lexExpression(body))) }
            i = end + 2
            if dashAfter { stripLeading = true } else if kind != "{" { trimNextNewline = true }
            continue
        }
        text.append(s[i])
        i += 1
    }
    flushText(stripTrailing: false, lstripLine: false)
    return tokens
}

func lexExpression(_ source: String) throws -> [Lexeme] {
    let s = Array(source.unicodeScalars)
    var out: [Lexeme] = []
    var i = 0
    while i < s.count {
        let c = s[i]
        if c.properties.isWhitespace { i += 1; continue }
        if c == "'" || c == "\"" {
            var v = ""
            i += 1
            while i < s.count && s[i] != c {
                if s[i] == "\\", i + 1 < s.count {
                    i += 1
                    switch s[i] {
                    case "n": v += "\n"
                    case "t": v += "\t"
                    case "r": v += "\r"
                    default: v.unicodeScalars.append(s[i])
                    }
                } else { v.unicodeScalars.append(s[i]) }
                i += 1
            }
            guard i < s.count else { throw JinjaError.syntax("an unterminated string") }
            i += 1
            out.append(.string(v))
        } else if c.properties.numericType != nil && c.isASCII {
            var j = i
            while j < s.count, s[j].isASCII, s[j].properties.numericType != nil || s[j] == "." { j += 1 }
            let t = String(String.UnicodeScalarView(s[i..<j]))
            if let n = Int(t) { out.append(.int(n)) } else if let d = Double(t) { out.append(.double(d)) } else { throw JinjaError.syntax("bad number \(t)") }
            i = j
        } else if c.properties.isAlphabetic || c == "_" {
            var j = i
            while j < s.count, s[j].properties.isAlphabetic || s[j] == "_" || (s[j].isASCII && s[j].properties.numericType != nil) { j += 1 }
            out.append(.name(String(String.UnicodeScalarView(s[i..<j]))))
            i = j
        } else {
            let two = i + 1 < s.count ? String(String.UnicodeScalarView([c, s[i + 1]])) : ""
            if ["==", "!=", "<=", ">=", "//", "**"].contains(two) { out.append(.op(two)); i += 2; continue }
            guard "+-*/%~<>()[]{}.,:|=!".unicodeScalars.contains(c) else { throw JinjaError.syntax("unexpected '\(c)'") }
            out.append(.op(String(c)))
            i += 1
        }
    }
    return out
}
