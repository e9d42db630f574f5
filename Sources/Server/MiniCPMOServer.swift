import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import Runtime
import ServiceLifecycle
import Synchronization

public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (reported to `onReady`).
    public var port = 8080
    /// Required as `Authorization: Bearer KEY` on /v1 endpoints when set.
    public var apiKey: String?
    public var maxBodyBytes = 32 << 20
    /// Fetch http(s) image URLs (off: only data: URLs), each within `maxBodyBytes`, this time and
    /// three redirects.
    public var allowRemoteMedia = false
    public var remoteMediaTimeout: Duration = .seconds(20)
    /// The id `/v1/models` reports; any `model` value in a request is accepted.
    public var modelName = "minicpm-o-2_6"
    /// Requests that may wait while one runs; more get 429.
    public var maxQueue = 64
    public var prefillChunk = 512

    public init() {}
}

/// The request context: Hummingbird's, plus the connection (to notice a client that went away).
public struct ServerContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public let webSocket: WebSocketHandlerReference<ServerContext>
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
        webSocket = .init()
    }
    // bodies are collected by the handlers under the server's own limit
    public var maxUploadSize: Int { .max }
}

/// The OpenAI-compatible HTTP server. It listens at once; `/health` answers 503 until the model,
/// loaded on its own thread by `load`, is ready.
public final class MiniCPMOServer: Sendable {
    public let configuration: ServerConfiguration
    let logger: Logger
    let state = ModelState()
    let voices = VoiceStore()
    let audioTranscripts = AudioTranscripts()
    let metrics = ServerMetrics()
    let remoteMedia: RemoteMedia?
    let load: @Sendable () throws -> any RequestScheduler
    let fingerprint = "minicpmo-swift"
    let created = Int(Date().timeIntervalSince1970)
    private let running = Mutex<ServiceGroup?>(nil)

    /// - load: builds the scheduler (loading the model); runs on a thread of its own.
    public init(configuration: ServerConfiguration, logger: Logger = Logger(label: "minicpmo.server"),
                load: @escaping @Sendable () throws -> any RequestScheduler) {
        self.configuration = configuration
        self.logger = logger
        self.load = load
        remoteMedia = configuration.allowRemoteMedia
            ? RemoteMedia(maxBytes: configuration.maxBodyBytes, timeout: configuration.remoteMediaTimeout) : nil
    }

    /// Runs until SIGTERM/SIGINT (graceful: open requests finish) or until the task is cancelled.
    /// `onReady` gets the bound port once the server listens (the model may still be loading).
    public func run(onReady: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = Application(
            router: makeRouter(),
            server: .http1WebSocketUpgrade(
                webSocketRouter: makeWebSocketRouter(),
                configuration: .init(http1: .init(additionalChannelHandlers: [HalfCloseDetector()]),
                                     ws: .init(maxFrameSize: configuration.maxBodyBytes))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "minicpmo"),
            onServerRunning: { channel in await onReady(channel.localAddress?.port ?? 0) },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        running.withLock { $0 = group }
        startLoading()
        var failure: Error?
        do { try await group.run() } catch { failure = error }
        if case let .ready(s) = state.current { s.shutdown() }
        try? await remoteMedia?.client.shutdown()
        if let failure { throw failure }
    }

    /// Stops as SIGTERM does: no new connections, open requests finish.
    public func shutdown() async {
        await running.withLock { $0 }?.triggerGracefulShutdown()
    }

    func startLoading() {
        let thread = Thread { [self] in
            do {
                let s = try load()
                state.set(.ready(s))
                logger.info("model ready")
            } catch {
                state.set(.failed("\(error)"))
                logger.error("model failed to load: \(error)")
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    func makeRouter() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: ErrorMiddleware(metrics: metrics))
        Page.add(to: router)
        router.get("/health") { _, _ in self.health() }
        router.get("/metrics") { _, _ in
            var s: (any RequestScheduler)?
            if case let .ready(r) = self.state.current { s = r }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.render(scheduler: s))))
        }
        let v1 = router.group("v1").add(middleware: AuthMiddleware(key: configuration.apiKey))
        v1.get("models") { _, _ in self.jsonResponse(ModelList(data: [self.modelInfo])) }
        v1.get("models/{id}") { _, context in
            let id = try context.parameters.require("id")
            guard id == self.configuration.modelName else { throw APIError(.notFound, "no model '\(id)'", code: "model_not_found") }
            return self.jsonResponse(self.modelInfo)
        }
        v1.post("chat/completions") { request, context in try await self.chatCompletions(request, context: context) }
        v1.post("audio/transcriptions") { request, context in try await self.transcriptions(request, context: context) }
        v1.post("audio/speech") { request, context in try await self.speech(request, context: context) }
        v1.post("voices") { request, context in try await self.addVoice(request, context: context) }
        v1.get("voices") { _, _ in
            self.jsonResponse(VoiceList(data: self.voices.all.map { VoiceInfo(id: $0.id, created: $0.created, seconds: $0.clip.seconds) }))
        }
        v1.delete("voices/{id}") { _, context in
            let id = try context.parameters.require("id")
            guard self.voices.remove(id) else { throw APIError(.notFound, "no voice '\(id)'", code: "voice_not_found") }
            return Response(status: .noContent)
        }
        return router
    }

    var modelInfo: ModelInfo { ModelInfo(id: configuration.modelName, created: created) }

    func health() -> Response {
        switch state.current {
        case .ready: return jsonResponse(HealthBody(status: "ok"))
        case .loading: return jsonResponse(HealthBody(status: "loading", message: "the model is loading"), status: .serviceUnavailable)
        case let .failed(why): return jsonResponse(HealthBody(status: "error", message: why), status: .serviceUnavailable)
        }
    }

    func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: jsonBytes(value))))
    }

    /// The request body, refused past `--max-body-mb`.
    func body(_ request: Request) async throws -> ByteBuffer {
        let limit = configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, "the request body (\(length) bytes) is over the server's limit of \(limit) bytes", code: "request_too_large")
        }
        do {
            return try await request.body.collect(upTo: limit)
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "the request body is over the server's limit of \(limit) bytes", code: "request_too_large")
        }
    }

    func decodeJSON<T: Decodable>(_ request: Request) async throws -> T {
        let buffer = try await body(request)
        guard buffer.readableBytes > 0 else { throw APIError.invalid("the request body is empty (expected JSON)") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch {
            throw describe(error)
        }
    }
}

