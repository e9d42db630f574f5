import Foundation

/// N independent streams decoded together in batched steps (`minicpmo bench --parallel N`).
public struct ParallelBenchmarkResult: Sendable, Codable {
    public var model: String
    public var weights: String
    public var threads: Int
    public var streams: Int
    public var promptTokens: Int
    public var genTokens: Int
    public var repeats: Int
    /// Medians over the repeats: all streams' decoded tokens per second of batched decode.
    public var aggregateDecodeTokensPerSecond: Double
    public var perStreamDecodeTokensPerSecond: Double
    /// From the start of a repeat to each stream's first token, the streams prefilled one after another
    /// (median over streams and repeats).
    public var timeToFirstTokenSeconds: Double
    public var aggregateSamples: [Double]
    public var kvCacheBytes: Int
    public var peakRSSBytes: Int

    enum CodingKeys: String, CodingKey {
        case model, weights, threads, streams, repeats
        case promptTokens = "prompt_tokens", genTokens = "gen_tokens"
        case aggregateDecodeTokensPerSecond = "aggregate_decode_tokens_per_second"
        case perStreamDecodeTokensPerSecond = "per_stream_decode_tokens_per_second"
        case timeToFirstTokenSeconds = "time_to_first_token_seconds"
        case aggregateSamples = "aggregate_samples", kvCacheBytes = "kv_cache_bytes", peakRSSBytes = "peak_rss_bytes"
    }
}

extension Benchmark {
    /// Each repeat prefills `streams` different random prompts of `promptTokens`, then decodes `genTokens`
    /// tokens of every stream greedily, all streams in one batched step per token.
    public static func parallel(_ model: MiniCPMOModel, streams: Int, promptTokens: Int, genTokens: Int, repeats: Int,
                                chunk: Int = 512, progress: (String) -> Void = { _ in }) throws -> ParallelBenchmarkResult {
        precondition(streams >= 1 && genTokens >= 1)
        let llm = model.llm
        var rng = Xoshiro256(seed: 11)
        let prompts = (0..<streams).map { _ in (0..<promptTokens).map { _ in Int(rng.next() % UInt64(llm.config.vocabSize)) } }
        let pool = llm.makeCachePool()
        _ = try LanguageSession(model: llm, pool: pool).prefill(Array(prompts[0].prefix(16)), chunk: chunk)  // faults the weights in
        var aggregate: [Double] = [], ttft: [Double] = [], kvBytes = 0
        for r in 0..<repeats {
            let sessions = prompts.map { _ in LanguageSession(model: llm, pool: pool) }
            let t0 = Date()
            var tokens: [Int] = []
            for (s, p) in zip(sessions, prompts) {
                tokens.append(Sampler.argmax(try s.prefill(p, chunk: chunk).logits))
                ttft.append(Date().timeIntervalSince(t0))
            }
            let t1 = Date()
            for _ in 0..<genTokens {
                tokens = try LanguageSession.step(tokens, sessions: sessions).map(Sampler.argmax)
            }
            let dt = Date().timeIntervalSince(t1)
            aggregate.append(Double(streams * genTokens) / dt)
            kvBytes = max(kvBytes, pool.pagesInUse * pool.bytesPerPage)
            progress(String(format: "repeat %d: %d streams, %.2f tok/s together, %.2f each", r + 1, streams, aggregate.last!,
                            aggregate.last! / Double(streams)))
        }
        let agg = median(aggregate)
        return ParallelBenchmarkResult(model: model.directory, weights: weightsLabel(llm), threads: Threading.count, streams: streams,
                                       promptTokens: promptTokens, genTokens: genTokens, repeats: repeats,
                                       aggregateDecodeTokensPerSecond: agg, perStreamDecodeTokensPerSecond: agg / Double(streams),
                                       timeToFirstTokenSeconds: median(ttft), aggregateSamples: aggregate, kvCacheBytes: kvBytes,
                                       peakRSSBytes: peakRSS())
    }
}
