import Foundation

extension Probe {
    /// codes [N, 4, T] → mel [N, 100, 2T].
    static func dvae(_ dvae: DVAEDecoder, config: TTSConfig, inputs: SafetensorsFile) throws -> [SafetensorsWriter.Entry] {
        let vq = config.numVQ, eos = config.eosCode
        let codes = try integerInput(inputs, "codes", rank: 3, expected: "[N, \(vq), T]")
        guard codes.shape[1] == vq else { throw ProbeError.input("input 'codes' has shape \(codes.shape), expected [N, \(vq), T]") }
        let (n, t) = (codes.shape[0], codes.shape[2])
        let values = codes.integers()
        if let bad = values.first(where: { $0 < 0 || $0 >= Int64(eos) }) {
            throw ProbeError.input("input 'codes' holds \(bad), outside 0..<\(eos)")
        }
        var mel: [Float] = []
        for i in 0..<n {
            // [4, T] → frames [T][4]
            var frames: [Int] = []
            frames.reserveCapacity(t * vq)
            for f in 0..<t { for q in 0..<vq { frames.append(Int(values[(i * vq + q) * t + f])) } }
            mel += dvae.forward(codes: frames, frames: t)
        }
        return [.f32("mel", shape: [n, dvae.melBins, 2 * t], mel)]
    }

    /// mel [N, 100, F] → wave [N, F·hop].
    static func vocos(_ vocos: Vocos, inputs: SafetensorsFile) throws -> [SafetensorsWriter.Entry] {
        let bins = vocos.melBins
        let mel = try floatInput(inputs, "mel", rank: 3, expected: "[N, \(bins), F]")
        guard mel.shape[1] == bins else { throw ProbeError.input("input 'mel' has shape \(mel.shape), expected [N, \(bins), F]") }
        let (n, f) = (mel.shape[0], mel.shape[2])
        let values = mel.floats()
        var wave: [Float] = []
        for i in 0..<n { wave += vocos.forward(mel: Array(values[(i * bins * f)..<((i + 1) * bins * f)]), frames: f) }
        return [.f32("wave", shape: [n, f * vocos.hop], wave)]
    }

    /// spk_hidden [N, H], text_ids [N, t ≤ 10] → spk_emb_projected [N, 1, D], hidden [N, t + 3, D] (the
    /// first text prefill's final hidden states at [Stts], [spk_emb], the text and [Etts]), code_logits
    /// [N, 4, 626] (raw head logits of the audio BOS step under the streaming masks).
    static func tts(_ s: SpeechModel, inputs: SafetensorsFile) throws -> [SafetensorsWriter.Entry] {
        let c = s.tts.config
        let hidden = try floatInput(inputs, "spk_hidden", rank: 2, expected: "[N, \(c.llmDim)]")
        guard hidden.shape[1] == c.llmDim else {
            throw ProbeError.input("input 'spk_hidden' has shape \(hidden.shape), expected [N, \(c.llmDim)]")
        }
        let n = hidden.shape[0]
        let text = try integerInput(inputs, "text_ids", rank: 2, expected: "[\(n), t] with t ≤ \(c.streamingTextChunkSize)")
        let t = text.shape[1]
        guard text.shape[0] == n, t <= c.streamingTextChunkSize else {
            throw ProbeError.input("input 'text_ids' has shape \(text.shape), expected [\(n), t] with t ≤ \(c.streamingTextChunkSize)")
        }
        let ids = text.integers()
        if let bad = ids.first(where: { $0 < 0 || $0 >= Int64(c.numTextTokens) }) {
            throw ProbeError.input("input 'text_ids' holds \(bad), outside the ChatTTS vocabulary 0..<\(c.numTextTokens)")
        }
        let h = hidden.floats(), d = c.hiddenSize
        var projected: [Float] = [], states: [Float] = [], logits: [Float] = []
        for i in 0..<n {
            let spk = s.tts.projectSpeaker(Array(h[(i * c.llmDim)..<((i + 1) * c.llmDim)]))
            projected += spk
            let ctx = s.tts.makeContext(text: ids[(i * t)..<((i + 1) * t)].map { Int($0) }, specials: s.specials, speaker: spk,
                                        maxFrames: 4)
            // the first prefill covers [0, 12); a 10-token text puts [Etts] at slot 12, so reach it too
            let first = s.tts.prefillText(ctx, begin: 0, end: max(c.streamingTextChunkSize + 2, t + 3))
            states += first.prefix((t + 3) * d)
            logits += s.tts.step(ctx)
        }
        return [.f32("spk_emb_projected", shape: [n, 1, d], projected), .f32("hidden", shape: [n, t + 3, d], states),
                .f32("code_logits", shape: [n, c.numVQ, c.numAudioTokens], logits)]
    }
}
