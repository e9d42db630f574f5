import Foundation

// The template's tree and its evaluation (see JinjaTemplate).

indirect enum Expr: Sendable {
    case literal(JValue)
    case name(String)
    case attribute(Expr, String)
    case index(Expr, Expr)
    case call(Expr, [Expr], [(String, Expr)])
    case filter(Expr, String, [Expr])
    case test(Expr, String, negated: Bool)
    case unary(String, Expr)
    case binary(String, Expr, Expr)
    case list([Expr])
    case dict([(Expr, Expr)])
    case conditional(Expr, Expr, Expr?)
}

indirect enum Node: Sendable {
    case text(String)
    case output(Expr)
    case ifBlock([(Expr, [Node])], [Node])
    case forBlock([String], Expr, [Node], [Node])
    case set([String], Expr)
}

struct Parser {
    var tokens: [Token]
    var at = 0

    init(tokens: [Token]) { self.tokens = tokens }

    /// Nodes up to one of the statements `until` (left unconsumed), or the end.
    mutating func nodes(until: Set<String>) throws -> [Node] {
        var out: [Node] = []
        while at < tokens.count {
            switch tokens[at] {
            case let .text(t):
                out.append(.text(t))
                at += 1
            case let .output(lx):
                var e = ExprParser(lx)
                out.append(.output(try e.full()))
                at += 1
            case let .statement(lx):
                guard case let .name(keyword)? = lx.first else { throw JinjaError.syntax("an empty statement") }
                if until.contains(keyword) { return out }
                at += 1
                var e = ExprParser(Array(lx.dropFirst()))
                switch keyword {
                case "if":
                    var branches = [(try e.full(), try nodes(until: ["elif", "else", "endif"]))]
                    var otherwise: [Node] = []
                    while true {
                        guard at < tokens.count, case let .statement(next) = tokens[at], case let .name(k)? = next.first else {
                            throw JinjaError.syntax("if without endif")
                        }
                        at += 1
                        if k == "elif" {
                            var c = ExprParser(Array(next.dropFirst()))
                            branches.append((try c.full(), try nodes(until: ["elif", "else", "endif"])))
                        } else if k == "else" {
                            otherwise = try nodes(until: ["endif"])
                        } else { break }
                    }
                    out.append(.ifBlock(branches, otherwise))
                case "for":
                    var names = [try e.name()]
                    while e.accept(.op(",")) { names.append(try e.name()) }
                    guard e.accept(.name("in")) else { throw JinjaError.syntax("for without in") }
                    let seq = try e.full()
                    let body = try nodes(until: ["else", "endfor"])
                    var otherwise: [Node] = []
                    if case let .statement(next) = tokens[safe: at], next.first == .name("else") {
                        at += 1
                        otherwise = try nodes(until: ["endfor"])
                    }
                    guard case let .statement(end) = tokens[safe: at], end.first == .name("endfor") else { throw JinjaError.syntax("for without endfor") }
                    at += 1
                    out.append(.forBlock(names, seq, body, otherwise))
                case "set":
                    var target = [try e.name()]
                    while e.accept(.op(".")) { target.append(try e.name()) }
                    guard e.accept(.op("=")) else { throw JinjaError.syntax("set without =") }
                    out.append(.set(target, try e.full()))
                default:
                    throw JinjaError.syntax("unsupported statement '\(keyword)'")
                }
            }
        }
        if !until.isEmpty { throw JinjaError.syntax("missing \(until.sorted().joined(separator: "/"))") }
        return out
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}

struct ExprParser {
    let lx: [Lexeme]
    var at = 0
    init(_ lx: [Lexeme]) { self.lx = lx }

    var peek: Lexeme? { lx[safe: at] }
    mutating func accept(_ l: Lexeme) -> Bool {
        if peek == l { at += 1; return true }
        return false
    }
    mutating func expect(_ l: Lexeme) throws {
        guard accept(l) else { throw JinjaError.syntax("expected \(l)") }
    }
    mutating func name() throws -> String {
        guard case let .name(n)? = peek else { throw JinjaError.syntax("expected a name") }
        at += 1
        return n
    }

