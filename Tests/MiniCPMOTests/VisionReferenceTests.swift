import Foundation
import Testing
import TestSupport
@testable import MiniCPMO

/// SigLIP-NaViT + resampler against the PyTorch reference (transformers' Idefics2 vision tower and
/// the spec's resampler over nn.MultiheadAttention) on the tiny MiniCPM-o checkpoint, float32.
@Suite struct VisionReferenceTests {
    static let reference = fixturesDirectory.appendingPathComponent("reference/vision-tiny-minicpmo.safetensors").path

    static func model() throws -> MiniCPMOModel { try MiniCPMOModel(directory: fixtureModel("tiny-minicpmo")) }

    @Test func positionBucketsMatchTheReferenceForEverySideUpTo128() throws {
        let ref = try SafetensorsFile(path: Self.reference)
        let table = try #require(ref.tensors["buckets"]).integers()
        for n in 1...128 {
            let expected = table[((n - 1) * 128)..<((n - 1) * 128 + n)].map { Int($0) }
            #expect(SiglipEncoder.positionBuckets(count: n, side: 70) == expected, "side of \(n) patches")
        }
    }

    @Test func singleImageMatches() throws {
        let ref = try SafetensorsFile(path: Self.reference)
        let vision = try Self.model().vision()
        let sizes = try #require(ref.tensors["single.tgt_sizes"]).integers().map { Int($0) }
        let pixels = try #require(ref.tensors["single.pixel_values"]).floats()
        let (hidden, emb) = pixels.withUnsafeBufferPointer {
            vision.forward(strip: $0.baseAddress!, rows: sizes[0], cols: sizes[1])
        }
        let h = hidden.array, e = emb.array
        let refH = try #require(ref.tensors["single.last_hidden_state"]).floats()
        let refE = try #require(ref.tensors["single.resampler_output"]).floats()
        #expect(pcc(h, refH) >= 0.9999 && maxAbs(h, refH) < 1e-3, "encoder pcc \(pcc(h, refH)) max-abs \(maxAbs(h, refH))")
        #expect(pcc(e, refE) >= 0.9999 && maxAbs(e, refE) < 1e-3, "resampler pcc \(pcc(e, refE)) max-abs \(maxAbs(e, refE))")
    }

    /// The probe on a padded batch of two sizes, with its patch_attention_mask.
    @Test func paddedBatchThroughTheProbeMatches() throws {
        let ref = try SafetensorsFile(path: Self.reference)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("vision-probe-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        try Probe.run(component: "vision", model: try Self.model(),
                      input: fixturesDirectory.appendingPathComponent("probe/vision-input.safetensors").path, output: out)
        let got = try SafetensorsFile(path: out)
        let sizes = try #require(ref.tensors["batch.tgt_sizes"]).integers().map { Int($0) }
        let lmax = try #require(ref.tensors["batch.pixel_values"]).shape[3] / 14
        let c = 32
        let h = try #require(got.tensors["last_hidden_state"]).floats()
        let refH = try #require(ref.tensors["batch.last_hidden_state"]).floats()
        for i in 0..<2 {  // rows of padded patches are unspecified
            let real = (i * lmax * c)..<((i * lmax + sizes[2 * i] * sizes[2 * i + 1]) * c)
            let a = Array(h[real]), b = Array(refH[real])
            #expect(pcc(a, b) >= 0.9999 && maxAbs(a, b) < 1e-3, "image \(i): pcc \(pcc(a, b)) max-abs \(maxAbs(a, b))")
        }
        let e = try #require(got.tensors["resampler_output"]).floats()
        let refE = try #require(ref.tensors["batch.resampler_output"]).floats()
        #expect(try #require(got.tensors["resampler_output"]).shape == [2, 64, 8])
        #expect(pcc(e, refE) >= 0.9999 && maxAbs(e, refE) < 1e-3, "resampler pcc \(pcc(e, refE)) max-abs \(maxAbs(e, refE))")
    }
}

/// `--prefill-precision int8`: SigLIP's and Whisper's linear layers are quantized to Q8_0 when first bound
/// and run on the int8 GEMM; their outputs stay close to the float32 reference.
@Suite struct Int8EncoderTests {
    @Test(.enabled(if: Quant.int8GEMMAvailable, "the int8 GEMM runs where VNNI does"))
    func int8VisionTracksTheReference() throws {
        let ref = try SafetensorsFile(path: VisionReferenceTests.reference)
        let sizes = try #require(ref.tensors["single.tgt_sizes"]).integers().map { Int($0) }
        let pixels = try #require(ref.tensors["single.pixel_values"]).floats()
        let (h, e) = try Linear.$prefillPrecisionOverride.withValue(.int8) {
            let vision = try VisionReferenceTests.model().vision()
            #expect(vision.encoder.layers.allSatisfy { $0.linearWeights.allSatisfy { Quant.hasInt8GEMM($0) } })
            let (hidden, emb) = pixels.withUnsafeBufferPointer { vision.forward(strip: $0.baseAddress!, rows: sizes[0], cols: sizes[1]) }
            return (hidden.array, emb.array)
        }
        let refH = try #require(ref.tensors["single.last_hidden_state"]).floats()
        let refE = try #require(ref.tensors["single.resampler_output"]).floats()
        #expect(h != refH)
        #expect(pcc(h, refH) >= 0.999, "encoder pcc \(pcc(h, refH))")
        #expect(pcc(e, refE) >= 0.999, "resampler pcc \(pcc(e, refE))")
    }

    @Test(.enabled(if: Quant.int8GEMMAvailable, "the int8 GEMM runs where VNNI does"))
    func int8AudioTracksFloat32() throws {
        let wav = fixturesDirectory.appendingPathComponent("audio/speech-16k-s16.wav")
        let exact = try VisionReferenceTests.model().encodeAudio(contentsOf: wav)
        let int8 = try Linear.$prefillPrecisionOverride.withValue(.int8) {
            let m = try VisionReferenceTests.model()
            #expect(try m.audio().encoder.layers.allSatisfy { $0.linearWeights.allSatisfy { Quant.hasInt8GEMM($0) } })
            return try m.encodeAudio(contentsOf: wav)
        }
        #expect(int8.tokens == exact.tokens)
        #expect(pcc(int8.embeddings.array, exact.embeddings.array) >= 0.999, "pcc \(pcc(int8.embeddings.array, exact.embeddings.array))")
    }
}
