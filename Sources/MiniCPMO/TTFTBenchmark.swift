import Foundation
import Media

/// Time to first token for the three requests a user waits longest on (`minicpmo bench --ttft`).
public struct TTFTCase: Sendable, Codable {
    /// "photo", "audio" or "text".
    public var name: String
    /// What the request holds, e.g. "1344x1008 photo (7 model images) + a question".
    public var input: String
    public var promptTokens: Int
    /// Medians over the repeats: image or audio encoding, the prompt's prefill, the first decode step
    /// after it; the first token comes after encode + prefill.
    public var encodeSeconds: Double
    public var prefillSeconds: Double
    public var firstDecodeStepSeconds: Double
    public var timeToFirstTokenSeconds: Double
    /// Per repeat: encode + prefill.
    public var ttftSamples: [Double]

    enum CodingKeys: String, CodingKey {
        case name, input, ttftSamples = "ttft_samples"
        case promptTokens = "prompt_tokens", encodeSeconds = "encode_seconds", prefillSeconds = "prefill_seconds"
        case firstDecodeStepSeconds = "first_decode_step_seconds", timeToFirstTokenSeconds = "time_to_first_token_seconds"
    }

    init(name: String, input: String, promptTokens: Int, encode: [Double], prefill: [Double], step: [Double]) {
        self.name = name
        self.input = input
        self.promptTokens = promptTokens
        encodeSeconds = Benchmark.median(encode)
        prefillSeconds = Benchmark.median(prefill)
        firstDecodeStepSeconds = Benchmark.median(step)
        ttftSamples = zip(encode, prefill).map(+)
        timeToFirstTokenSeconds = Benchmark.median(ttftSamples)
    }
}

public struct TTFTBenchmarkResult: Sendable, Codable {
    public var model: String
    public var weights: String
    public var threads: Int
    /// The activations' precision in prefill and the encoders ("f32", "bf16" or "int8").
    public var prefillPrecision: String
    public var repeats: Int
    public var cases: [TTFTCase]
    public var peakRSSBytes: Int

    enum CodingKeys: String, CodingKey {
        case model, weights, threads, repeats, cases
        case prefillPrecision = "prefill_precision", peakRSSBytes = "peak_rss_bytes"
    }
}