    mutating func full() throws -> Expr {
        let e = try expression()
        guard at == lx.count else { throw JinjaError.syntax("unexpected \(lx[at])") }
        return e
    }

    mutating func expression() throws -> Expr {
        let e = try or()
        if accept(.name("if")) {
            let c = try or()
            return .conditional(c, e, accept(.name("else")) ? try expression() : nil)
        }
        return e
    }
    mutating func or() throws -> Expr {
        var e = try and()
        while accept(.name("or")) { e = .binary("or", e, try and()) }
        return e
    }
    mutating func and() throws -> Expr {
        var e = try not()
        while accept(.name("and")) { e = .binary("and", e, try not()) }
        return e
    }
    mutating func not() throws -> Expr {
        accept(.name("not")) ? .unary("not", try not()) : try comparison()
    }
    mutating func comparison() throws -> Expr {
        var e = try additive()
        while true {
            if case let .op(o)? = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                at += 1
                e = .binary(o, e, try additive())
            } else if accept(.name("in")) {
                e = .binary("in", e, try additive())
            } else if peek == .name("not"), lx[safe: at + 1] == .name("in") {
                at += 2
                e = .unary("not", .binary("in", e, try additive()))
            } else if accept(.name("is")) {
                let negated = accept(.name("not"))
                e = .test(e, try name(), negated: negated)
            } else { return e }
        }
    }
    /// `next (op next)*` for the operators `ops`, left-associative.
    mutating func leftAssociative(_ ops: [String], _ next: (inout Self) throws -> Expr) throws -> Expr {
        var e = try next(&self)
        while case let .op(o)? = peek, ops.contains(o) {
            at += 1
            e = .binary(o, e, try next(&self))
        }
        return e
    }
    mutating func additive() throws -> Expr { try leftAssociative(["+", "-"]) { try $0.concat() } }
    /// `~` binds tighter than + and -, looser than * and / (as in Jinja).
    mutating func concat() throws -> Expr {
        var e = try multiplicative()
        while accept(.op("~")) { e = .binary("~", e, try multiplicative()) }
        return e
    }
    mutating func multiplicative() throws -> Expr { try leftAssociative(["*", "/", "%", "//"]) { try $0.unary() } }
    mutating func unary() throws -> Expr {
        if accept(.op("-")) { return .unary("-", try unary()) }
        var e = try postfix()
        while accept(.op("|")) {
            let f = try name()
            var args: [Expr] = []
            if accept(.op("(")) {
                while !accept(.op(")")) {
                    if case .name? = peek, lx[safe: at + 1] == .op("=") { at += 2 }  // keyword arguments: value only
                    args.append(try expression())
                    _ = accept(.op(","))
                }
            }
            e = .filter(e, f, args)
        }
        return e
    }
    mutating func postfix() throws -> Expr {
        var e = try primary()
        while true {
            if accept(.op(".")) { e = .attribute(e, try name()) }
            else if accept(.op("[")) {
                let k = try expression()
                try expect(.op("]"))
                e = .index(e, k)
            } else if accept(.op("(")) {
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                while !accept(.op(")")) {
                    if case let .name(k)? = peek, lx[safe: at + 1] == .op("=") {
                        at += 2
                        kwargs.append((k, try expression()))
                    } else { args.append(try expression()) }
                    _ = accept(.op(","))
                }
                e = .call(e, args, kwargs)
            } else { return e }
        }
    }
    mutating func primary() throws -> Expr {
        guard let l = peek else { throw JinjaError.syntax("an expression is missing") }
        at += 1
        switch l {
        case let .string(s):
            var v = s
            while case let .string(more)? = peek { v += more; at += 1 }  // adjacent literals concatenate
            return .literal(.string(v))
        case let .int(i): return .literal(.int(i))
        case let .double(d): return .literal(.double(d))
        case let .name(n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            let e = try expression()
            try expect(.op(")"))
            return e
        case .op("["):
            var items: [Expr] = []
            while !accept(.op("]")) { items.append(try expression()); _ = accept(.op(",")) }
            return .list(items)
        case .op("{"):
            var pairs: [(Expr, Expr)] = []
            while !accept(.op("}")) {
                let k = try expression()
                try expect(.op(":"))
                pairs.append((k, try expression()))
                _ = accept(.op(","))
            }
            return .dict(pairs)
        default:
            throw JinjaError.syntax("unexpected \(l)")
        }
    }
}

// MARK: - Evaluation

/// Variables; `namespace()` objects live in `namespaces` so that `set ns.x` can change them.
struct Scope {
    var vars: [String: JValue]
    var namespaces: [[String: JValue]] = []
}

func run(_ nodes: [Node], _ scope: inout Scope, _ out: inout String) throws {
    for n in nodes {
        switch n {
        case let .text(t): out += t
        case let .output(e): out += try eval(e, &scope).text
        case let .ifBlock(branches, otherwise):
            var done = false
            for (c, body) in branches where try eval(c, &scope).truthy {
                try run(body, &scope, &out)
                done = true
                break
            }
            if !done { try run(otherwise, &scope, &out) }
        case let .forBlock(names, seq, body, otherwise):
            let items: [JValue]
            switch try eval(seq, &scope) {
            case let .array(a): items = a
            case let .object(keys, _): items = keys.map { .string($0) }
            case let .string(s): items = s.map { .string(String($0)) }
            case .undefined, .none: items = []
            default: throw JinjaError.type("cannot loop over that value")
            }
            if items.isEmpty { try run(otherwise, &scope, &out); continue }
            let saved = scope.vars
            for (i, item) in items.enumerated() {
                if names.count == 1 { scope.vars[names[0]] = item }
                else if case let .array(parts) = item { for (k, nm) in names.enumerated() { scope.vars[nm] = parts[safe: k] ?? .undefined } }
                scope.vars["loop"] = .object([
                    ("index0", .int(i)), ("index", .int(i + 1)), ("first", .bool(i == 0)), ("last", .bool(i == items.count - 1)),
                    ("length", .int(items.count)), ("revindex0", .int(items.count - 1 - i)), ("revindex", .int(items.count - i)),
                    ("previtem", i > 0 ? items[i - 1] : .undefined), ("nextitem", i + 1 < items.count ? items[i + 1] : .undefined),
                ])
                try run(body, &scope, &out)
            }
            // loop variables end with the loop; other names set inside do too (Jinja's scoping)
            scope.vars = saved
        case let .set(target, e):
            let v = try eval(e, &scope)
            if target.count == 1 { scope.vars[target[0]] = v }
            else if case let .int(ns)? = scope.vars[target[0]].flatMap(namespaceIndex) { scope.namespaces[ns][target[1]] = v }
            else { throw JinjaError.type("only namespace attributes can be set") }
        }
    }
}

/// A namespace is an object whose one key points into Scope.namespaces.
private func namespaceIndex(_ v: JValue) -> JValue? {
    if case let .object(_, d) = v, let i = d["__namespace__"] { return i }
    return nil
}

func eval(_ e: Expr, _ scope: inout Scope) throws -> JValue {
    switch e {
    case let .literal(v): return v
    case let .name(n): return scope.vars[n] ?? .undefined
    case let .attribute(base, name):
        let b = try eval(base, &scope)
        if case let .int(ns)? = namespaceIndex(b) { return scope.namespaces[ns][name] ?? .undefined }
        return member(b, name)
    case let .index(base, key):
        let b = try eval(base, &scope), k = try eval(key, &scope)
        switch (b, k) {
        case let (.array(a), .int(i)): return a[safe: i < 0 ? a.count + i : i] ?? .undefined
        case let (.string(s), .int(i)):
            let c = Array(s)
            return c[safe: i < 0 ? c.count + i : i].map { .string(String($0)) } ?? .undefined
        case let (.object, .string(name)): return member(b, name)
        default: return .undefined
        }
    case let .call(callee, args, kwargs):
        if case let .name(f) = callee {
            switch f {
            case "raise_exception":
                throw JinjaError.raised(try args.first.map { try eval($0, &scope).text } ?? "raise_exception")
            case "namespace":
                var d: [String: JValue] = [:]
                for (k, v) in kwargs { d[k] = try eval(v, &scope) }
                scope.namespaces.append(d)
                return .object([("__namespace__", .int(scope.namespaces.count - 1))])
            default: break
            }
        }
        guard case let .attribute(base, method) = callee else { throw JinjaError.type("unsupported call") }
        let b = try eval(base, &scope)
        let a = try args.map { try eval($0, &scope) }
        return try call(b, method, a)
    case let .filter(base, f, args):
        let v = try eval(base, &scope)
        let a = try args.map { try eval($0, &scope) }
        return try filter(v, f, a)
    case let .test(base, t, negated):
        let v = try eval(base, &scope)
        let r: Bool
        switch t {
        case "defined": if case .undefined = v { r = false } else { r = true }
        case "undefined": if case .undefined = v { r = true } else { r = false }
        case "none": r = v == .none
        case "string": if case .string = v { r = true } else { r = false }
        case "number": switch v { case .int, .double: r = true; default: r = false }
        case "mapping": if case .object = v { r = true } else { r = false }
        case "sequence", "iterable": switch v { case .array, .string, .object: r = true; default: r = false }
        case "true": r = v == .bool(true)
        case "false": r = v == .bool(false)
        case "boolean": if case .bool = v { r = true } else { r = false }
        default: throw JinjaError.type("unsupported test '\(t)'")
        }
        return .bool(r != negated)
    case let .unary(op, x):
        let v = try eval(x, &scope)
        if op == "not" { return .bool(!v.truthy) }
        switch v {
        case let .int(i): return .int(-i)
        case let .double(d): return .double(-d)
        default: throw JinjaError.type("cannot negate that value")
        }
    case let .binary(op, l, r):
        if op == "and" { let a = try eval(l, &scope); return a.truthy ? try eval(r, &scope) : a }
        if op == "or" { let a = try eval(l, &scope); return a.truthy ? a : try eval(r, &scope) }
        return try binary(op, try eval(l, &scope), try eval(r, &scope))
    case let .list(items): return .array(try items.map { try eval($0, &scope) })
    case let .dict(pairs):
        return .object(try pairs.map { (try eval($0.0, &scope).text, try eval($0.1, &scope)) })
    case let .conditional(c, then, otherwise):
        return try eval(c, &scope).truthy ? try eval(then, &scope) : try otherwise.map { try eval($0, &scope) } ?? .undefined
    }
}

private func member(_ v: JValue, _ name: String) -> JValue {
    if case let .object(_, d) = v { return d[name] ?? .undefined }
    return .undefined
}

private func binary(_ op: String, _ a: JValue, _ b: JValue) throws -> JValue {
    switch op {
    case "==": return .bool(equal(a, b))
    case "!=": return .bool(!equal(a, b))
    case "~": return .string(a.text + b.text)
    case "in":
        switch b {
        case let .string(s): return .bool(s.contains(a.text))
        case let .array(items): return .bool(items.contains { equal($0, a) })
        case let .object(_, d): return .bool(d[a.text] != nil)
        default: return .bool(false)
        }
    default: break
    }
    switch (op, a, b) {
    case let ("+", .string(x), .string(y)): return .string(x + y)
    case let ("+", .array(x), .array(y)): return .array(x + y)
    case let (_, .int(x), .int(y)):
        switch op {
        case "+": return .int(x + y)
        case "-": return .int(x - y)
        case "*": return .int(x * y)
        case "//": guard y != 0 else { break }; return .int(Int((Double(x) / Double(y)).rounded(.down)))
        case "%": guard y != 0 else { break }; return .int(((x % y) + y) % y)
        case "/": guard y != 0 else { break }; return .double(Double(x) / Double(y))
        case "<": return .bool(x < y)
        case ">": return .bool(x > y)
        case "<=": return .bool(x <= y)
        case ">=": return .bool(x >= y)
        default: break
        }
    case let ("<", .string(x), .string(y)): return .bool(x < y)
    case let (">", .string(x), .string(y)): return .bool(x > y)
    default: break
    }
    if let x = number(a), let y = number(b) {
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/" where y != 0: return .double(x / y)
        case "<": return .bool(x < y)
        case ">": return .bool(x > y)
        case "<=": return .bool(x <= y)
        case ">=": return .bool(x >= y)
        default: break
        }
    }
    throw JinjaError.type("cannot apply '\(op)' to \(a.text.prefix(40)) and \(b.text.prefix(40))")
}

