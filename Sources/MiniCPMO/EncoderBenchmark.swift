import Foundation
import Media

/// Timings of the multimodal encoders, as `minicpmo bench` reports them.
public struct EncoderTiming: Sendable, Codable {
    public var component: String
    /// What one run processes, e.g. "448x448 slice (1024 patches) -> 64 embeddings".
    public var input: String
    public var medianSeconds: Double
    public var samples: [Double]

    enum CodingKeys: String, CodingKey {
        case component, input, samples
        case medianSeconds = "median_seconds"
    }
}

public enum EncoderBenchmark {
    /// Every encoder the checkpoint has, each timed `repeats` times after one warm-up run. Needs only
    /// the encoders' tensors (a checkpoint without language-model weights works).
    /// - speechStreams: with more than one, also the TTS of that many utterances stepped together.
    public static func run(directory: String, repeats: Int, quantize: WeightFormat? = nil, speechStreams: Int = 1,
                           progress: (String) -> Void = { _ in }) throws -> [EncoderTiming] {
        let config = try ModelConfig(directory: directory)
        let checkpoint = try Checkpoint(directory: directory)
        let encoders = MiniCPMOModel.encoderQuantization(for: Linear.effectivePrefillPrecision)
        // a component whose tensors are absent (a checkpoint made for another encoder) is skipped
        return measure(repeats: repeats, speechStreams: speechStreams, progress: progress,
                       vision: { try VisionConfig.decode(config).map { try VisionModel.load(checkpoint, config: $0, quantize: encoders) } },
                       audio: { try AudioConfig.decode(config).map { try AudioModel.load(checkpoint, config: $0, quantize: encoders) } },
                       speech: {
                           try TTSConfig.decode(config) == nil ? nil
                               : try MiniCPMOModel.loadSpeech(directory: directory, config: config, checkpoint: checkpoint, quantize: quantize)
                       })
    }

    /// The encoders of a loaded model (none for a plain language model).
    public static func run(_ model: MiniCPMOModel, repeats: Int, progress: (String) -> Void = { _ in }) throws -> [EncoderTiming] {
        guard model.config.kind == .minicpmo else { return [] }
        return measure(repeats: repeats, progress: progress, vision: { try model.vision() }, audio: { try model.audio() },
                       speech: { try model.speech() })
    }

    /// Times each component that loads; one that does not is reported and skipped.
    static func measure(repeats: Int, speechStreams: Int = 1, progress: (String) -> Void, vision: () throws -> VisionModel?,
                        audio: () throws -> AudioModel?, speech: () throws -> SpeechModel?) -> [EncoderTiming] {
        var out: [EncoderTiming] = []
        func attempt(_ what: String, _ body: () throws -> [EncoderTiming]) {
            do {
                let timings = try body()
                for t in timings { progress(String(format: "%@: %.3f (%@)", t.component, t.medianSeconds, t.input)) }
                out += timings
            } catch {
                progress("\(what) not timed: \(error)")
            }
        }
        attempt("vision encoder") { try vision().map { [vision448($0, repeats: repeats)] } ?? [] }
        attempt("audio encoder") { try audio().map { audio30s($0, repeats: repeats) } ?? [] }
        attempt("speech output") { try speech().map { self.speech($0, repeats: repeats, streams: speechStreams) } ?? [] }
        return out
    }

    /// SigLIP + resampler on one 448×448 slice (the size every slice of a large image has).
    public static func vision448(_ m: VisionModel, repeats: Int) -> EncoderTiming {
        let p = m.config.siglip.patchSize, side = m.config.slice.scaleResolution / p
        var rng = Xoshiro256(seed: 3)
        let strip = (0..<(3 * p * side * side * p)).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
        let samples = time(repeats: repeats) {
            _ = strip.withUnsafeBufferPointer { m.forward(strip: $0.baseAddress!, rows: side, cols: side) }
        }
        let px = side * p
        return EncoderTiming(component: "vision", input: "\(px)x\(px) slice (\(side * side) patches) -> \(m.config.queryNum) embeddings",
                             medianSeconds: Benchmark.median(samples), samples: samples)
    }

    /// 30 s of audio (a deterministic chirp with noise): log-mel, then encoder + projector + pooling.
    public static func audio30s(_ m: AudioModel, repeats: Int) -> [EncoderTiming] {
        let wave = Benchmark.chirp(seconds: WhisperFeatures.pieceSamples / 16000)
        var mel: (values: [Float], frames: Int) = ([], 0)
        let melSamples = time(repeats: repeats) { mel = WhisperFeatures.logMel(samples16k: wave) }
        let modelSamples = time(repeats: repeats) {
            _ = mel.values.withUnsafeBufferPointer { m.forward(mel: $0.baseAddress!, frames: mel.frames) }
        }
        let tokens = m.tokens(frames: mel.frames)
        return [
            EncoderTiming(component: "audio-mel", input: "30 s at 16 kHz -> \(mel.frames) log-mel frames",
                          medianSeconds: Benchmark.median(melSamples), samples: melSamples),
            EncoderTiming(component: "audio", input: "\(mel.frames) mel frames -> encoder, projector, pooling -> \(tokens) embeddings",
                          medianSeconds: Benchmark.median(modelSamples), samples: modelSamples),
        ]
    }

