import Foundation
import Testing
@testable import MiniCPMO

@Suite struct QuantizationTests {
    let dir = modelDir("tiny-qwen2-quant")

    func logits(_ m: MiniCPMOModel, _ ids: [Int]) throws -> [Float] {
        let s = LanguageSession(model: m.llm)
        let h = try m.llm.forward(try m.llm.embed(ids), tokens: ids.count, cache: s.cache)
        return m.llm.logits(h, rows: 0..<ids.count).array
    }

    var ids: [Int] { (0..<64).map { ($0 * 131 + 7) % 640 } }

    /// Block-quantized weights keep the logits of the float model (prefill through dequantized
    /// GEMM tiles, decode through the integer GEMV).
    @Test(arguments: [(WeightFormat.q8_0, 0.999), (.q4_0, 0.98)])
    func quantizedLogitsTrackFloat(format: WeightFormat, bar: Double) throws {
        let ref = try logits(try MiniCPMOModel(directory: dir), ids)
        let q = try MiniCPMOModel(directory: dir, quantize: format)
        #expect(q.llm.layers.allSatisfy { $0.linearWeights.allSatisfy { $0.format == format } })
        #expect(q.llm.lmHead.format == format)
        let prefill = try logits(q, ids)
        #expect(pcc(prefill, ref) >= bar, "\(format) prefill PCC \(pcc(prefill, ref))")
        // decode path: token by token
        let s = LanguageSession(model: q.llm)
        var stepwise: [Float] = []
        for id in ids { stepwise += try s.step(id) }
        #expect(pcc(stepwise, ref) >= bar, "\(format) decode PCC \(pcc(stepwise, ref))")
    }

    @Test(arguments: [WeightFormat.q8_0, .q4_0])
    func quantizedCheckpointLoadsAsWritten(format: WeightFormat) throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("quantized-\(format)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: out)
        let summary = try CheckpointQuantizer.run(model: dir, format: format, output: out)
        #expect(summary.quantizedTensors == 2 * 7 + 1)
        #expect(summary.bytesOut < summary.bytesIn)
        let loaded = try MiniCPMOModel(directory: out)
        #expect(loaded.llm.lmHead.format == format && loaded.llm.layers[1].linearWeights.allSatisfy { $0.format == format })
        // bit-identical to quantizing at load, prefill and decode: the plain rows written to the file take
        // the same decode layout at load
        let atLoad = try MiniCPMOModel(directory: dir, quantize: format)
        #expect(try logits(loaded, ids) == logits(atLoad, ids))
        #expect(loaded.llm.lmHead.interleaved == atLoad.llm.lmHead.interleaved)
        #expect(loaded.llm.layers[1].linearWeights.map(\.interleaved) == atLoad.llm.layers[1].linearWeights.map(\.interleaved))
        let a = LanguageSession(model: loaded.llm), b = LanguageSession(model: atLoad.llm)
        for id in ids.prefix(6) { #expect(try a.step(id) == b.step(id)) }
        // nothing is overwritten: a second run into the same folder is refused, and so is the source folder
        #expect(throws: QuantizeError.self) { try CheckpointQuantizer.run(model: dir, format: format, output: out) }
        #expect(throws: QuantizeError.self) { try CheckpointQuantizer.run(model: dir, format: format, output: dir) }
    }

    @Test func quantizedMiniCPMOKeepsLayoutAndTokenizer() throws {
        // tiny-minicpmo's 8-wide matrices cannot be blocked: they stay bf16, the copy still loads and generates
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("quantized-minicpmo-\(getpid())").path
        try? FileManager.default.removeItem(atPath: out)
        _ = try CheckpointQuantizer.run(model: modelDir("tiny-minicpmo"), format: .q8_0, output: out)
        let m = try MiniCPMOModel(directory: out)
        #expect(m.config.kind == .minicpmo)
        let gen = try m.textGenerator()
        let r = try gen.generate(prompt: gen.tokenizer.encode("Hi"), session: LanguageSession(model: m.llm),
                                 options: GenerationOptions(sampling: .greedy, maxTokens: 3))
        #expect(r.tokenIds.count == 3)
    }

    @Test func benchmarkReportsEveryField() throws {
        let r = try Benchmark.run(try MiniCPMOModel(directory: dir, quantize: .q8_0), promptTokens: 12, genTokens: 4, repeats: 2)
        #expect(r.prefillSamples.count == 2 && r.decodeSamples.count == 2)
        #expect(r.prefillTokensPerSecond > 0 && r.decodeTokensPerSecond > 0 && r.timeToFirstTokenSeconds > 0)
        #expect(r.weights == "q8_0" && r.weightBytes > 0 && r.kvCacheBytes > 0 && r.peakRSSBytes > r.weightBytes)
        #expect(r.decodeBytesPerToken < r.weightBytes)
        #expect(r.readBandwidth == nil && r.decodeBandwidthFraction == nil)
    }

    @Test func parallelBenchmarkDecodesEveryStream() throws {
        let m = try MiniCPMOModel(directory: dir, quantize: .q8_0)
        let r = try Benchmark.parallel(m, streams: 3, promptTokens: 5, genTokens: 4, repeats: 2)
        #expect(r.streams == 3 && r.aggregateSamples.count == 2 && r.weights == "q8_0")
        #expect(r.aggregateDecodeTokensPerSecond > 0 && abs(r.perStreamDecodeTokensPerSecond * 3 - r.aggregateDecodeTokensPerSecond) < 1e-9)
        // 3 streams of 5 + 4 positions each, one page apiece
        #expect(r.kvCacheBytes == 3 * m.llm.makeCachePool().bytesPerPage && r.peakRSSBytes > 0 && r.timeToFirstTokenSeconds > 0)
    }

    /// With the ceiling probed during decode (here two stretches of steps), the fraction is that of the
    /// same steps: their read rate over the time-weighted ceiling.
    @Test func benchmarkMeasuresTheCeilingDuringDecode() throws {
        let r = try Benchmark.run(try MiniCPMOModel(directory: dir, quantize: .q8_0), promptTokens: 4,
                                  genTokens: Benchmark.probeInterval + 3, repeats: 1, measureBandwidth: true)
        let ceiling = try #require(r.readBandwidth), fraction = try #require(r.decodeBandwidthFraction)
        #expect(ceiling > 1e8)
        #expect(abs(fraction - r.decodeTokensPerSecond * Double(r.decodeBytesPerToken) / ceiling) < 1e-9 * max(fraction, 1))
    }
}

@Suite struct PrefillPrecisionTests {
    let ids = (0..<64).map { ($0 * 37 + 3) % 640 }