private func number(_ v: JValue) -> Double? {
    switch v {
    case let .int(i): return Double(i)
    case let .double(d): return d
    default: return nil
    }
}

private func equal(_ a: JValue, _ b: JValue) -> Bool {
    if let x = number(a), let y = number(b) { return x == y }
    return a == b
}

private func filter(_ v: JValue, _ f: String, _ args: [JValue]) throws -> JValue {
    switch f {
    case "tojson": return .string(v.json())
    case "trim": return .string(v.text.trimmingCharacters(in: .whitespacesAndNewlines))
    case "string": return .string(v.text)
    case "lower": return .string(v.text.lowercased())
    case "upper": return .string(v.text.uppercased())
    case "length", "count":
        switch v {
        case let .string(s): return .int(s.count)
        case let .array(a): return .int(a.count)
        case let .object(k, _): return .int(k.count)
        default: return .int(0)
        }
    case "first": if case let .array(a) = v { return a.first ?? .undefined }; return .undefined
    case "last": if case let .array(a) = v { return a.last ?? .undefined }; return .undefined
    case "default", "d": if case .undefined = v { return args.first ?? .string("") }; return v
    case "join":
        if case let .array(a) = v { return .string(a.map(\.text).joined(separator: args.first?.text ?? "")) }
        return v
    default: throw JinjaError.type("unsupported filter '\(f)'")
    }
}

