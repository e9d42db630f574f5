import Foundation
import Hummingbird
import Logging
import Media
import MiniCPMO
import NIOCore
import Runtime

/// A chat completion request checked and turned into the runtime's terms.
struct ChatPlan {
    var job: ChatJob
    var stream: Bool
    var includeUsage: Bool
    var audioFormat: AudioFormat?
    var returnTokenIds = false

    enum AudioFormat: String { case wav, pcm16 }
}

/// OpenAI's built-in voice names: accepted, and spoken in the model's own default voice.
let openAIVoiceNames: Set<String> = ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin", "cedar"]

extension MiniCPMOServer {
    func plan(_ r: ChatCompletionRequest) async throws -> ChatPlan {
        guard !r.messages.isEmpty else { throw APIError.invalid("'messages' must hold at least one message", param: "messages") }
        if let n = r.n, n != 1 { throw APIError.invalid("only n = 1 is supported", param: "n") }
        if let t = r.temperature, !(t >= 0 && t <= 2) { throw APIError.invalid("'temperature' must be between 0 and 2", param: "temperature") }
        if let p = r.topP, !(p > 0 && p <= 1) { throw APIError.invalid("'top_p' must be in (0, 1]", param: "top_p") }
        if let k = r.topK, k < 0 { throw APIError.invalid("'top_k' must be ≥ 0", param: "top_k") }
        if let p = r.repetitionPenalty, !(p > 0 && p.isFinite) { throw APIError.invalid("'repetition_penalty' must be > 0", param: "repetition_penalty") }
        for (name, v) in [("frequency_penalty", r.frequencyPenalty), ("presence_penalty", r.presencePenalty)] {
            if let v, v != 0 {
                throw APIError.invalid("'\(name)' is not supported (MiniCPM-o is sampled with a repetition penalty: use 'repetition_penalty', e.g. 1.05)", param: name)
            }
        }
        if let f = r.responseFormat, f.type != "text" {
            throw APIError.invalid("response_format '\(f.type)' is not supported (only 'text')", param: "response_format")
        }
        if let tools = r.tools, !tools.isEmpty { throw APIError.invalid("tools are not supported by this model", param: "tools") }
        if r.logprobs == true { throw APIError.invalid("logprobs are not supported", param: "logprobs") }
        let maxTokens = r.maxCompletionTokens ?? r.maxTokens ?? 2048
        guard maxTokens >= 1 else { throw APIError.invalid("'max_tokens' must be at least 1", param: r.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens") }
        let stops = r.stop?.values ?? []
        guard stops.count <= 16 else { throw APIError.invalid("at most 16 stop strings", param: "stop") }

        let modalities = r.modalities ?? ["text"]
        for m in modalities where m != "text" && m != "audio" {
            throw APIError.invalid("unknown modality '\(m)' (text, audio)", param: "modalities")
        }
        let speaks = modalities.contains("audio")
        if r.audio != nil && !speaks { throw APIError.invalid("'audio' needs modalities [\"text\", \"audio\"]", param: "modalities") }

        var sampling = SamplingParameters()
        if let t = r.temperature { sampling.temperature = Float(t) }
        if let p = r.topP { sampling.topP = Float(p) }
        if let k = r.topK { sampling.topK = k }
        if let p = r.repetitionPenalty { sampling.repetitionPenalty = Float(p) }
        if let s = r.seed { sampling.seed = UInt64(bitPattern: s) }
        var options = GenerationOptions(sampling: sampling, maxTokens: maxTokens, stopStrings: stops)
        options.prefillChunk = configuration.prefillChunk

        var messages: [ChatInput] = []
        for (i, m) in r.messages.enumerated() {
            messages.append(try await input(m, index: i))
        }
        var speech: SpeechRequest?
        var format: ChatPlan.AudioFormat?
        if speaks {
            let voiceName = r.audio?.voice ?? "default"
            let stream = r.stream ?? false
            format = try audioFormat(r.audio?.format ?? (stream ? "pcm16" : "wav"), param: "audio.format")
            if stream && format != .pcm16 {
                throw APIError.invalid("streamed audio is pcm16 (24 kHz, 16-bit little-endian mono chunks); ask for audio.format \"pcm16\"", param: "audio.format")
            }
            speech = SpeechRequest(voice: try voice(voiceName, param: "audio.voice") { .clone($0) }, streaming: stream,
                                   sampler: CodeSampler(seed: sampling.seed ?? 0, greedy: sampling.temperature == 0))
        }
        return ChatPlan(job: ChatJob(messages: messages, options: options, speech: speech), stream: r.stream ?? false,
                        includeUsage: r.streamOptions?.includeUsage ?? false, audioFormat: format, returnTokenIds: r.returnTokenIds ?? false)
    }

    func audioFormat(_ name: String, param: String) throws -> ChatPlan.AudioFormat {
        switch name {
        case "wav": return .wav
        case "pcm16", "pcm": return .pcm16
        default: throw APIError.invalid("audio format '\(name)' is not supported (wav, pcm16)", param: param)
        }
    }

    /// A registered voice as the voice prompt `make` builds, nil for the default voice.
    func voice(_ name: String, param: String, _ make: (EncodedAudio) -> VoicePrompt) throws -> VoicePrompt? {
        if name == "default" || openAIVoiceNames.contains(name) { return nil }
        guard let v = voices.get(name) else {
            throw APIError.invalid("unknown voice '\(name)' (use 'default' or the id of a voice registered with POST /v1/voices)", param: param)
        }
        return make(v.clip)
    }

    func input(_ m: ChatCompletionRequest.Message, index i: Int) async throws -> ChatInput {
        let role: ChatMessage.Role
        switch m.role {
        case "system", "developer": role = .system
        case "user": role = .user
        case "assistant": role = .assistant
        default: throw APIError.invalid("role '\(m.role)' is not supported (system, user, assistant)", param: "messages[\(i)].role")
        }
        switch m.content {
        case let .text(s)?:
            return ChatInput(role: role, parts: [.text(s)])
        case let .parts(parts)?:
            var out: [ChatInput.Part] = []
            for (j, p) in parts.enumerated() {
                let param = "messages[\(i)].content[\(j)]"
                switch p {
                case let .text(t): out.append(.text(t))
                case let .imageURL(url): out.append(.image(try await media(url: url, param: param)))
                case let .inputAudio(data, format):
                    guard format == "wav" else { throw APIError.invalid("input_audio format '\(format)' is not supported (wav)", param: param + ".input_audio.format") }
                    guard let bytes = Data(base64Encoded: data), !bytes.isEmpty else {
                        throw APIError.invalid("input_audio data is not valid base64", param: param + ".input_audio.data")
                    }
                    out.append(.audio(bytes))
                }
            }
            return ChatInput(role: role, parts: out)
        case nil:
            if role == .assistant, let id = m.audio?.id {
                guard let t = audioTranscripts.transcript(id) else {
                    throw APIError.invalid("unknown or expired audio id '\(id)'", param: "messages[\(i)].audio.id")
                }
                return ChatInput(role: role, parts: [.text(t)])
            }
            throw APIError.invalid("message \(i) has no content", param: "messages[\(i)].content")
        }
    }

    /// The bytes of an `image_url`: a base64 `data:` URL, or (with `--allow-remote-media`) fetched.
    func media(url: String, param: String) async throws -> Data {
        if url.hasPrefix("data:") {
            guard let comma = url.firstIndex(of: ","), url[..<comma].hasSuffix(";base64") else {
                throw APIError.invalid("a data: URL must be base64 (data:image/png;base64,…)", param: param)
            }
            guard let d = Data(base64Encoded: String(url[url.index(after: comma)...])), !d.isEmpty else {
                throw APIError.invalid("the data: URL's base64 is invalid", param: param)
            }
            return d
        }
        if url.hasPrefix("http://") || url.hasPrefix("https://") {
            guard let fetcher = remoteMedia else {
                throw APIError.invalid("remote media URLs are off on this server (start it with --allow-remote-media, or send a data: URL)", param: param)
            }
            return try await fetcher.fetch(url, param: param)
        }
        throw APIError.invalid("image_url must be a data: URL or an http(s) URL", param: param)
    }

    // MARK: the endpoint

    func chatCompletions(_ request: Request, context: ServerContext) async throws -> Response {
        let scheduler = try state.scheduler()
        let body: ChatCompletionRequest = try await decodeJSON(request)
        let plan = try await self.plan(body)
        let started = ContinuousClock.now
        let submission = try scheduler.submit(plan.job)
        let id = "chatcmpl-" + randomID(24)
        let meta = CompletionMeta(id: id, created: Int(Date().timeIntervalSince1970), model: configuration.modelName, started: started,
                                  logger: context.logger)
        if plan.stream {
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: ResponseBody { writer in
                                let watch = cancelOnDisconnect(context.channel, submission)
                                defer { watch.cancel() }
                                try await self.writeStream(submission.events, plan: plan, meta: meta, channel: context.channel, writer: &writer)
                            })
        }
        let outcome: ChatOutcome
        var ttft: Duration?
        let watch = cancelOnDisconnect(context.channel, submission)
        defer { watch.cancel() }
        do {
            var finished: ChatOutcome?
            for try await event in submission.events {
                if case .text = event, ttft == nil { ttft = ContinuousClock.now - started }
                if case let .finished(o) = event { finished = o }
            }
            guard let finished else { throw RuntimeError.cancelled }
            outcome = finished
        } catch {
            // counted and logged by the error middleware
            throw APIError.from(context.channel.isActive ? error : RuntimeError.cancelled)
        }
        meta.log(status: 200, outcome: outcome, ttft: ttft, metrics: metrics)
        var message = ChatCompletion.Message(content: outcome.result.text)
        if let format = plan.audioFormat {
            message.content = nil
            message.audio = finishedAudio(outcome, format: format, transcript: outcome.result.text)
        }
        let completion = ChatCompletion(id: id, created: meta.created, model: meta.model,
                                        choices: [.init(body: message, finishReason: finishReason(outcome.result.finishReason),
                                                        tokenIds: plan.returnTokenIds ? outcome.result.tokenIds : nil)],
                                        usage: usage(outcome), systemFingerprint: fingerprint)
        return jsonResponse(completion)
    }

    func finishedAudio(_ o: ChatOutcome, format: ChatPlan.AudioFormat, transcript: String) -> AudioPayload {
        let id = "audio_" + randomID(24)
        audioTranscripts.add(id: id, transcript: transcript)
        return AudioPayload(id: id, data: audioBytes(o.wave ?? [], format).base64EncodedString(), transcript: transcript,
                            expiresAt: Int(Date().timeIntervalSince1970) + AudioTranscripts.lifetime)
    }

    func usage(_ o: ChatOutcome) -> Usage {
        Usage(promptTokens: o.result.timings.promptTokens, completionTokens: o.result.timings.generatedTokens,
              cachedTokens: o.result.timings.cachedTokens)
    }

    func finishReason(_ r: FinishReason) -> String { r == .length ? "length" : "stop" }

    /// Server-sent events: a role chunk, text (or transcript and audio) deltas, the finish chunk, the
    /// usage chunk when asked for, then `data: [DONE]`. An error after the headers went out is sent
    /// as an error event.
    func writeStream(_ stream: AsyncThrowingStream<ChatEvent, Error>, plan: ChatPlan, meta: CompletionMeta, channel: any Channel,
                     writer: inout any ResponseBodyWriter) async throws {
        func chunk(_ delta: ChatCompletionChunk.Delta, finish: String? = nil, tokenIds: [Int]? = nil) -> ChatCompletionChunk {
            ChatCompletionChunk(id: meta.id, created: meta.created, model: meta.model,
                                choices: [.init(body: delta, finishReason: finish, tokenIds: tokenIds)], systemFingerprint: fingerprint)
        }
        func event<T: Encodable>(_ value: T) -> ByteBuffer {
            var b = ByteBuffer(string: "data: ")
            b.writeBytes(jsonBytes(value))
            b.writeString("\n\n")
            return b
        }
        let audioID = "audio_" + randomID(24)
        let expires = Int(Date().timeIntervalSince1970) + AudioTranscripts.lifetime
        var ttft: Duration?
        var finished: ChatOutcome?
        try await writer.write(event(chunk(.init(role: "assistant", content: plan.audioFormat == nil ? "" : nil))))
        do {
            for try await e in stream {
                switch e {
                case let .text(piece):
                    if ttft == nil { ttft = ContinuousClock.now - meta.started }
                    if plan.audioFormat != nil {
                        try await writer.write(event(chunk(.init(audio: AudioPayload(id: audioID, transcript: piece, expiresAt: expires)))))
                    } else {
                        try await writer.write(event(chunk(.init(content: piece))))
                    }
                case let .audio(c):
                    guard !c.samples.isEmpty else { continue }
                    let pcm = audioBytes(c.samples, .pcm16).base64EncodedString()
                    try await writer.write(event(chunk(.init(audio: AudioPayload(id: audioID, data: pcm, expiresAt: expires)))))
                case let .finished(o):
                    finished = o
                    if plan.audioFormat != nil { audioTranscripts.add(id: audioID, transcript: o.result.text) }
                    try await writer.write(event(chunk(.init(), finish: finishReason(o.result.finishReason),
                                                       tokenIds: plan.returnTokenIds ? o.result.tokenIds : nil)))
                    if plan.includeUsage {
                        try await writer.write(event(ChatCompletionChunk(id: meta.id, created: meta.created, model: meta.model, choices: [],
                                                                         usage: usage(o), systemFingerprint: fingerprint)))
                    }
                }
            }
            guard finished != nil else { throw RuntimeError.cancelled }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
            meta.log(status: 200, outcome: finished, ttft: ttft, metrics: metrics)
        } catch {
            // a write to a closed connection is the client leaving, not a server failure
            let e = APIError.from(channel.isActive ? error : RuntimeError.cancelled)
            meta.log(status: Int(e.status.code), outcome: nil, ttft: ttft, metrics: metrics)
            guard channel.isActive, e.code != "cancelled" else { throw error }
            try? await writer.write(event(e.body))
            try? await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
    }
}

/// 24 kHz speech as a WAV file or as its bare 16-bit little-endian samples (the WAV without its
/// 44-byte header).
func audioBytes(_ samples: [Float], _ format: ChatPlan.AudioFormat) -> Data {
    let wav = WAVWriter.encode(samples, sampleRate: SpeechOutput.sampleRate)
    return format == .wav ? wav : wav.dropFirst(44)
}

/// What one completion's log line and metrics need.
struct CompletionMeta: Sendable {
    var id: String
    var created: Int
    var model: String
    var started: ContinuousClock.Instant
    var logger: Logger

    func log(status: Int, outcome: ChatOutcome?, ttft: Duration?, metrics: ServerMetrics) {
        let elapsed = ContinuousClock.now - started
        metrics.request(endpoint: "chat_completions", status: status)
        metrics.duration.recordNanoseconds(elapsed.nanoseconds)
        if let ttft { metrics.timeToFirstToken.recordNanoseconds(ttft.nanoseconds) }
        var fields: Logger.Metadata = ["id": "\(id)", "status": "\(status)", "seconds": "\(String(format: "%.3f", elapsed.seconds))"]
        if let ttft { fields["ttft_s"] = "\(String(format: "%.3f", ttft.seconds))" }
        if let t = outcome?.result.timings {
            metrics.promptTokens.increment(by: t.promptTokens)
            metrics.cachedTokens.increment(by: t.cachedTokens)
            metrics.generatedTokens.increment(by: t.generatedTokens)
            if t.cachedTokens > 0 { metrics.prefixHits.increment() }
            fields["prompt_tokens"] = "\(t.promptTokens)"
            fields["cached_tokens"] = "\(t.cachedTokens)"
            fields["generated_tokens"] = "\(t.generatedTokens)"
            fields["tok_s"] = "\(String(format: "%.1f", t.decodeTokensPerSecond))"
        }
        logger.info("chat completion", metadata: fields)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