/// Calls off a submission when its client's connection closes. The server allows half-closed
/// connections, so a client that went away shows as input closed (see HalfCloseDetector), not as
/// an inactive channel, until something is written.
func cancelOnDisconnect(_ channel: any Channel, _ submission: Submission) -> Task<Void, Never> {
    Task {
        let detector = try? await channel.pipeline.handler(type: HalfCloseDetector.self).get()
        while !Task.isCancelled {
            if !channel.isActive || detector?.inputClosed == true {
                submission.cancel()
                return
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Notes the client closing its side of the connection.
final class HalfCloseDetector: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    private let closed = Atomic<Bool>(false)
    var inputClosed: Bool { closed.load(ordering: .relaxed) }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed { closed.store(true, ordering: .relaxed) }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Every error becomes OpenAI's error object (404s of unknown routes too); one log line for each.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let e = APIError.from(error)
            metrics.request(endpoint: request.uri.path == "/v1/chat/completions" ? "chat_completions" : "other", status: Int(e.status.code))
            context.logger.info("request failed", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)",
                                                            "status": "\(e.status.code)", "error": "\(e.message)"])
            return e.response
        }
    }
}

/// `Authorization: Bearer KEY`, compared in constant time.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let key: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let key else { return try await next(request, context) }
        let given = request.headers[.authorization] ?? ""
        let token = bearerToken(request)
        guard !token.isEmpty, constantTimeEqual(token, key) else {
            var e = APIError(.unauthorized, given.isEmpty ? "missing API key (send Authorization: Bearer KEY)" : "incorrect API key",
                             code: "invalid_api_key")
            e.headers[.wwwAuthenticate] = "Bearer"
            throw e
        }
        return try await next(request, context)
    }
}

/// The key of `Authorization: Bearer KEY` ("" without one).
func bearerToken(_ request: Request) -> String {
    let given = request.headers[.authorization] ?? ""
    return given.hasPrefix("Bearer ") ? String(given.dropFirst(7)) : ""
}

/// Fetches remote image URLs with size, time and redirect limits.
final class RemoteMedia: Sendable {
    let client: HTTPClient
    let maxBytes: Int
    let timeout: Duration

    init(maxBytes: Int, timeout: Duration) {
        var config = HTTPClient.Configuration(redirectConfiguration: .follow(max: 3, allowCycles: false))
        config.timeout = .init(connect: .seconds(5), read: .seconds(10))
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.maxBytes = maxBytes
        self.timeout = timeout
    }

    func fetch(_ url: String, param: String) async throws -> Data {
        do {
            let ms = Int64(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .milliseconds(ms))
            guard response.status == .ok else {
                throw APIError.invalid("fetching \(url) gave HTTP \(response.status.code)", param: param, code: "invalid_media")
            }
            let body = try await response.body.collect(upTo: maxBytes)
            return Data(body.readableBytesView)
        } catch let e as APIError {
            throw e
        } catch {
            throw APIError.invalid("fetching \(url) failed: \(error)", param: param, code: "invalid_media")
        }
    }
}
