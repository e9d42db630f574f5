import Foundation
import Hummingbird
import Media
import MiniCPMO
import MultipartKit
import Runtime

/// One field of a multipart/form-data body.
struct FormPart {
    var name: String
    var filename: String?
    var data: Data
}

extension MiniCPMOServer {
    /// The parts of a multipart/form-data body (MultipartKit's parser).
    func formParts(_ request: Request) async throws -> [FormPart] {
        let type = request.headers[.contentType] ?? ""
        guard type.lowercased().hasPrefix("multipart/form-data"),
              let b = type.split(separator: ";").lazy.map({ $0.trimmingCharacters(in: .whitespaces) })
                .first(where: { $0.lowercased().hasPrefix("boundary=") }) else {
            throw APIError.invalid("expected a multipart/form-data body with a boundary")
        }
        let boundary = String(b.dropFirst("boundary=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        guard !boundary.isEmpty, boundary.count <= 200 else { throw APIError.invalid("the multipart boundary is invalid") }
        let buffer = try await body(request)
        let parser = MultipartParser(boundary: boundary)
        var parts: [FormPart] = []
        var headers: [(String, String)] = []
        var data = Data()
        parser.onHeader = { headers.append(($0, $1)) }
        parser.onBody = { data.append(contentsOf: $0.readableBytesView) }
        parser.onPartComplete = {
            let disposition = headers.first { $0.0.lowercased() == "content-disposition" }?.1 ?? ""
            parts.append(FormPart(name: Self.dispositionValue(disposition, "name") ?? "", filename: Self.dispositionValue(disposition, "filename"),
                                  data: data))
            headers = []
            data = Data()
        }
        do { try parser.execute(buffer) } catch { throw APIError.invalid("the multipart body is malformed: \(error)") }
        guard !parts.isEmpty else { throw APIError.invalid("the multipart body holds no parts") }
        return parts
    }

    static func dispositionValue(_ header: String, _ key: String) -> String? {
        for item in header.split(separator: ";") {
            let kv = item.trimmingCharacters(in: .whitespaces)
            guard kv.hasPrefix(key + "=") else { continue }
            return String(kv.dropFirst(key.count + 1)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return nil
    }

    /// Runs a job to its end; the one-shot endpoints (transcription, speech) use it.
    func complete(_ job: ChatJob, endpoint: String, context: ServerContext) async throws -> ChatOutcome {
        let scheduler = try state.scheduler()
        let submission = try scheduler.submit(job)
        let watch = cancelOnDisconnect(context.channel, submission)
        defer { watch.cancel() }
        let started = ContinuousClock.now
        var outcome: ChatOutcome?
        for try await e in submission.events { if case let .finished(o) = e { outcome = o } }
        guard let outcome else { throw RuntimeError.cancelled }
        let t = outcome.result.timings
        metrics.request(endpoint: endpoint, status: 200)
        metrics.promptTokens.increment(by: t.promptTokens)
        metrics.generatedTokens.increment(by: t.generatedTokens)
        context.logger.info("\(endpoint)", metadata: ["status": "200", "prompt_tokens": "\(t.promptTokens)", "generated_tokens": "\(t.generatedTokens)",
                                                      "seconds": "\(String(format: "%.3f", (ContinuousClock.now - started).seconds))"])
        return outcome
    }

    /// `POST /v1/audio/transcriptions`: multipart `file` (WAV), `model`, `language`, `prompt`,
    /// `response_format` (json, text), `temperature` (default 0); MiniCPM-o's ASR prompt.
    func transcriptions(_ request: Request, context: ServerContext) async throws -> Response {
        _ = try state.scheduler()
        let parts = try await formParts(request)
        func field(_ n: String) -> String? { parts.first { $0.name == n }.map { String(decoding: $0.data, as: UTF8.self) } }
        guard let file = parts.first(where: { $0.name == "file" }), !file.data.isEmpty else {
            throw APIError.invalid("'file' (a WAV recording) is required", param: "file")
        }
        let format = field("response_format") ?? "json"
        guard ["json", "text"].contains(format) else {
            throw APIError.invalid("response_format '\(format)' is not supported (json, text)", param: "response_format")
        }
        var sampling = SamplingParameters.greedy
        if let t = field("temperature") {
            guard let v = Float(t), v >= 0, v <= 2 else { throw APIError.invalid("'temperature' must be a number between 0 and 2", param: "temperature") }
            if v > 0 { sampling = SamplingParameters(temperature: v) }
        }
        // Whisper's own cap on a transcript's length
        var options = GenerationOptions(sampling: sampling, maxTokens: 448)
        options.prefillChunk = configuration.prefillChunk
        let job = ChatJob(messages: [ChatInput(role: .user, parts: [.text(TaskPrompt.transcribe), .audio(file.data)])], options: options)
        let text = try await complete(job, endpoint: "transcriptions", context: context).result.text
        if format == "text" {
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return jsonResponse(Transcription(text: text))
    }

    /// `POST /v1/audio/speech`: `input` read aloud through MiniCPM-o's text-to-speech prompt ("Please
    /// read the text below." and the text, with the voice-cloning turn before it for a registered
    /// voice), the text greedy and the speech sampled with seed 0; `response_format` wav or pcm.
    func speech(_ request: Request, context: ServerContext) async throws -> Response {
        _ = try state.scheduler()
        let r: SpeechRequestBody = try await decodeJSON(request)
        guard !r.input.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError.invalid("'input' is empty", param: "input")
        }
        guard r.input.count <= 4096 else { throw APIError.invalid("'input' is longer than 4096 characters", param: "input") }
        let format = try audioFormat(r.responseFormat ?? "wav", param: "response_format")
        if let s = r.speed, s != 1 { throw APIError.invalid("only speed 1 is supported", param: "speed") }
        let voice = try self.voice(r.voice ?? "default", param: "voice") { .voiceCloning($0) }
        // reading aloud repeats the input: a budget of twice its length keeps a runaway answer short
        var options = GenerationOptions(sampling: .greedy, maxTokens: 2 * r.input.utf8.count / 3 + 32)
        options.prefillChunk = configuration.prefillChunk
        let job = ChatJob(messages: [ChatInput(role: .user, parts: [.text(TaskPrompt.readAloud), .text(r.input)])], options: options,
                          speech: SpeechRequest(voice: voice, streaming: false))
        let outcome = try await complete(job, endpoint: "speech", context: context)
        return Response(status: .ok, headers: [.contentType: format == .wav ? "audio/wav" : "audio/pcm"],
                        body: .init(byteBuffer: ByteBuffer(bytes: audioBytes(outcome.wave ?? [], format))))
    }

    /// `POST /v1/voices`: a WAV recording (multipart `file`, or the raw body as audio/wav) whose voice
    /// answers may then take (`audio.voice` / `voice` = the returned id).
    func addVoice(_ request: Request, context: ServerContext) async throws -> Response {
        let scheduler = try state.scheduler()
        let data: Data
        if (request.headers[.contentType] ?? "").lowercased().hasPrefix("multipart/form-data") {
            guard let f = try await formParts(request).first(where: { $0.name == "file" }), !f.data.isEmpty else {
                throw APIError.invalid("'file' (a WAV recording) is required", param: "file")
            }
            data = f.data
        } else {
            data = Data(try await body(request).readableBytesView)
            guard !data.isEmpty else { throw APIError.invalid("send a WAV recording as the body or as multipart 'file'", param: "file") }
        }
        // refused before the encoder runs, not after
        guard let format = try? WAVDecoder().inspect(data) else { throw APIError.invalid("the recording is not a WAV file", param: "file", code: "invalid_media") }
        guard format.duration <= 60 else { throw APIError.invalid("a voice recording may be at most 60 s long", param: "file") }
        let clip = try await scheduler.perform { engine in try engine.encodeAudio(data) }
        // live calls encode their voice themselves, from the samples (up to a unit's length)
        let live = format.duration <= Double(OmniSession.maxUnitSamples) / 16000
            ? (try? WAVDecoder().load16k(data)).flatMap { $0.count <= OmniSession.maxUnitSamples ? $0 : nil } : nil
        let v = voices.add(clip, samples: live)
        metrics.request(endpoint: "voices", status: 201)
        return jsonResponse(VoiceInfo(id: v.id, created: v.created, seconds: clip.seconds), status: .created)
    }
}
