import Foundation
import Hummingbird
import MiniCPMO
import Runtime

/// An error as OpenAI's API returns it: `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Extra response headers (Retry-After, WWW-Authenticate).
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ message: String, type: String? = nil, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type ?? Self.defaultType(status)
        self.param = param
        self.code = code
    }

    public var description: String { "\(status.code) \(message)" }

    static func defaultType(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 401: return "authentication_error"
        case 404: return "not_found_error"
        case 429: return "rate_limit_error"
        case 503: return "unavailable_error"
        case 400..<500: return "invalid_request_error"
        default: return "server_error"
        }
    }

    static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param, code: code)
    }

    struct Body: Encodable {
        struct Inner: Encodable {
            var message: String
            var type: String
            var param: String?
            var code: String?
            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(message, forKey: .message)
                try c.encode(type, forKey: .type)
                try c.encode(param, forKey: .param)  // null, as OpenAI sends it
                try c.encode(code, forKey: .code)
            }
            enum CodingKeys: String, CodingKey { case message, type, param, code }
        }
        var error: Inner
    }

    var body: Body { Body(error: .init(message: message, type: type, param: param, code: code)) }

    var response: Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: jsonBytes(body))))
    }

    /// The API's view of any error a handler throws: its own errors as they are, runtime and HTTP
    /// errors mapped to their status, anything else a 500 with its description.
    static func from(_ error: Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as RuntimeError:
            switch e {
            case .badMedia: return .invalid(e.description, code: "invalid_media")
            case .contextExceeded: return .invalid(e.description, param: "messages", code: "context_length_exceeded")
            case .unavailable: return .invalid(e.description, code: "unsupported")
            case .queueFull:
                var a = APIError(.tooManyRequests, e.description, code: "queue_full")
                a.headers[.retryAfter] = "1"
                return a
            case .cancelled: return APIError(.init(code: 499, reasonPhrase: "Client Closed Request"), e.description, code: "cancelled")
            case .stopped: return APIError(.serviceUnavailable, e.description, code: "shutting_down")
            }
        case let e as GenerationError:
            switch e {
            case .promptTooLong: return .invalid(e.description, param: "messages", code: "context_length_exceeded")
            default: return .invalid(e.description)
            }
        case let e as MultimodalError: return .invalid(e.description, param: "messages")
        case let e as HTTPError:
            switch e.status {
            case .contentTooLarge: return APIError(.contentTooLarge, "the request body is larger than the server accepts", code: "request_too_large")
            case .notFound: return APIError(.notFound, e.body ?? "no such endpoint", code: "not_found")
            case .methodNotAllowed: return APIError(.methodNotAllowed, e.body ?? "method not allowed")
            default: return APIError(e.status, e.body ?? e.status.reasonPhrase)
            }
        default:
            return APIError(.internalServerError, "\(error)")
        }
    }
}

let jsonEncoder: JSONEncoder = {
    let e = JSONEncoder()
    e.outputFormatting = [.withoutEscapingSlashes]
    return e
}()

func jsonBytes<T: Encodable>(_ value: T) -> [UInt8] {
    (try? [UInt8](jsonEncoder.encode(value))) ?? Array(#"{"error":{"message":"encoding failed","type":"server_error","param":null,"code":null}}"#.utf8)
}

/// A readable message and the offending parameter's path for a JSON body that does not fit.
func describe(_ error: Error) -> APIError {
    func path(_ keys: [CodingKey]) -> String? {
        var s = ""
        for k in keys {
            if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
        }
        return s.isEmpty ? nil : s
    }
    switch error {
    case let e as APIError: return e
    case let DecodingError.typeMismatch(type, ctx):
        return .invalid("'\(path(ctx.codingPath) ?? "body")' has the wrong type (expected \(typeName(type)))", param: path(ctx.codingPath))
    case let DecodingError.valueNotFound(type, ctx):
        return .invalid("'\(path(ctx.codingPath) ?? "body")' must not be null (expected \(typeName(type)))", param: path(ctx.codingPath))
    case let DecodingError.keyNotFound(key, ctx):
        let p = path(ctx.codingPath + [key])
        return .invalid("'\(p ?? key.stringValue)' is required", param: p)
    case let DecodingError.dataCorrupted(ctx):
        if ctx.codingPath.isEmpty { return .invalid("the body is not valid JSON") }
        return .invalid("'\(path(ctx.codingPath) ?? "body")': \(ctx.debugDescription)", param: path(ctx.codingPath))
    default:
        return .invalid("the body could not be read: \(error)")
    }
}

private func typeName(_ t: Any.Type) -> String {
    switch t {
    case is String.Type: return "a string"
    case is Bool.Type: return "a boolean"
    case is Int.Type, is Int64.Type, is UInt64.Type: return "an integer"
    case is Double.Type, is Float.Type: return "a number"
    default:
        let n = "\(t)"
        if n.hasPrefix("Array") { return "an array" }
        if n.hasPrefix("Dictionary") { return "an object" }
        return "an object"
    }
}
