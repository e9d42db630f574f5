import Foundation
import Testing
@testable import MiniCPMO

@Suite struct ConfigTests {
    @Test func decodesFixtureConfigs() throws {
        let q = try ModelConfig(directory: modelDir("tiny-qwen2"))
        #expect(q.kind == .qwen2 && q.llm.tieWordEmbeddings && q.llm.headDim == 4 && q.llm.ropeTheta == 1e6)
        let m = try ModelConfig(directory: modelDir("tiny-minicpmo"))
        #expect(m.kind == .minicpmo && !m.llm.tieWordEmbeddings && m.llm.vocabSize == 151700 && m.kind.llmPrefix == "llm.")
        let g = try ModelConfig(directory: modelDir("tiny-qwen2-gqa"))
        #expect(g.llm.headDim == 40 && g.llm.ropeTheta == 1e6 && g.llm.numAttentionHeads / g.llm.numKeyValueHeads == 3)
    }

    /// The real MiniCPM-o 2.6 top-level fields (spec §1.1).
    @Test func decodesRealMiniCPMOConfig() throws {
        let json = """
        {"architectures": ["MiniCPMO"], "model_type": "minicpmo", "hidden_size": 3584, "intermediate_size": 18944,
         "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu",
         "vocab_size": 151700, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
         "tie_word_embeddings": false, "use_sliding_window": false, "sliding_window": 131072, "bos_token_id": 151643,
         "eos_token_id": 151645, "query_num": 64, "drop_vision_last_layer": false, "rope_scaling": null,
         "vision_config": {"hidden_size": 1152}, "audio_config": {"d_model": 1024}, "tts_config": {"llm_dim": 3584}}
        """
        let c = try ModelConfig(data: Data(json.utf8))
        #expect(c.kind == .minicpmo)
        #expect(c.llm.headDim == 128 && c.llm.numKeyValueHeads == 4 && c.llm.eosTokenId == [151645])
    }

    @Test func ropeParametersSpelling() throws {
        let json = #"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}, "eos_token_id": [1, 2]}"#
        let c = try ModelConfig(data: Data(json.utf8))
        #expect(c.llm.ropeTheta == 5000 && c.llm.headDim == 16 && c.llm.eosTokenId == [1, 2])
    }

    @Test(arguments: [
        (#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}"#, "unsupported"),
        (#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": "big"}"#, "hidden_size"),
        (#"{"architectures": ["Qwen2ForCausalLM"], "num_attention_heads": 6, "num_key_value_heads": 4}"#, "multiple"),
        (#"{"architectures": ["Qwen2ForCausalLM"], "rope_scaling": {"type": "yarn", "factor": 4}}"#, "yarn"),
        (#"{"architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": -1}"#, "num_hidden_layers"),
        ("{not json", "JSON"),
    ])
    func badConfigsAreClearErrors(json: String, mentions: String) {
        #expect { try ModelConfig(data: Data(json.utf8)) } throws: { "\($0)".contains(mentions) }
    }

    @Test func missingTensorsAreListedTogether() throws {
        // Copy the fixture and drop two layer tensors and change one shape: one error names all three.
        let src = try Checkpoint(directory: modelDir("tiny-qwen2-gqa"))
        var entries: [SafetensorsWriter.Entry] = []
        for name in src.tensorNames where !name.contains("layers.1.mlp.up_proj") && !name.contains("layers.2.self_attn.q_proj.bias") {
            let t = src.tensor(name)!
            var shape = t.shape
            if name == "model.norm.weight" { shape = [shape[0] / 2] }
            let bytes = Data(bytes: t.data, count: shape.reduce(1, *) * t.dtype.size)
            entries.append(SafetensorsWriter.Entry(name: name, dtype: t.dtype, shape: shape, bytes: bytes))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("broken-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: modelDir("tiny-qwen2-gqa") + "/config.json", toPath: dir + "/config.json")
        try SafetensorsWriter.write(entries, to: dir + "/model.safetensors")
        #expect { try MiniCPMOModel(directory: dir) } throws: { e in
            guard case let .invalidCheckpoint(_, problems)? = e as? WeightsError else { return false }
            return problems.count == 3 && problems.contains { $0.contains("model.layers.1.mlp.up_proj.weight") }
                && problems.contains { $0.contains("model.layers.2.self_attn.q_proj.bias") }
                && problems.contains { $0.contains("model.norm.weight") && $0.contains("[48]") }
        }
    }
}
