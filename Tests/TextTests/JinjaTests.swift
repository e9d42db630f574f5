import Foundation
import Testing
import Text

/// The Jinja subset against `transformers`' renderer (fixture: tools/reference/chat_templates.py).
@Suite struct JinjaTests {
    static let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/chat_templates/cases.json")

    /// A JSON reader that keeps objects' key order (tojson prints keys as they came).
    struct OrderedJSON {
        let s: [UInt8]
        var i = 0
        init(_ text: String) { s = Array(text.utf8) }
        mutating func ws() { while i < s.count, [32, 9, 10, 13].contains(s[i]) { i += 1 } }
        mutating func value() throws -> JValue {
            ws()
            switch s[i] {
            case UInt8(ascii: "{"):
                i += 1
                var pairs: [(String, JValue)] = []
                ws()
                if s[i] == UInt8(ascii: "}") { i += 1; return .object([]) }
                while true {
                    ws()
                    guard case let .string(k) = try value() else { throw TestError.bad }
                    ws(); i += 1  // :
                    pairs.append((k, try value()))
                    ws()
                    let c = s[i]; i += 1
                    if c == UInt8(ascii: "}") { return .object(pairs) }
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [JValue] = []
                ws()
                if s[i] == UInt8(ascii: "]") { i += 1; return .array([]) }
                while true {
                    items.append(try value())
                    ws()
                    let c = s[i]; i += 1
                    if c == UInt8(ascii: "]") { return .array(items) }
                }
            case UInt8(ascii: "\""):
                let start = i
                i += 1
                while s[i] != UInt8(ascii: "\"") { i += s[i] == UInt8(ascii: "\\") ? 2 : 1 }
                i += 1
                return .string(try JSONDecoder().decode(String.self, from: Data(s[start..<i])))
            case UInt8(ascii: "t"): i += 4; return .bool(true)
            case UInt8(ascii: "f"): i += 5; return .bool(false)
            case UInt8(ascii: "n"): i += 4; return .none
            default:
                let start = i
                while i < s.count, "-+.eE0123456789".utf8.contains(s[i]) { i += 1 }
                let t = String(decoding: s[start..<i], as: UTF8.self)
                if let n = Int(t) { return .int(n) }
                guard let d = Double(t) else { throw TestError.bad }
                return .double(d)
            }
        }
    }
    enum TestError: Error { case bad }

    static func member(_ v: JValue, _ k: String) -> JValue {
        if case let .object(_, d) = v { return d[k] ?? .undefined }
        return .undefined
    }

    @Test func rendersAsTransformersDoes() throws {
        var reader = OrderedJSON(try String(contentsOf: Self.url, encoding: .utf8))
        let root = try reader.value()
        guard case let .object(names, templates) = Self.member(root, "templates"), case let .array(cases) = Self.member(root, "cases") else {
            throw TestError.bad
        }
        #expect(cases.count >= 30)
        var compiled: [String: JinjaTemplate] = [:]
        for name in names { if case let .string(source)? = templates[name] { compiled[name] = try JinjaTemplate(source) } }
        for c in cases {
            guard case let .string(name) = Self.member(c, "template"), case let .string(expected) = Self.member(c, "rendered") else { throw TestError.bad }
            var context: [String: JValue] = ["messages": Self.member(c, "messages"), "add_generation_prompt": Self.member(c, "add_generation_prompt")]
            if case .array = Self.member(c, "tools") { context["tools"] = Self.member(c, "tools") }
            let rendered = try compiled[name]!.render(context)
            #expect(rendered == expected, "\(name): \(rendered.debugDescription.prefix(300)) ≠ \(expected.debugDescription.prefix(300))")
        }
    }

    @Test func errorsAreClear() {
        for bad in ["{% if x %}", "{% for x in y %}", "{{ 'a' ", "{% frobnicate %}", "{{ (1 }}"] {
            #expect(throws: JinjaError.self, "\(bad)") { _ = try JinjaTemplate(bad).render([:]) }
        }
        #expect(throws: JinjaError.self) { _ = try JinjaTemplate("{{ raise_exception('no system role') }}").render([:]) }
        #expect(throws: JinjaError.self) { _ = try JinjaTemplate("{{ 'a' - 1 }}").render([:]) }
    }
}
