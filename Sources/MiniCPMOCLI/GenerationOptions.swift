import ArgumentParser
import Foundation
import MiniCPMO
import Runtime

/// Sampling and stopping flags shared by `generate` and `chat`. Defaults are MiniCPM-o's chat defaults.
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, help: "Tokens to generate at most.")
    var maxTokens: Int = 2048

    @Option(name: .long, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0.7

    @Option(name: .long, help: "Keep the K most likely tokens (0: off).")
    var topK: Int = 100

    @Option(name: .long, help: "Keep the smallest set of tokens with this much probability (1: off).")
    var topP: Float = 0.8

    @Option(name: .long, help: "Penalty for repeating generated tokens (1: off).")
    var repetitionPenalty: Float = 1.05

    @Option(name: .long, help: "Random seed, for reproducible sampling.")
    var seed: UInt64?

    @Option(name: .long, help: "Stop before this string (repeatable).")
    var stop: [String] = []

    @Option(name: .long, help: "Prompt tokens per forward pass during prefill.")
    var prefillChunk: Int = 512

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if prefillChunk < 1 { throw ValidationError("--prefill-chunk must be at least 1") }
        do { try parameters.validate() } catch { throw ValidationError("\(error)") }
    }

    var parameters: SamplingParameters {
        SamplingParameters(temperature: temperature, topK: topK, topP: topP, repetitionPenalty: repetitionPenalty, seed: seed)
    }

    var generation: GenerationOptions {
        GenerationOptions(sampling: parameters, maxTokens: maxTokens, stopStrings: stop, prefillChunk: prefillChunk)
    }
}

func writeOut(_ s: String) {
    FileHandle.standardOutput.write(Data(s.utf8))
}

/// The `--json` result of `generate`.
struct GenerateJSON: Encodable {
    var text: String
    var tokenIds: [Int]
    var promptTokens: Int
    var finishReason: String
    var timings: Timings
    var speech: Speech?

    struct Speech: Encodable {
        var file: String
        var seconds: Double
        var frames: Int
        var codes: [[Int]]
    }

    struct Timings: Encodable {
        var prefillTokensPerSecond: Double
        var decodeTokensPerSecond: Double
        var prefillSeconds: Double
        var decodeSeconds: Double
        var cachedPromptTokens: Int
        // The phases around generation, filled in by the command that ran them.
        var loadSeconds: Double?
        var encodeSeconds: Double?
        var timeToFirstTokenSeconds: Double?
        var speechSeconds: Double?
        var peakRSSBytes: Int?
        enum CodingKeys: String, CodingKey {
            case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
            case prefillSeconds = "prefill_seconds", decodeSeconds = "decode_seconds", cachedPromptTokens = "cached_prompt_tokens"
            case loadSeconds = "load_seconds", encodeSeconds = "encode_seconds"
            case timeToFirstTokenSeconds = "time_to_first_token_seconds", speechSeconds = "speech_seconds"
            case peakRSSBytes = "peak_rss_bytes"
        }
    }

    enum CodingKeys: String, CodingKey {
        case text, tokenIds = "token_ids", promptTokens = "prompt_tokens", finishReason = "finish_reason", timings, speech
    }

    init(_ r: GenerationResult) {
        text = r.text
        tokenIds = r.tokenIds
        promptTokens = r.timings.promptTokens
        finishReason = r.finishReason.rawValue
        timings = Timings(prefillTokensPerSecond: r.timings.prefillTokensPerSecond,
                          decodeTokensPerSecond: r.timings.decodeTokensPerSecond,
                          prefillSeconds: r.timings.prefillSeconds, decodeSeconds: r.timings.decodeSeconds,
                          cachedPromptTokens: r.timings.cachedTokens)
    }
}

func rateLine(_ t: GenerationTimings) -> String {
    String(format: "[%d prompt tokens (%d cached) at %.1f tok/s, %d generated at %.1f tok/s]",
           t.promptTokens, t.cachedTokens, t.prefillTokensPerSecond, t.generatedTokens, t.decodeTokensPerSecond)
}

/// Decodes and encodes one image file, noting its size and slicing on stderr.
func encodeImageFile(_ path: String, model: MiniCPMOModel, maxSliceNums: Int?) throws -> EncodedImage {
    let t0 = Date()
    let image = try model.encodeImage(contentsOf: URL(fileURLWithPath: path), maxSliceNums: maxSliceNums)
    note(String(format: "[image %@: %d×%d, %@, %d model images encoded in %.2f s]", path, image.width, image.height,
                image.grid.map { "sliced \($0)" } ?? "not sliced", image.embeddings.count, Date().timeIntervalSince(t0)))
    return image
}

/// Decodes, resamples and encodes one WAV file, noting its length on stderr.
func encodeAudioFile(_ path: String, model: MiniCPMOModel) throws -> EncodedAudio {
    let t0 = Date()
    let clip = try model.encodeAudio(contentsOf: URL(fileURLWithPath: path))
    note(String(format: "[audio %@: %.2f s, %d embeddings in %.2f s]", path, clip.seconds, clip.tokens, Date().timeIntervalSince(t0)))
    return clip
}

/// Ready-made instructions (MiniCPM-o's task prompts).
enum Task: String, ExpressibleByArgument, CaseIterable {
    case transcribe

    var prompt: String {
        switch self {
        case .transcribe: return TaskPrompt.transcribe
        }
    }
}
