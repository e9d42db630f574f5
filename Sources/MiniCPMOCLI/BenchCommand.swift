import ArgumentParser
import Foundation
import MiniCPMO

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure prefill and decode speed, time to first token and memory on random tokens.")

    @Option(name: .long, help: "Checkpoint directory (config.json + safetensors).")
    var model: String?

    @OptionGroup var runtime: RuntimeOptions

    @Flag(name: .long, help: "Instead of the model: memory read bandwidth and GEMV throughput per weight format.")
    var kernels = false

    @Option(name: .long, help: "Prompt length for the prefill test.")
    var promptTokens: Int = 512

    @Option(name: .long, help: "Tokens generated in the decode test.")
    var genTokens: Int = 128

    @Option(name: .long, help: "Repeats (medians are reported).")
    var repeats: Int = 3

    @Flag(name: .long, help: "Also measure the memory read ceiling during decode (a probe pass every \(Benchmark.probeInterval) steps, not timed as decode) and report decode against it; without --model, only a short ceiling measurement.")
    var bandwidth = false

    @Flag(name: .long, help: "Only the multimodal encoders (works on a checkpoint without language-model weights).")
    var encoders = false

    @Option(name: .long, help: "Decode N independent streams together, in batched steps (each weight read once per step for all), and report the aggregate decode rate; with --encoders, also the TTS of N utterances stepped together.")
    var parallel: Int?

    @Flag(name: .long, help: "Time to first token for a 1344x1008 photo + a question, 30 s of audio + a question and --prompt-tokens text tokens, each split into encode / prefill / first decode step.")
    var ttft = false

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if model == nil && !kernels && !bandwidth { throw ValidationError("--model is required (or --kernels, or --bandwidth alone)") }
        if promptTokens < 1 || genTokens < 0 || repeats < 1 { throw ValidationError("need --prompt-tokens ≥ 1, --gen-tokens ≥ 0, --repeats ≥ 1") }
        if ttft && (model == nil || kernels || encoders || parallel != nil || bandwidth) {
            throw ValidationError("--ttft needs --model (and no --kernels, --encoders, --parallel or --bandwidth)")
        }
        if let parallel {
            if parallel < 1 || parallel > 256 { throw ValidationError("--parallel must be between 1 and 256") }
            if model == nil || kernels { throw ValidationError("--parallel needs --model (and no --kernels)") }
            if genTokens < 1 && !encoders { throw ValidationError("--parallel needs --gen-tokens ≥ 1") }
        }
    }

    func run() throws {
        if kernels {
            runtime.apply()
            writeOut(String(format: "memory read bandwidth  %.1f GB/s (%d threads)\n", KernelBenchmark.memoryReadBandwidth() / 1e9, Threading.count))
            for (rows, cols) in [(3584, 18944), (18944, 3584), (4864, 896)] {
                for f in [WeightFormat.f32, .bf16, .f16, .q8_0, .q4_0] {
                    let bw = KernelBenchmark.gemvBandwidth(format: f, rows: rows, cols: cols)
                    writeOut(String(format: "gemv %dx%d %-5@ %.1f GB/s of weights\n", rows, cols, f.rawValue, bw / 1e9))
                }
            }
            return
        }
        if model == nil {  // --bandwidth alone: a short ceiling measurement, to bracket another engine's runs
            runtime.apply()
            let bw = KernelBenchmark.decodeCeilingProbe()
            writeOut(json ? "{\"threads\":\(Threading.count),\"read_bandwidth_bytes_per_second\":\(bw)}\n"
                          : String(format: "bandwidth    %.1f GB/s read ceiling (%d threads)\n", bw / 1e9, Threading.count))
            return
        }
        if encoders {
            runtime.apply()
            do {
                let timings = try EncoderBenchmark.run(directory: modelDirectory(model!), repeats: repeats, quantize: runtime.quant.format,
                                                           speechStreams: parallel ?? 1, progress: note)
                if json {
                    writeOut(String(decoding: try jsonEncoder().encode(["threads": Threading.count]), as: UTF8.self).dropLast()
                             + ",\"encoders\":" + String(decoding: try jsonEncoder().encode(timings), as: UTF8.self) + "}\n")
                } else {
                    writeOut(timings.map(encoderLine).joined())
                    if timings.isEmpty { writeOut("no encoders in \(model!)\n") }
                }
            } catch {
                fail(error, code: 1)
            }
            return
        }
        let loaded = runtime.load(modelDirectory(model!))
        if ttft {
            do {
                let r = try Benchmark.ttft(loaded, repeats: repeats, textTokens: promptTokens, progress: note)
                if json {
                    writeOut(String(decoding: try jsonEncoder().encode(r), as: UTF8.self) + "\n")
                } else {
                    writeOut(String(format: "model        %@ (%@ weights, %@ activations in prefill, %d threads, median of %d)\n",
                                    r.model, r.weights, r.prefillPrecision, r.threads, r.repeats))
                    for c in r.cases {
                        writeOut(String(format: "%@ %.3f s to the first token = encode %.3f + prefill %.3f (%d tokens); first decode step %.3f s (%@)\n",
                                        c.name.padding(toLength: 6, withPad: " ", startingAt: 0), c.timeToFirstTokenSeconds, c.encodeSeconds,
                                        c.prefillSeconds, c.promptTokens, c.firstDecodeStepSeconds, c.input))
                    }
                    writeOut(String(format: "peak RSS     %.3f GB\n", Double(r.peakRSSBytes) / 1e9))
                }
            } catch {
                fail(error, code: 1)
            }
            return
        }
        if let parallel {
            do {
                let r = try Benchmark.parallel(loaded, streams: parallel, promptTokens: promptTokens, genTokens: genTokens,
                                               repeats: repeats, progress: note)
                writeOut(json ? String(decoding: try jsonEncoder().encode(r), as: UTF8.self) + "\n" : String(format: """
                    model        %@ (%@ weights, %d threads)
                    decode       %d streams: %.2f tok/s together, %.2f tok/s each (tg%d, median of %d)
                    first token  %.3f s (median; streams prefilled one after another, pp%d each)
                    KV cache     %.1f MB, peak RSS %.3f GB

                    """, r.model, r.weights, r.threads, r.streams, r.aggregateDecodeTokensPerSecond, r.perStreamDecodeTokensPerSecond,
                    r.genTokens, r.repeats, r.timeToFirstTokenSeconds, r.promptTokens, Double(r.kvCacheBytes) / 1e6, Double(r.peakRSSBytes) / 1e9))
            } catch {
                fail(error, code: 1)
            }
            return
        }
        do {
            var r = try Benchmark.run(loaded, promptTokens: promptTokens, genTokens: genTokens, repeats: repeats,
                                      measureBandwidth: bandwidth, progress: note)
            r.encoders = try EncoderBenchmark.run(loaded, repeats: repeats, progress: note)
            if json {
                writeOut(String(decoding: try jsonEncoder().encode(r), as: UTF8.self) + "\n")
            } else {
                writeOut(String(format: """
                    model        %@ (%@ weights, %d threads)
                    prefill      %.2f tok/s (pp%d, median of %d)
                    decode       %.2f tok/s (tg%d), %.1f GB/s of weights
                    first token  %.3f s
                    weights      %.3f GB, KV cache %.1f MB, peak RSS %.3f GB

                    """, r.model, r.weights, r.threads, r.prefillTokensPerSecond, r.promptTokens, r.repeats,
                    r.decodeTokensPerSecond, r.genTokens,
                    r.decodeTokensPerSecond * Double(r.decodeBytesPerToken) / 1e9, r.timeToFirstTokenSeconds, Double(r.weightBytes) / 1e9,
                    Double(r.kvCacheBytes) / 1e6, Double(r.peakRSSBytes) / 1e9))
                writeOut((r.encoders ?? []).map(encoderLine).joined())
                if let bw = r.readBandwidth, let used = r.decodeBandwidthFraction {
                    writeOut(String(format: "bandwidth    %.1f GB/s read ceiling during decode; decode uses %.0f%%\n", bw / 1e9, 100 * used))
                }
            }
        } catch {
            fail(error, code: 1)
        }
    }
}

func jsonEncoder() -> JSONEncoder {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return enc
}

func encoderLine(_ t: EncoderTiming) -> String {
    String(format: "%@ %.3f s median of %d (%@)\n", t.component.padding(toLength: 18, withPad: " ", startingAt: 0), t.medianSeconds, t.samples.count, t.input)
}