private func call(_ v: JValue, _ method: String, _ args: [JValue]) throws -> JValue {
    if case let .string(s) = v {
        let arg = args.first?.text
        switch method {
        case "strip": return .string(arg.map { s.trimmingCharacters(in: CharacterSet(charactersIn: $0)) } ?? s.trimmingCharacters(in: .whitespacesAndNewlines))
        case "lstrip": return .string(String(s.drop { arg?.contains($0) ?? $0.isWhitespace }))
        case "rstrip": return .string(String(s.reversed().drop { arg?.contains($0) ?? $0.isWhitespace }.reversed()))
        case "startswith": return .bool(s.hasPrefix(arg ?? ""))
        case "endswith": return .bool(s.hasSuffix(arg ?? ""))
        case "lower": return .string(s.lowercased())
        case "upper": return .string(s.uppercased())
        case "replace" where args.count == 2: return .string(s.replacingOccurrences(of: args[0].text, with: args[1].text))
        case "split":
            if let arg { return .array(s.components(separatedBy: arg).map { .string($0) }) }
            return .array(s.split(whereSeparator: \.isWhitespace).map { .string(String($0)) })
        default: break
        }
    }
    if case let .object(keys, d) = v {
        switch method {
        case "get": return d[args.first?.text ?? ""] ?? (args[safe: 1] ?? .none)
        case "keys": return .array(keys.map { .string($0) })
        case "values": return .array(keys.map { d[$0]! })
        case "items": return .array(keys.map { .array([.string($0), d[$0]!]) })
        default: break
        }
    }
    throw JinjaError.type("unsupported method '\(method)'")
}
