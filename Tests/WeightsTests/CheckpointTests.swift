import Foundation
import Testing
@testable import Weights

@Suite struct CheckpointTests {
    func tempDir(_ name: String) throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(name)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: d)
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func shardedFixtureResolvesEveryName() throws {
        let dir = fixtures.appendingPathComponent("models/tiny-minicpmo").path
        let c = try Checkpoint(directory: dir)
        #expect(c.files.count == 3)
        #expect(c.tensor("llm.model.embed_tokens.weight")?.shape == [151700, 8])
        #expect(c.tensor("llm.lm_head.weight") != nil)
        // the MiniCPM-o sub-models: language model, vision encoder, resampler, audio encoder and projector, TTS
        #expect(c.tensorNames.allSatisfy { ["llm.", "vpm.", "resampler.", "apm.", "audio_projection_layer.", "tts."].contains(where: $0.hasPrefix) })
        #expect(c.tensor("vpm.embeddings.patch_embedding.weight")?.shape == [32, 3, 14, 14])
    }

    @Test func missingDirectory() {
        #expect(throws: WeightsError.self) { try Checkpoint(directory: "/nonexistent/model") }
    }

    @Test func indexNamingMissingShard() throws {
        let d = try tempDir("missing-shard")
        try SafetensorsWriter.write([.f32("a", shape: [1], [1])], to: d + "/model-00001-of-00002.safetensors")
        try #"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
            .write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        #expect { try Checkpoint(directory: d) } throws: { ($0 as? WeightsError)?.description.contains("model-00002-of-00002") == true }
    }

    @Test func indexMappingToWrongShard() throws {
        let d = try tempDir("wrong-shard")
        try SafetensorsWriter.write([.f32("a", shape: [1], [1])], to: d + "/s1.safetensors")
        try SafetensorsWriter.write([.f32("b", shape: [1], [1])], to: d + "/s2.safetensors")
        try #"{"weight_map": {"a": "s2.safetensors", "b": "s2.safetensors", "c": "s1.safetensors"}}"#
            .write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        #expect { try Checkpoint(directory: d) } throws: { e in
            guard case let .badIndex(_, r)? = e as? WeightsError else { return false }
            return r.contains("'a'") && r.contains("'c'")
        }
    }

    @Test func malformedIndexAndDuplicateAcrossShards() throws {
        let d = try tempDir("bad-index")
        try "{not json".write(toFile: d + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        #expect { try Checkpoint(directory: d) } throws: { if case .badIndex? = $0 as? WeightsError { return true } else { return false } }
        let d2 = try tempDir("dup")
        try SafetensorsWriter.write([.f32("a", shape: [1], [1])], to: d2 + "/x.safetensors")
        try SafetensorsWriter.write([.f32("a", shape: [1], [2])], to: d2 + "/y.safetensors")
        #expect { try Checkpoint(directory: d2) } throws: { ($0 as? WeightsError)?.description.contains("'a'") == true }
    }

    @Test func readerCollectsEveryProblem() throws {
        let d = try tempDir("reader")
        try SafetensorsWriter.write([.f32("m.w", shape: [2, 3], [1, 2, 3, 4, 5, 6]), .i64("m.i", shape: [2], [1, 2])],
                                    to: d + "/model.safetensors")
        let r = try Checkpoint(directory: d).reader(prefix: "m.")
        let ok = r.matrix("w", rows: 2, cols: 3)
        _ = r.matrix("w2", rows: 2, cols: 3)
        _ = r.vector("w", count: 6)
        _ = r.vector("i", count: 2)
        #expect(ok.toFloats() == [1, 2, 3, 4, 5, 6])
        #expect { try r.validate() } throws: { e in
            guard case let .invalidCheckpoint(_, problems)? = e as? WeightsError else { return false }
            return problems.count == 3 && problems[0].contains("m.w2") && problems[1].contains("[2, 3]")
                && problems[2].contains("I64")
        }
    }
}
