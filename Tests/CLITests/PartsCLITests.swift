import Foundation
import Testing
import Weights

/// A checkpoint without some part loads for the rest; asking for the missing part is one clear line.
@Suite struct PartsCLITests {
    /// A copy of tiny-minicpmo without the tensors under `prefixes` (shards and index rewritten).
    func without(_ prefixes: [String], tag: String) throws -> String {
        let dir = try copyModel("tiny-minicpmo", tag: tag)
        let indexURL = URL(fileURLWithPath: dir + "/model.safetensors.index.json")
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: indexURL)) as! [String: Any]
        var map = index["weight_map"] as! [String: String]
        for shard in Set(map.values) {
            let file = try SafetensorsFile(path: dir + "/" + shard)
            let kept = file.names.filter { n in !prefixes.contains { n.hasPrefix($0) } }.map { n -> SafetensorsWriter.Entry in
                let t = file.tensors[n]!
                return .init(name: n, dtype: t.dtype, shape: t.shape, bytes: Data(bytes: t.data, count: t.byteCount))
            }
            try SafetensorsWriter.write(kept, to: dir + "/" + shard + ".new")
            try FileManager.default.removeItem(atPath: dir + "/" + shard)
            try FileManager.default.moveItem(atPath: dir + "/" + shard + ".new", toPath: dir + "/" + shard)
        }
        map = map.filter { k, _ in !prefixes.contains { k.hasPrefix($0) } }
        index["weight_map"] = map
        try JSONSerialization.data(withJSONObject: index).write(to: indexURL)
        return dir
    }

    func ask(_ dir: String, _ extra: [String]) throws -> RunResult {
        try run(["generate", "--model", dir, "--prompt", "Hi", "--max-tokens", "4", "--temperature", "0"] + extra)
    }

    func expectOneLine(_ r: RunResult, _ text: String) {
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(lines.count == 1 && lines[0].contains(text), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count < 8, "no list of every missing tensor: \(r.stderr)")
    }

    @Test func withoutSpeechWeights() throws {
        let dir = try without(["tts."], tag: "no-tts")
        #expect(try ask(dir, []).status == 0, "text still works")
        let image = fixtures.appendingPathComponent("images/chelsea-small.png").path
        let audio = fixtures.appendingPathComponent("audio/speech-16k-s16.wav").path
        #expect(try ask(dir, ["--image", image, "--audio", audio]).status == 0, "images and audio in still work")
        expectOneLine(try ask(dir, ["--speech-out", temp("no-tts.wav")]), "no speech weights (tts.*)")
    }

    @Test func withoutVisionOrAudioWeights() throws {
        let dir = try without(["vpm.", "apm."], tag: "no-vpm-apm")
        #expect(try ask(dir, []).status == 0)
        expectOneLine(try ask(dir, ["--image", fixtures.appendingPathComponent("images/chelsea-small.png").path]), "no vision weights (vpm.*)")
        expectOneLine(try ask(dir, ["--audio", fixtures.appendingPathComponent("audio/speech-16k-s16.wav").path]), "no audio encoder weights (apm.*)")
    }

    /// probe dvae and probe vocos need neither the ChatTTS tokenizer nor the TTS transformer.
    @Test func speechProbesNeedOnlyTheirOwnWeights() throws {
        let dir = try without(["tts.model.", "tts.projector", "tts.emb", "tts.head"], tag: "dvae-only")
        try FileManager.default.removeItem(atPath: dir + "/assets/chattts_tokenizer")
        let codes = temp("codes.safetensors"), mel = temp("mel.safetensors"), out = temp("probe-out.safetensors")
        try SafetensorsWriter.write([.i64("codes", shape: [1, 4, 3], (0..<12).map { Int64($0 * 7) })], to: codes)
        try SafetensorsWriter.write([.f32("mel", shape: [1, 100, 4], (0..<400).map { Float($0 % 13) / 13 })], to: mel)
        for (component, input) in [("dvae", codes), ("vocos", mel)] {
            let r = try run(["probe", component, "--model", dir, "--input", input, "--output", out])
            #expect(r.status == 0, "\(component): \(r.stderr)")
        }
        let speak = try ask(dir, ["--speech-out", temp("dvae-only.wav")])
        #expect(speak.status == 1)
    }
}
