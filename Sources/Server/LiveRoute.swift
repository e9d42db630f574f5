import Foundation
import Hummingbird
import HummingbirdWebSocket
import Media
import MiniCPMO
import NIOCore
import Runtime

/// `/v1/live`: a voice (and video) call over a WebSocket, with OpenAI Realtime's event names where they fit.
///
/// Client → server (JSON text frames):
/// - `session.update` `{session: {instructions, voice (a base64 WAV, or the id of a voice from `POST /v1/voices`), modalities ["text","audio"], temperature,
///   max_response_output_tokens, turn_detection: {silence_duration_ms}, input_sample_rate (16000 or 24000),
///   hd_video}}`, before the first audio;
/// - `input_audio_buffer.append` `{audio: base64 little-endian PCM16 mono}`;
/// - `input_image_buffer.append` `{image: base64 PNG/JPEG}`: a video frame, heard with the next unit;
/// - `input_audio_buffer.commit`: the turn ends now; `response.cancel`: stop the answer.
///
/// Server → client: `session.created`, `session.updated`, `input_audio_buffer.speech_started` / `.speech_stopped`
/// / `.committed`, `input_audio_buffer.unit` (a unit went in, with its prefill time), `response.created`,
/// `response.audio_transcript.delta` (or `response.text.delta` without audio), `response.audio.delta` (base64
/// PCM16, 24 kHz), `response.interrupted`, `response.done` (status completed / cancelled), `error`.
extension MiniCPMOServer {
    func makeWebSocketRouter() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.ws("/v1/live", shouldUpgrade: { request, _ in
            // browsers cannot set headers on a WebSocket: the key may come as ?api_key= too
            guard let key = self.configuration.apiKey else { return .upgrade([:]) }
            let header = bearerToken(request)
            let token = header.isEmpty ? (request.uri.queryParameters["api_key"].map(String.init) ?? "") : header
            return !token.isEmpty && constantTimeEqual(token, key) ? .upgrade([:]) : .dontUpgrade
        }) { inbound, outbound, _ in
            try await self.live(inbound: inbound, outbound: outbound)
        }
        return router
    }

    func live(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let (events, sink) = AsyncStream.makeStream(of: String.self)
        let writer = Task {
            for await text in events { try? await outbound.writeTextMessage(text) }
        }
        defer { writer.cancel() }
        let scheduler: any RequestScheduler
        do { scheduler = try state.scheduler() } catch {
            sink.yield(LiveWire.error(APIError.from(error).message, code: "model_not_ready"))
            sink.finish()
            await writer.value
            return
        }
        let engine = scheduler.engine
        let id = "live_" + randomID(16)
        let call = LiveConnection(id: id, engine: engine, executor: SchedulerExecutor(scheduler), voices: voices, sink: sink)
        sink.yield(LiveWire.object(["type": "session.created", "session": call.description]))
        do {
            for try await message in inbound.messages(maxSize: configuration.maxBodyBytes) {
                guard case let .text(text) = message else {
                    sink.yield(LiveWire.error("send JSON text frames", code: "invalid_event"))
                    continue
                }
                call.handle(text)
            }
        } catch {
            // the client went away mid-message
        }
        call.close()
        sink.finish()
        await writer.value
    }
}

/// One call's state between the socket and the model.
final class LiveConnection: @unchecked Sendable {
    let id: String
    let engine: Engine
    let executor: SchedulerExecutor
    let voices: VoiceStore
    let sink: AsyncStream<String>.Continuation
    private let lock = NSLock()
    private var call: LiveCall?
    private var options = LiveCall.Options()
    private var instructions: String?
    private var voice: [Float]?
    private var sampleRate = 16000
    private var hd = false
    private var responseID = ""
    private var speaking = true

    init(id: String, engine: Engine, executor: SchedulerExecutor, voices: VoiceStore, sink: AsyncStream<String>.Continuation) {
        self.id = id
        self.engine = engine
        self.executor = executor
        self.voices = voices
        self.sink = sink
    }

    var description: [String: Any] {
        ["id": id, "object": "realtime.session", "modalities": options.speak ? ["text", "audio"] : ["text"],
         "input_audio_format": "pcm16", "input_sample_rate": sampleRate, "output_audio_format": "pcm16",
         "output_sample_rate": 24000, "turn_detection": ["type": "server_vad", "silence_duration_ms": Int(options.silence * 1000)],
         "instructions": instructions ?? OmniSession.defaultSystemPrompt]
    }

