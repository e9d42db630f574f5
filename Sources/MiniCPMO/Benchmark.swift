import Foundation

/// Prefill and decode speed of the language model on random tokens, as `minicpmo bench` reports it.
public struct BenchmarkResult: Sendable, Codable {
    public var model: String
    public var weights: String
    public var threads: Int
    public var promptTokens: Int
    public var genTokens: Int
    public var repeats: Int
    /// Medians over the repeats.
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    public var timeToFirstTokenSeconds: Double
    public var prefillSamples: [Double]
    public var decodeSamples: [Double]
    public var weightBytes: Int
    /// Weight bytes read per decoded token (decode tok/s × this = achieved read bandwidth).
    public var decodeBytesPerToken: Int
    public var kvCacheBytes: Int
    public var peakRSSBytes: Int
    /// Memory read ceiling around the decode runs, if asked for: the median over repeats of the better
    /// of two probes, one right before and one right after each repeat's decode (shared machines drift).
    public var readBandwidth: Double?
    /// Decode's read rate (decode tok/s × decodeBytesPerToken) as a fraction of the ceiling around the
    /// same repeat: the median over repeats.
    public var decodeBandwidthFraction: Double?
    /// The multimodal encoders' timings, when the checkpoint has them.
    public var encoders: [EncoderTiming]?

    enum CodingKeys: String, CodingKey {
        case model, weights, threads, repeats
        case promptTokens = "prompt_tokens", genTokens = "gen_tokens"
        case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
        case timeToFirstTokenSeconds = "time_to_first_token_seconds"
        case prefillSamples = "prefill_samples", decodeSamples = "decode_samples"
        case weightBytes = "weight_bytes", decodeBytesPerToken = "decode_bytes_per_token", kvCacheBytes = "kv_cache_bytes", peakRSSBytes = "peak_rss_bytes"
        case readBandwidth = "read_bandwidth_bytes_per_second", decodeBandwidthFraction = "decode_bandwidth_fraction"
        case encoders
    }
}

public enum Benchmark {
    /// Each repeat prefills `promptTokens` random tokens into an empty cache (one pass, logits of the
    /// last token only), then decodes `genTokens` tokens greedily, one forward pass each.
    public static func run(_ model: MiniCPMOModel, promptTokens: Int, genTokens: Int, repeats: Int, chunk: Int = 512,
                           measureBandwidth: Bool = false, progress: (String) -> Void = { _ in }) throws -> BenchmarkResult {
        let llm = model.llm
        var rng = Xoshiro256(seed: 7)
        let prompt = (0..<promptTokens).map { _ in Int(rng.next() % UInt64(llm.config.vocabSize)) }
        let pool = llm.makeCachePool()
        var prefill: [Double] = [], ttft: [Double] = [], decode: [Double] = [], ceilings: [Double] = [], fractions: [Double] = []
        // The probe's buffer must not count as the model's memory: the peak is noted before each probe
        // and the high-water mark reset after it.
        var peak = 0
        let probe = { () -> Double in
            peak = max(peak, peakRSS())
            defer { resetPeakRSS() }
            return KernelBenchmark.decodeCeilingProbe()
        }
        var kvBytes = 0
        // one untimed warm-up pass faults the weights in
        _ = try LanguageSession(model: llm, pool: pool).prefill(Array(prompt.prefix(16)), chunk: chunk)
        for r in 0..<repeats {
            let session = LanguageSession(model: llm, pool: pool)
            let t0 = Date()
            var logits = try session.prefill(prompt, chunk: chunk).logits
            var token = Sampler.argmax(logits)
            let dt = Date().timeIntervalSince(t0)
            prefill.append(Double(promptTokens) / dt)
            ttft.append(dt)
            let before = measureBandwidth && genTokens > 0 ? probe() : 0
            let t1 = Date()
            for _ in 0..<genTokens {
                logits = try session.step(token)
                token = Sampler.argmax(logits)
            }
            if genTokens > 0 { decode.append(Double(genTokens) / Date().timeIntervalSince(t1)) }
            if measureBandwidth && genTokens > 0 {
                let ceiling = max(before, probe())
                ceilings.append(ceiling)
                fractions.append(decode.last! * Double(llm.decodeBytesPerToken) / ceiling)
            }
            kvBytes = max(kvBytes, pool.pagesInUse * pool.bytesPerPage)
            progress(String(format: "repeat %d: prefill %.2f tok/s, decode %.2f tok/s", r + 1, prefill.last!, decode.last ?? 0))
        }
        let weights = llm.layers.first.map { Set($0.linearWeights.map(\.format.rawValue)).sorted().joined(separator: "+") } ?? "?"
        return BenchmarkResult(
            model: model.directory, weights: weights, threads: Threading.count, promptTokens: promptTokens,
            genTokens: genTokens, repeats: repeats, prefillTokensPerSecond: median(prefill),
            decodeTokensPerSecond: median(decode), timeToFirstTokenSeconds: median(ttft),
            prefillSamples: prefill, decodeSamples: decode, weightBytes: llm.weightBytes,
            decodeBytesPerToken: llm.decodeBytesPerToken, kvCacheBytes: kvBytes,
            peakRSSBytes: max(peak, peakRSS()),
            readBandwidth: ceilings.isEmpty ? nil : median(ceilings),
            decodeBandwidthFraction: fractions.isEmpty ? nil : median(fractions))
    }

    static func median(_ v: [Double]) -> Double {
        guard !v.isEmpty else { return 0 }
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Starts the peak RSS over from the current RSS (Linux; elsewhere the probe's buffer counts).
    static func resetPeakRSS() {
        #if os(Linux)
        if let f = fopen("/proc/self/clear_refs", "w") { fputs("5", f); fclose(f) }
        #endif
    }

    /// Peak resident set size of this process.
    public static func peakRSS() -> Int {
        var usage = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) * 1024
        #else
        getrusage(RUSAGE_SELF, &usage)
        return Int(usage.ru_maxrss)
        #endif
    }
}