extension Benchmark {
    /// The photo is 1344×1008 by default (the slicing makes a source image and a 3×2 grid of 448×448 slices), the
    /// audio 30 s; both come with a short question in the chat template, as a user sends them. A case
    /// whose encoder the checkpoint lacks is skipped. Each repeat encodes again and prefills into an
    /// empty cache; one cheap untimed pass of each first faults the weights in.
    public static func ttft(_ model: MiniCPMOModel, repeats: Int, textTokens: Int = 512, photo: (width: Int, height: Int) = (1344, 1008),
                            chunk: Int = 512,
                            progress: (String) -> Void = { _ in }) throws -> TTFTBenchmarkResult {
        let llm = model.llm
        let pool = llm.makeCachePool()
        let multimodal = model.config.kind == .minicpmo
        let hasVision = multimodal && (try? VisionConfig.decode(model.config)) != nil
        let hasAudio = multimodal && (try? AudioConfig.decode(model.config)) != nil

        /// Encodes (returning the prompt), then prefills and takes one decode step, `repeats` times.
        func measure(_ name: String, _ input: String, encode: () throws -> Prompt) throws -> TTFTCase {
            var enc: [Double] = [], pre: [Double] = [], step: [Double] = [], tokens = 0
            for r in 0..<repeats {
                let t0 = Date()
                let prompt = try encode()
                let t1 = Date()
                let session = LanguageSession(model: llm, pool: pool)
                let token = Sampler.argmax(try session.prefill(prompt, chunk: chunk).logits)
                let t2 = Date()
                _ = try session.step(token)
                let t3 = Date()
                session.reset()
                enc.append(t1.timeIntervalSince(t0))
                pre.append(t2.timeIntervalSince(t1))
                step.append(t3.timeIntervalSince(t2))
                tokens = prompt.tokens.count
                progress(String(format: "%@ repeat %d: encode %.3f s, prefill %.3f s (%d tokens), first step %.3f s",
                                name, r + 1, enc[r], pre[r], tokens, step[r]))
            }
            return TTFTCase(name: name, input: input, promptTokens: tokens, encode: enc, prefill: pre, step: step)
        }

        let tokenizer = multimodal ? try model.tokenizer() : nil
        // warm-up: a small image, a second of audio, a short prefill
        if hasVision, let tokenizer {
            _ = try model.prompt([.user([.image(try model.encodeImage(try syntheticPhoto(width: 448, height: 448))), .text("?")])],
                                 tokenizer: tokenizer)
        }
        if hasAudio { _ = try model.encodeAudio(samples16k: chirp(seconds: 1)) }
        _ = try LanguageSession(model: llm, pool: pool).prefill(Array(0..<16), chunk: chunk)

        var cases: [TTFTCase] = []
        if hasVision, let tokenizer {
            let image = try syntheticPhoto(width: photo.width, height: photo.height)
            var images = 0
            cases.append(try measure("photo", "photo + a question", encode: {
                let img = try model.encodeImage(image)
                images = img.embeddings.count
                return try model.prompt([.user([.image(img), .text("What is in this picture?")])], tokenizer: tokenizer)
            }))
            cases[cases.count - 1].input = "\(photo.width)x\(photo.height) photo (\(images) model images of 448x448 or less) + a question"
        }
        if hasAudio, let tokenizer {
            let wave = chirp(seconds: 30)
            cases.append(try measure("audio", "30 s of 16 kHz audio + a question", encode: {
                let clip = try model.encodeAudio(samples16k: wave)
                return try model.prompt([.user([.audio(clip), .text("Summarize what is said.")])], tokenizer: tokenizer)
            }))
        }
        var rng = Xoshiro256(seed: 13)
        let text = (0..<textTokens).map { _ in Int(rng.next() % UInt64(llm.config.vocabSize)) }
        cases.append(try measure("text", "\(textTokens) text tokens", encode: { Prompt(tokens: text) }))

        return TTFTBenchmarkResult(model: model.directory, weights: weightsLabel(llm), threads: Threading.count,
                                   prefillPrecision: Linear.effectivePrefillPrecision.rawValue, repeats: repeats,
                                   cases: cases, peakRSSBytes: peakRSS())
    }

    /// A deterministic photo-like image: smooth gradients, a few discs and mild noise (so slices differ).
    static func syntheticPhoto(width: Int, height: Int) throws -> RGBImage {
        var rng = Xoshiro256(seed: 17)
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        let discs = (0..<6).map { _ in (Double(rng.next() % UInt64(width)), Double(rng.next() % UInt64(height)),
                                        Double(40 + rng.next() % 200), Int(rng.next() % 3)) }
        for y in 0..<height {
            for x in 0..<width {
                var rgb = SIMD3<Double>(Double(x) / Double(width) * 200, Double(y) / Double(height) * 180, 120)
                for (cx, cy, r, channel) in discs where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) < r * r {
                    rgb[channel] = 255 - rgb[channel] / 2
                }
                for c in 0..<3 {
                    let noise = Double(Int(rng.next() % 17) - 8)
                    pixels[(y * width + x) * 3 + c] = UInt8(max(0, min(255, rgb[c] + noise)))
                }
            }
        }
        return try RGBImage(width: width, height: height, pixels: pixels)
    }

    /// A rising tone with noise at 16 kHz, as the encoder benchmark uses.
    static func chirp(seconds: Int) -> [Float] {
        var rng = Xoshiro256(seed: 5)
        return (0..<(16000 * seconds)).map { i -> Float in
            let t = Float(i) / 16000
            return 0.3 * Foundation.sin(2 * .pi * (200 + 40 * t) * t) + 0.05 * (Float(rng.next() % 2001) / 1000 - 1)
        }
    }
}