    func handle(_ text: String) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
              let type = object["type"] as? String else {
            sink.yield(LiveWire.error("each message must be a JSON object with a \"type\"", code: "invalid_event"))
            return
        }
        do {
            switch type {
            case "session.update": try update(object["session"] as? [String: Any] ?? [:])
            case "input_audio_buffer.append":
                guard let b64 = object["audio"] as? String, let data = Data(base64Encoded: b64) else {
                    throw LiveWire.Problem("input_audio_buffer.append needs \"audio\": base64 PCM16")
                }
                guard data.count % 2 == 0 else { throw LiveWire.Problem("PCM16 audio must have an even number of bytes") }
                var samples = data.withUnsafeBytes { raw in
                    raw.bindMemory(to: Int16.self).map { Float(Int16(littleEndian: $0)) / 32768 }
                }
                if sampleRate != 16000 { samples = try AudioResampler.resample(samples, from: sampleRate) }
                try started().hear(samples)
            case "input_image_buffer.append":
                guard let b64 = object["image"] as? String, let data = Data(base64Encoded: b64) else {
                    throw LiveWire.Problem("input_image_buffer.append needs \"image\": a base64 PNG or JPEG")
                }
                let image = try ImageDecoder.decode(data: data)
                try started().show(image)
            case "input_audio_buffer.commit": try started().commit()
            case "response.cancel": lock.withLock { call }?.cancel()
            default: throw LiveWire.Problem("unknown event type '\(type)'")
            }
        } catch let p as LiveWire.Problem {
            sink.yield(LiveWire.error(p.message, code: "invalid_event"))
        } catch {
            sink.yield(LiveWire.error("\(error)", code: "invalid_media"))
        }
    }

    private func update(_ s: [String: Any]) throws {
        try lock.withLock {
            guard call == nil else { throw LiveWire.Problem("session.update must come before the first audio") }
            if let text = s["instructions"] as? String { instructions = text }
            if let m = s["modalities"] as? [String] { options.speak = m.contains("audio") }
            if let t = s["temperature"] as? Double {
                guard t >= 0 && t <= 2 else { throw LiveWire.Problem("temperature must be in [0, 2]") }
                options.generation.sampling.temperature = Float(t)
            }
            if let n = s["max_response_output_tokens"] as? Int {
                guard n >= 1 else { throw LiveWire.Problem("max_response_output_tokens must be at least 1") }
                options.generation.maxTokens = n
            }
            if let td = s["turn_detection"] as? [String: Any], let ms = td["silence_duration_ms"] as? Int {
                guard ms > 0 && ms <= 10000 else { throw LiveWire.Problem("silence_duration_ms must be in (0, 10000]") }
                options.silence = Double(ms) / 1000
            }
            if let r = s["input_sample_rate"] as? Int {
                guard [16000, 24000, 48000].contains(r) else { throw LiveWire.Problem("input_sample_rate must be 16000, 24000 or 48000") }
                sampleRate = r
            }
            if let h = s["hd_video"] as? Bool { hd = h }
            if let v = s["voice"] as? String {
                if let registered = voices.get(v) {
                    guard let samples = registered.samples else {
                        throw LiveWire.Problem("voice \(v) is longer than a live call's voice may be (30 s)")
                    }
                    voice = samples
                } else if v.hasPrefix("voice-") {
                    throw LiveWire.Problem("no voice \(v): register one with POST /v1/voices")
                } else {
                    guard let data = Data(base64Encoded: v) else { throw LiveWire.Problem("voice must be a base64 WAV file or a voice id") }
                    voice = try WAVDecoder().load16k(data)
                }
            }
        }
        sink.yield(LiveWire.object(["type": "session.updated", "session": description]))
    }

    /// The call, begun on the first audio or frame with the options given so far.
    private func started() throws -> LiveCall {
        try lock.withLock {
            if let call { return call }
            let model = engine.model
            let session = try OmniSession(model: model, tokenizer: engine.generator.tokenizer)
            session.maxSliceNums = hd ? 6 : 1
            let speech = options.speak ? try model.speech() : nil
            speaking = speech != nil
            let c = LiveCall(session: session, speech: speech, options: options, executor: executor) { [weak self] in self?.send($0) }
            c.start(system: instructions, voice: voice)
            call = c
            return c
        }
    }

    func close() {
        lock.withLock { call }?.close()
        executor.stop()
    }

    private func send(_ event: LiveCall.Event) {
        let ms = { (s: Double) in Int((s * 1000).rounded()) }
        switch event {
        case let .speechStarted(at):
            sink.yield(LiveWire.object(["type": "input_audio_buffer.speech_started", "audio_start_ms": ms(at)]))
        case let .speechEnded(at, detected):
            sink.yield(LiveWire.object(["type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms(at), "detected_ms": ms(detected)]))
            sink.yield(LiveWire.object(["type": "input_audio_buffer.committed"]))
        case let .heard(unit, seconds, prefill, _):
            sink.yield(LiveWire.object(["type": "input_audio_buffer.unit", "unit": unit, "audio_ms": ms(seconds), "prefill_ms": ms(prefill)]))
        case let .answerStarted(turn):
            let rid = "resp_\(id.dropFirst(5))_\(turn)"
            lock.withLock { responseID = rid }
            sink.yield(LiveWire.object(["type": "response.created", "response": ["id": rid, "object": "realtime.response", "status": "in_progress"]]))
        case let .text(t):
            let rid = lock.withLock { responseID }
            sink.yield(LiveWire.object(["type": speaking ? "response.audio_transcript.delta" : "response.text.delta", "response_id": rid, "delta": t]))
        case let .audio(chunk):
            guard !chunk.samples.isEmpty else { return }
            let rid = lock.withLock { responseID }
            sink.yield(LiveWire.object(["type": "response.audio.delta", "response_id": rid,
                                        "delta": audioBytes(chunk.samples, .pcm16).base64EncodedString()]))
        case let .answerFinished(_, answer):
            let rid = lock.withLock { responseID }
            sink.yield(LiveWire.object(["type": "response.done", "response": [
                "id": rid, "object": "realtime.response", "status": answer.interrupted ? "cancelled" : "completed",
                "output": [["type": "message", "role": "assistant", "content": [["type": speaking ? "audio" : "text", "transcript": answer.text]]]],
                "usage": ["output_tokens": answer.tokenIds.count, "audio_frames": answer.codes.count],
            ]]))
        case let .interrupted(turn):
            sink.yield(LiveWire.object(["type": "response.interrupted", "response_id": "resp_\(id.dropFirst(5))_\(turn)"]))
        case let .failed(message):
            sink.yield(LiveWire.error(message, code: "live_error"))
        }
    }
}

enum LiveWire {
    struct Problem: Error { let message: String; init(_ m: String) { message = m } }

    static func object(_ o: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func error(_ message: String, code: String) -> String {
        object(["type": "error", "error": ["type": "invalid_request_error", "code": code, "message": message]])
    }
}