    /// The prompt's logits at every position, under `precision` (nil: the default, exact float32).
    func prefillLogits(_ m: MiniCPMOModel, _ precision: Linear.PrefillPrecision? = nil) throws -> [Float] {
        try Linear.$prefillPrecisionOverride.withValue(precision) {
            let s = LanguageSession(model: m.llm)
            return m.llm.logits(try m.llm.forward(try m.llm.embed(ids), tokens: ids.count, cache: s.cache), rows: 0..<ids.count).array
        }
    }

    /// bf16-activation prefill stays close to the exact float32 logits.
    @Test func bf16PrefillTracksFloat32() throws {
        let m = try MiniCPMOModel(directory: modelDir("tiny-qwen2-quant"))
        let exact = try prefillLogits(m)
        let fast = try prefillLogits(m, .bf16)
        #expect(pcc(fast, exact) >= 0.9999, "PCC \(pcc(fast, exact))")
    }

    /// int8 prefill (`--prefill-precision int8`) on block-quantized weights against the exact float32 prefill of
    /// the same weights, and greedy answers unchanged by it.
    @Test(.enabled(if: Quant.int8GEMMAvailable, "the int8 GEMM runs where VNNI does"), arguments: [WeightFormat.q8_0, .q4_0])
    func int8PrefillTracksFloat32(format: WeightFormat) throws {
        let m = try MiniCPMOModel(directory: modelDir("tiny-qwen2-quant"), quantize: format)
        #expect(m.llm.layers.allSatisfy { $0.linearWeights.allSatisfy { Quant.hasInt8GEMM($0) } })
        let exact = try prefillLogits(m)
        let int8 = try prefillLogits(m, .int8)
        #expect(int8 != exact, "the int8 path ran")
        #expect(pcc(int8, exact) >= 0.999, "\(format) PCC \(pcc(int8, exact))")
        // the greedy choice at every prompt position (teacher-forced) is unchanged wherever the exact run's
        // top two are not within 0.003 (this random model's logits spread over ~1)
        let vocab = exact.count / 64
        var compared = 0
        for p in 0..<64 {
            let e = exact[(p * vocab)..<((p + 1) * vocab)], q = int8[(p * vocab)..<((p + 1) * vocab)]
            let top = e.indices.sorted { e[$0] > e[$1] }
            guard e[top[0]] - e[top[1]] >= 0.003 else { continue }
            compared += 1
            #expect(q.indices.max { q[$0] < q[$1] } == top[0], "\(format) position \(p)")
        }
        #expect(compared >= 48, "\(compared) decisive positions")
    }
}
