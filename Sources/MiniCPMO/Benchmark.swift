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
    /// Memory read ceiling during the decode runs, if asked for: the read probe (best of three passes)
    /// after every `probeInterval` decode steps; per repeat, the mean of the ceilings around each stretch of steps
    /// weighted by its time (this machine's bandwidth changes from one second to the next); the median
    /// over repeats.
    public var readBandwidth: Double?
    /// Decode's read rate as a fraction of that ceiling: per repeat, the weight bytes its steps read ÷
    /// the bytes the ceiling would have read in the same time (probe passes not counted in either);
    /// the median over repeats.
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
    /// Decode steps between two measurements of the read ceiling (`measureBandwidth`): at 20–60 steps/s,
    /// a few tenths of a second; the probe's three ~5 ms passes (the best counts, as in
    /// `KernelBenchmark.memoryReadBandwidth`) are not part of the decode's time.
    public static let probeInterval = 16

    /// Each repeat prefills `promptTokens` random tokens into an empty cache (one pass, logits of the
    /// last token only), then decodes `genTokens` tokens greedily, one forward pass each.
    public static func run(_ model: MiniCPMOModel, promptTokens: Int, genTokens: Int, repeats: Int, chunk: Int = 512,
                           measureBandwidth: Bool = false, progress: (String) -> Void = { _ in }) throws -> BenchmarkResult {
        let llm = model.llm
        var rng = Xoshiro256(seed: 7)
        let prompt = (0..<promptTokens).map { _ in Int(rng.next() % UInt64(llm.config.vocabSize)) }
        let pool = llm.makeCachePool()
        var prefill: [Double] = [], ttft: [Double] = [], decode: [Double] = [], ceilings: [Double] = [], fractions: [Double] = []
        // Held for the whole run, so the model's peak is the process's less what the probe made resident.
        let peakBefore = peakRSS(), before = residentBytes()
        let probe = measureBandwidth && genTokens > 0 ? ReadProbe(bytes: 1 << 28) : nil
        let probeResident: Int
        if probe != nil, let before, let now = residentBytes() { probeResident = now - before } else { probeResident = probe?.bytes ?? 0 }
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
            // stretches of decode steps, each timed alone and bracketed by probe passes
            var decodeSeconds = 0.0, ceilingSeconds = 0.0  // Σ t and Σ t·ceiling (bytes)
            var lastCeiling = probe?.best(of: 3) ?? 0
            var stretch = Date(), steps = 0
            for s in 0..<genTokens {
                logits = try session.step(token)
                token = Sampler.argmax(logits)
                steps += 1
                if probe != nil && steps < Self.probeInterval && s < genTokens - 1 { continue }
                let t = Date().timeIntervalSince(stretch)
                decodeSeconds += t
                if let probe {
                    let c = probe.best(of: 3)
                    ceilingSeconds += t * (lastCeiling + c) / 2
                    lastCeiling = c
                }
                steps = 0
                stretch = Date()
            }
            if genTokens > 0 { decode.append(Double(genTokens) / decodeSeconds) }
            if probe != nil {
                ceilings.append(ceilingSeconds / decodeSeconds)
                fractions.append(Double(genTokens) * Double(llm.decodeBytesPerToken) / ceilingSeconds)
            }
            kvBytes = max(kvBytes, pool.pagesInUse * pool.bytesPerPage)
            progress(String(format: "repeat %d: prefill %.2f tok/s, decode %.2f tok/s", r + 1, prefill.last!, decode.last ?? 0)
                     + (fractions.count == r + 1 ? String(format: ", %.0f%% of %.1f GB/s", 100 * fractions[r], ceilings[r] / 1e9) : ""))
        }
        let peak = max(peakBefore, peakRSS() - probeResident)
        return BenchmarkResult(
            model: model.directory, weights: weightsLabel(llm), threads: Threading.count, promptTokens: promptTokens,
            genTokens: genTokens, repeats: repeats, prefillTokensPerSecond: median(prefill),
            decodeTokensPerSecond: median(decode), timeToFirstTokenSeconds: median(ttft),
            prefillSamples: prefill, decodeSamples: decode, weightBytes: llm.weightBytes,
            decodeBytesPerToken: llm.decodeBytesPerToken, kvCacheBytes: kvBytes,
            peakRSSBytes: peak,
            readBandwidth: ceilings.isEmpty ? nil : median(ceilings),
            decodeBandwidthFraction: fractions.isEmpty ? nil : median(fractions))
    }

    /// The formats of the layers' linear weights, e.g. "q8_0" or "bf16".
    static func weightsLabel(_ llm: Qwen2Model) -> String {
        llm.layers.first.map { Set($0.linearWeights.map(\.format.rawValue)).sorted().joined(separator: "+") } ?? "?"
    }

    static func median(_ v: [Double]) -> Double {
        guard !v.isEmpty else { return 0 }
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Resident set size of this process now (Linux; elsewhere nil).
    static func residentBytes() -> Int? {
        #if os(Linux)
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        #else
        return nil
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