    /// Speech output on 100 frames (2.13 s of audio; EOS suppressed so every run makes all of them):
    /// the TTS transformer after its first text prefill, DVAE + Vocos, their real-time factor (wall
    /// seconds per audio second, < 1 is faster than real time; the `median_seconds` of the
    /// "speech-rtf" row), and the time from a streamed text's first words to the first audio chunk.
    /// With `streams` > 1, also that many utterances' TTS stepped together ("speech-tts-batched").
    public static func speech(_ s: SpeechModel, repeats: Int, frames: Int = 100, streams: Int = 1) -> [EncoderTiming] {
        var rng = Xoshiro256(seed: 9)
        let speaker = (0..<s.tts.config.llmDim).map { _ in Float(rng.next() % 2001) / 1000 - 1 }
        let words = "the quick brown fox jumps over the lazy dog while twelve singers hum a gentle tune"
        func primed() -> ConditionalChatTTS.Context {
            let ctx = s.tts.makeContext(text: s.tokenizer.encode(words), specials: s.specials,
                                        speaker: s.tts.projectSpeaker(speaker), maxFrames: frames + 4)
            s.tts.prefillText(ctx, begin: 0, end: s.tts.config.streamingTextChunkSize + 2)
            return ctx
        }
        var codes: [[Int]] = []
        let ttsSamples = time(repeats: repeats, setup: primed) { ctx in
            var sampler = CodeSampler(seed: 1)
            s.tts.generate(ctx, maxNew: frames, minNew: frames, sampler: &sampler)
            codes = ctx.frames
        }
        let batched = streams < 2 ? [] : time(repeats: repeats, setup: { (0..<streams).map { _ in primed() } }) { ctxs in
            var samplers = (0..<streams).map { CodeSampler(seed: UInt64(1 + $0)) }
            s.tts.generate(ctxs, maxNew: frames, minNew: frames, samplers: &samplers)
        }
        var seconds = 0.0
        let renderSamples = time(repeats: repeats) { seconds = s.render(codes).seconds }
        let rtf = zip(ttsSamples, renderSamples).map { ($0 + $1) / seconds }
        let firstChunk = time(repeats: repeats) {
            let done = CancellationFlag()
            let streamer = SpeechStreamer(speech: s, speakerHidden: speaker, sampler: CodeSampler(seed: 2)) { _ in done.cancel() }
            var text = ""
            for w in words.split(separator: " ") where !done.isCancelled {
                text += w + " "
                streamer.update(text: text)
            }
            if !done.isCancelled { streamer.finish() }
        }
        let what = "\(codes.count) frames = \(String(format: "%.2f", seconds)) s of 24 kHz audio"
        return [
            EncoderTiming(component: "speech-tts", input: "\(what): TTS transformer", medianSeconds: Benchmark.median(ttsSamples), samples: ttsSamples),
        ] + (streams > 1 ? [
            EncoderTiming(component: "speech-tts-batched", input: "\(streams) utterances × \(codes.count) frames stepped together: TTS transformer",
                          medianSeconds: Benchmark.median(batched), samples: batched),
        ] : []) + [
            EncoderTiming(component: "speech-render", input: "\(what): DVAE + Vocos", medianSeconds: Benchmark.median(renderSamples), samples: renderSamples),
            EncoderTiming(component: "speech-rtf", input: "real-time factor: wall seconds per audio second (TTS + DVAE + Vocos)", medianSeconds: Benchmark.median(rtf), samples: rtf),
            EncoderTiming(component: "speech-first-chunk", input: "streamed text → first audio chunk (seconds)", medianSeconds: Benchmark.median(firstChunk), samples: firstChunk),
        ]
    }

    static func time(repeats: Int, _ body: () -> Void) -> [Double] {
        time(repeats: repeats, setup: {}, body)
    }

    /// `body` timed on what an untimed `setup` makes for each run.
    static func time<T>(repeats: Int, setup: () -> T, _ body: (T) -> Void) -> [Double] {
        body(setup())  // warm-up: faults the weights in
        return (0..<repeats).map { _ in
            let input = setup()
            let t0 = Date()
            body(input)
            return Date().timeIntervalSince(t0)
        }
    }
}
