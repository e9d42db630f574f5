import ArgumentParser
import Foundation
import Logging
import MiniCPMO
import Runtime
import Server
import Hub

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the model over an OpenAI-compatible HTTP API.",
        discussion: """
        Endpoints: POST /v1/chat/completions (streaming, images, input audio, audio out), POST /v1/audio/transcriptions, \
        POST /v1/audio/speech, POST|GET /v1/voices, GET /v1/models, GET /health, GET /metrics. \
        The API key may also come from MINICPMO_API_KEY. SIGTERM or Ctrl-C stop it gracefully.
        """)

    @OptionGroup var model: ModelOptions

    @Option(name: .long, help: "Address to listen on (0.0.0.0 for every interface).")
    var host = "127.0.0.1"

    @Option(name: .long, help: "TCP port (0: any free port).")
    var port = 8080

    @Option(name: .long, help: "Require this key as 'Authorization: Bearer KEY' (default: $MINICPMO_API_KEY; none: open).")
    var apiKey: String?

    @Option(name: .long, help: "Largest request body in MB (images and audio travel inside it).")
    var maxBodyMb = 32

    @Option(name: .long, help: "Positions per conversation (prompt + answer; default: the model's).")
    var ctx: Int?

    @Option(name: .long, help: "Memory in MB for finished conversations' KV caches (reused when a client sends the history again).")
    var cacheMb = 512

    @Option(name: .long, help: "Requests that may wait while one runs; more are refused with 429.")
    var maxQueue = 64

    @Option(name: .long, help: "Prompt tokens per forward pass during prefill.")
    var prefillChunk = 512

    @Option(name: .long, help: "Text answers decoded together, each weight read once per step for all of them (1: one request at a time). A joining prompt goes in --prefill-chunk tokens per step.")
    var batch = 8

    @Option(name: .long, help: "Memory in MB for the KV caches of all running answers together (default: no bound). When it runs out, the newest answer is set aside and recomputed once another ends.")
    var kvMb: Int?

    @Flag(name: .long, help: "Fetch http(s) image URLs in requests (off: data: URLs only).")
    var allowRemoteMedia = false

    @Option(name: .long, help: "The model id /v1/models reports (default: the model folder's name).")
    var modelName: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if !(0...65535).contains(port) { throw ValidationError("--port must be 0…65535") }
        if maxBodyMb < 1 { throw ValidationError("--max-body-mb must be at least 1") }
        if let ctx, ctx < 16 { throw ValidationError("--ctx must be at least 16") }
        if cacheMb < 0 { throw ValidationError("--cache-mb must be ≥ 0") }
        if maxQueue < 0 { throw ValidationError("--max-queue must be ≥ 0") }
        if prefillChunk < 1 { throw ValidationError("--prefill-chunk must be at least 1") }
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
        if let kvMb, kvMb < 1 { throw ValidationError("--kv-mb must be at least 1") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = logLevel
            return h
        }
        var config = ServerConfiguration()
        config.host = host
        config.port = port
        config.apiKey = apiKey ?? ProcessInfo.processInfo.environment["MINICPMO_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        config.maxBodyBytes = maxBodyMb << 20
        config.allowRemoteMedia = allowRemoteMedia
        let directory: String
        do { directory = try await resolveModel(model.model, download: model.download) } catch { fail(error, code: 1) }
        config.modelName = modelName ?? (RepoReference(model.model).map { String($0.id.split(separator: "/").last!) }
            ?? URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent)
        config.maxQueue = maxQueue
        config.prefillChunk = prefillChunk
        let runtime = model.runtime, ctx = ctx, cacheBytes = cacheMb << 20, maxQueue = maxQueue, batch = batch
        let prefillChunk = prefillChunk, kvBytes = kvMb.map { $0 << 20 }
        let server = MiniCPMOServer(configuration: config) {
            runtime.apply()
            do {
                let loaded = try MiniCPMOModel(directory: directory, quantize: runtime.quant.format, progress: { note($0) })
                let kvPages = kvBytes.map { max(1, $0 / loaded.llm.makeCachePool().bytesPerPage) }
                let engine = try Engine(model: loaded, contextLength: ctx, cacheBytes: cacheBytes, kvPages: kvPages)
                if batch == 1 { return SerialScheduler(engine: engine, maxQueue: maxQueue) }
                return BatchScheduler(engine: engine, maxQueue: maxQueue, maxBatch: batch, prefillBudget: prefillChunk)
            } catch {
                fail(error, code: 1)  // a server that can never answer is no use: say why and stop
            }
        }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        do {
            try await server.run { port in
                // stdout: the one line a script waits for
                writeOut("listening on http://\(shownHost):\(port)\n")
            }
        } catch {
            fail(error, code: 1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
